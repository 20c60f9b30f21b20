"""HTTP identifiers (reference section 4.1)."""

from __future__ import annotations

import pytest

from linkpy.naming import Path
from linkpy.proto.http1 import RequestHead
from linkpy.router.identifiers import (
    HeaderConfig,
    HeaderPathConfig,
    HeaderTokenConfig,
    MethodAndHostConfig,
    PathConfig,
    StaticConfig,
    identify,
)

SVC = Path.read("/svc")


def req(
    target: str = "/", *, method: str = "GET", version: str = "1.1", **headers: str
) -> RequestHead:
    return RequestHead(
        method.encode(),
        target.encode(),
        [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
        version.encode(),
    )


def name(result: Path | str) -> str:
    assert isinstance(result, Path), result
    return result.show()


def test_header_token_keeps_the_value_as_one_element() -> None:
    ident = HeaderTokenConfig().mk(SVC, "http")
    assert name(ident.identify(req(Host="Web:8080"))) == "/svc/Web:8080"
    assert ident.identify(req()) == "Host header is absent"
    assert ident.identify(req(Host="")) == "Host header is absent"
    custom = HeaderTokenConfig(header="X-Service").mk(SVC, "http")
    assert name(custom.identify(req(x_service="users"))) == "/svc/users"
    # values that are not showable are escaped, never refused
    assert name(ident.identify(req(Host="a b"))) == "/svc/\\x61\\x20\\x62"


def test_header_token_on_h2_defaults_to_authority() -> None:
    ident = HeaderTokenConfig().mk(SVC, "h2")
    assert name(ident.identify(req(**{":authority": "users:443"}))) == "/svc/users:443"


def test_header_is_read_as_a_path() -> None:
    ident = HeaderConfig().mk(SVC, "http")
    assert name(ident.identify(req(l5d_name="/users/v1"))) == "/svc/users/v1"
    r = ident.identify(req(l5d_name="users"))
    assert isinstance(r, str) and "not a path" in r


@pytest.mark.parametrize(
    ("kwargs", "uri", "expected"),
    [
        ({"method": "GET", "Host": "Web.Example"}, False, "/svc/1.1/GET/web.example"),
        ({"method": "POST", "Host": "web", "target": "/a/b?x"}, True, "/svc/1.1/POST/web/a/b"),
        ({"method": "GET", "version": "1.0"}, False, "/svc/1.0/GET"),
        ({"method": "GET", "version": "1.0", "target": "/x"}, True, "/svc/1.0/GET/x"),
    ],
)
def test_method_and_host(kwargs: dict[str, str], uri: bool, expected: str) -> None:
    target = kwargs.pop("target", "/")
    method = kwargs.pop("method")
    version = kwargs.pop("version", "1.1")
    ident = MethodAndHostConfig(httpUriInDst=uri).mk(SVC, "http")
    assert name(ident.identify(req(target, method=method, version=version, **kwargs))) == expected


def test_method_and_host_needs_a_host() -> None:
    ident = MethodAndHostConfig().mk(SVC, "http")
    assert ident.identify(req()) == "HTTP/1.1 request missing hostname"


def test_path_segments_and_consume() -> None:
    ident = PathConfig(segments=2, consume=True).mk(SVC, "http")
    r = req("/true/love/waits.php?q=1")
    assert name(ident.identify(r)) == "/svc/true/love"
    assert r.target == b"/waits.php?q=1"
    r = req("/a/b/")
    assert name(ident.identify(r)) == "/svc/a/b"
    assert r.target == b"/"
    assert ident.identify(req("/only")) == "not enough segments in path"
    keep = PathConfig().mk(SVC, "http")
    r = req("/api/v1")
    assert name(keep.identify(r)) == "/svc/api"
    assert r.target == b"/api/v1"


def test_header_path_for_grpc() -> None:
    ident = HeaderPathConfig(segments=1).mk(SVC, "h2")
    assert name(ident.identify(req("/helloworld.Greeter/SayHello"))) == "/svc/helloworld.Greeter"
    both = HeaderPathConfig(segments=2).mk(SVC, "h2")
    assert name(both.identify(req("/pkg.Svc/Method"))) == "/svc/pkg.Svc/Method"


def test_static() -> None:
    ident = StaticConfig(path="/users").mk(SVC, "http")
    assert name(ident.identify(req())) == "/svc/users"
    with pytest.raises(ValueError):
        StaticConfig(path="users")


def test_a_list_uses_the_first_that_names() -> None:
    idents = [HeaderConfig().mk(SVC, "http"), HeaderTokenConfig().mk(SVC, "http")]
    assert name(identify(idents, req(Host="web"))) == "/svc/web"
    assert name(identify(idents, req(Host="web", l5d_name="/x"))) == "/svc/x"
    reason = identify(idents, req())
    assert reason == "l5d-name header is absent; Host header is absent"
