"""Linkerd's /$/io.buoyant.* namers (dtab-spec sections 7 and 8.6)."""

from __future__ import annotations

import pytest

from linkpy.naming import AddrBound, Address, Leaf, Neg, Ok, Path

from .helpers import system

P = Path.read


def test_k8_rinet() -> None:
    st = system()(P("/$/io.buoyant.rinet/12345/localhost/residual"))
    assert isinstance(st, Ok) and isinstance(st.value, Leaf)
    b = st.value.value
    assert b.id == P("/$/io.buoyant.rinet/12345/localhost")
    assert b.residual == P("/residual")
    assert b.sample() == AddrBound([Address("127.0.0.1", 12345)])
    assert system()(P("/$/io.buoyant.rinet/80")) == Ok(Neg)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/$/io.buoyant.http.anyMethod/GET/foo/bar/bah", "/foo/bar/bah"),  # K9
        ("/$/io.buoyant.http.anyMethod/A.B/foo/bar/bah", None),
        ("/$/io.buoyant.http.anyMethodPfx/pfx/POST/x", "/pfx/x"),
        ("/$/io.buoyant.http.anyMethodPfx/pfx/post/x", None),
        ("/$/io.buoyant.http.subdomainOfPfx/a.b/foo/bar.a.b:9090/bah", "/foo/bar/bah"),  # K10
        ("/$/io.buoyant.http.subdomainOfPfx/a.b/foo/a.b/bah", None),
        ("/$/io.buoyant.http.subdomainOf/a.b/bar.a.b/bah", "/bar/bah"),
        ("/$/io.buoyant.http.domainToPathPfx/pfx/foo.buoyant.io", "/pfx/io/buoyant/foo"),  # K11
        ("/$/io.buoyant.http.domainToPath/foo.buoyant.io/r", "/io/buoyant/foo/r"),
        ("/$/io.buoyant.http.domainToPath/a..b", None),
        ("/$/io.buoyant.http.anyHost/web:80/r", "/r"),
        ("/$/io.buoyant.http.anyHostPfx/p/web/r", "/p/r"),
        ("/$/io.buoyant.hostportPfx/ia/127.1:8080/etc", "/ia/127.1/8080/etc"),  # K12
        ("/$/io.buoyant.hostportPfx/ia/google.com:8180:abcdef/etc", None),
        ("/$/io.buoyant.porthostPfx/ia/127.1:http/etc", "/ia/http/127.1/etc"),  # K13
        ("/$/io.buoyant.porthostPfx/ia/127.1/etc", None),
        ("/$/io.buoyant.porthostPfx/ia/:80/etc", None),
        ("/$/io.buoyant.hostportPfx/ia/web:HTTP", None),
    ],
)
def test_rewriting_namers(path: str, expected: str | None) -> None:
    st = system()(P(path))
    if expected is None:
        assert st == Ok(Neg)
    else:
        assert st == Ok(Leaf(P(expected)))
