"""Reading a config file strictly.

YAML (or JSON, which YAML reads too) becomes a :class:`~linkpy.config.schema.LinkerConfig`.
Every problem is reported before any socket opens, one line each, with the YAML path of
the offending value::

    routers[0].servers[0].port: expected an integer, got 'x'
    routers[0].identifier.kind: unknown identifier kind 'io.l5d.nope' (known: ...)

Unknown keys, wrong types, duplicate keys, duplicate router labels, two servers on one
port, unknown kinds, experimental plugins not enabled, and dtabs or prefixes that do not
parse are all errors.
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import attrs
import cattrs
import yaml
from cattrs.errors import (
    AttributeValidationNote,
    ClassValidationError,
    IterableValidationError,
    IterableValidationNote,
)
from cattrs.gen import make_dict_structure_fn

from ..errors import ConfigError, ParseError
from ..naming import Dtab, Path
from ..plugin import NamerConfig
from ..router.transformers import TransformerConfig
from .registry import PluginLoadError, Registry
from .schema import (
    DEFAULT_PORTS,
    PROTOCOLS,
    Backoff,
    ClassifierConfig,
    ClientParams,
    ClientTls,
    ConfigValueError,
    DtabText,
    FailureAccrualConfig,
    ForwardedConfig,
    IdentifierConfig,
    InterpreterConfig,
    Labeler,
    LinkerConfig,
    LoadBalancerConfig,
    PathText,
    PerPrefix,
    PrefixedParams,
    ProtocolName,
    RegexText,
    RouterConfig,
    ServerTls,
    ServiceParams,
    TelemeterConfig,
    TracePropagator,
)

T = TypeVar("T")


class _Bad(Exception):
    """A value error raised inside structuring; cattrs adds the path."""


# --- YAML with duplicate-key detection --------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    pass


def _mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    out: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in out:
            line = key_node.start_mark.line + 1
            raise ConfigError(f"duplicate key {key!r} (line {line})")
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _mapping,
)


def parse_yaml(text: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"not valid YAML{where}: {problem}") from None


# --- the converter ----------------------------------------------------------------


def _type_name(v: object) -> str:
    if v is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(v), type(v).__name__
    )


def _strict_int(v: object, _: type) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad(f"expected an integer, got {_type_name(v)} {v!r}")
    return v


def _strict_float(v: object, _: type) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise _Bad(f"expected a number, got {_type_name(v)} {v!r}")
    return float(v)


def _strict_str(v: object, _: type) -> str:
    if not isinstance(v, str):
        raise _Bad(f"expected a string, got {_type_name(v)} {v!r}")
    return v


def _strict_bool(v: object, _: type) -> bool:
    if not isinstance(v, bool):
        raise _Bad(f"expected true or false, got {_type_name(v)} {v!r}")
    return v


def _protocol(v: object, t: type) -> str:
    s = _strict_str(v, t)
    if s not in PROTOCOLS:
        raise _Bad(f"unknown protocol {s!r} (known: {', '.join(PROTOCOLS)})")
    return s


def _dtab(v: object, t: type) -> str:
    s = _strict_str(v, t)
    try:
        Dtab.read(s)
    except ParseError as e:
        raise _Bad(f"invalid dtab: {e}") from None
    return s


def _path(v: object, t: type) -> str:
    s = _strict_str(v, t)
    try:
        Path.read(s)
    except ParseError as e:
        raise _Bad(f"invalid path: {e}") from None
    return s


def _regex(v: object, t: type) -> str:
    s = _strict_str(v, t)
    try:
        re.compile(s)
    except re.error as e:
        raise _Bad(f"invalid regular expression {s!r}: {e}") from None
    return s


def _check_kind(kind: str, known: frozenset[str], what: str) -> None:
    if kind not in known:
        raise _Bad(f"unknown {what} kind {kind!r} (known: {', '.join(sorted(known))})")


class Loader:
    """Structures config data with a registry of plugins."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._fns: dict[type, Callable[[Any, type], Any]] = {}
        c = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
        c.register_structure_hook(int, _strict_int)
        c.register_structure_hook(float, _strict_float)
        c.register_structure_hook(str, _strict_str)
        c.register_structure_hook(bool, _strict_bool)
        c.register_structure_hook(typing.Any, lambda v, _: v)
        c.register_structure_hook_func(lambda t: t == dict[str, Any], self._object)
        c.register_structure_hook(NamerConfig, self._plugin("linkpy.namers", "namer"))
        c.register_structure_hook(
            IdentifierConfig, self._plugin("linkpy.identifiers", "identifier")
        )
        c.register_structure_hook(
            ClassifierConfig, self._plugin("linkpy.classifiers", "classifier")
        )
        c.register_structure_hook(TelemeterConfig, self._plugin("linkpy.telemeters", "telemeter"))
        c.register_structure_hook(
            TransformerConfig, self._plugin("linkpy.transformers", "transformer")
        )
        c.register_structure_hook_func(
            lambda t: t == (list[IdentifierConfig] | None), self._identifiers
        )
        c.register_structure_hook(PerPrefix, self._per_prefix)
        c.register_structure_hook(ForwardedConfig, self._forwarded)
        c.register_structure_hook(ProtocolName, _protocol)
        c.register_structure_hook(DtabText, _dtab)
        c.register_structure_hook(PathText, _path)
        c.register_structure_hook(RegexText, _regex)
        c.register_structure_hook(InterpreterConfig, self._interpreter)
        self._base_hooks(c)
        self.c = c

    def _base_hooks(self, c: cattrs.Converter) -> None:
        def checked(cls: type[T], what: str) -> Callable[[object, type], T]:
            def hook(v: object, _: type) -> T:
                obj: T = self._attrs(v, cls)
                _check_kind(obj.kind, cls.KINDS, what)  # type: ignore[attr-defined]
                return obj

            return hook

        c.register_structure_hook(LoadBalancerConfig, checked(LoadBalancerConfig, "load balancer"))
        c.register_structure_hook(
            FailureAccrualConfig, checked(FailureAccrualConfig, "failure accrual")
        )
        c.register_structure_hook(Labeler, checked(Labeler, "labeler"))
        c.register_structure_hook(TracePropagator, checked(TracePropagator, "trace propagator"))

        def backoff(v: object, _: type) -> Backoff:
            b = self._attrs(v, Backoff)
            _check_kind(b.kind, frozenset({"constant", "jittered"}), "backoff")
            if b.kind == "jittered" and (b.minMs is None or b.maxMs is None):
                raise _Bad("a jittered backoff needs minMs and maxMs")
            return b

        c.register_structure_hook(Backoff, backoff)

    # -- generic pieces -------------------------------------------------------

    def _attrs(self, v: object, cls: type[T]) -> T:
        """Structure an attrs class field by field (bypassing any hook for the class)."""
        if not isinstance(v, Mapping):
            raise _Bad(f"expected an object, got {_type_name(v)} {v!r}")
        fn = self._fns.get(cls)
        if fn is None:
            fn = make_dict_structure_fn(
                cls, self.c, _cattrs_forbid_extra_keys=True, _cattrs_detailed_validation=True
            )
            self._fns[cls] = fn
        return fn(v, cls)  # type: ignore[no-any-return]

    def _object(self, v: object, _: type) -> dict[str, Any]:
        if not isinstance(v, Mapping):
            raise _Bad(f"expected an object, got {_type_name(v)} {v!r}")
        return dict(v)

    def _plugin(self, group: str, what: str) -> Callable[[object, type], Any]:
        def hook(v: object, _: type) -> Any:
            if not isinstance(v, Mapping):
                raise _Bad(f"expected an object with a kind, got {_type_name(v)} {v!r}")
            kind = v.get("kind")
            if not isinstance(kind, str):
                raise _Bad(f"a {what} needs a kind")
            try:
                cls = self.registry.get(group, kind)
            except PluginLoadError as e:
                raise _Bad(e.message) from None
            if cls is None:
                known = ", ".join(sorted(self.registry.kinds(group))) or "none installed"
                raise _Bad(f"unknown {what} kind {kind!r} (known: {known})")
            rest = {k: val for k, val in v.items() if k != "kind"}
            obj: Any = self._attrs(rest, cls)
            if getattr(cls, "experimental_required", False) and not getattr(
                obj, "experimental", False
            ):
                raise _Bad(f"{what} {kind!r} is experimental: set experimental: true to use it")
            return obj

        return hook

    def _identifiers(self, v: object, _: type) -> list[IdentifierConfig] | None:
        if v is None:
            return None
        hook = self._plugin("linkpy.identifiers", "identifier")
        if isinstance(v, Mapping):
            return [hook(v, IdentifierConfig)]
        if isinstance(v, list):
            return self.c.structure(v, list[IdentifierConfig])
        raise _Bad(f"expected an identifier or a list of them, got {_type_name(v)} {v!r}")

    def _interpreter(self, v: object, _: type) -> InterpreterConfig:
        if isinstance(v, Mapping):
            kind = v.get("kind", "default")
            if kind not in INTERPRETERS:
                raise _Bad(f"unsupported interpreter {kind!r} (known: {', '.join(INTERPRETERS)})")
        return self._attrs(v, InterpreterConfig)

    def _forwarded(self, v: object, _: type) -> ForwardedConfig:
        if not isinstance(v, Mapping):
            raise _Bad(f"expected an object, got {_type_name(v)} {v!r}")
        data = dict(v)
        if "for" in data:
            data["for_"] = data.pop("for")
        return self._attrs(data, ForwardedConfig)

    def _per_prefix(self, v: object, t: type) -> PerPrefix:
        raise AssertionError("structured by the router hook")  # pragma: no cover

    def per_prefix(self, v: object, params: type) -> PerPrefix:
        if v is None:
            return PerPrefix()
        if not isinstance(v, Mapping):
            raise _Bad(f"expected an object, got {_type_name(v)} {v!r}")
        kind = v.get("kind", "io.l5d.global")
        if kind == "io.l5d.global":
            rest = {k: val for k, val in v.items() if k != "kind"}
            return PerPrefix(
                kind=kind, entries=(PrefixedParams(prefix="/", params=self._attrs(rest, params)),)
            )
        if kind != "io.l5d.static":
            raise _Bad(f"unknown kind {kind!r} (known: io.l5d.global, io.l5d.static)")
        extra = set(v) - {"kind", "configs"}
        if extra:
            raise _Bad(f"extra keys in io.l5d.static: {', '.join(sorted(extra))}")
        configs = v.get("configs")
        if not isinstance(configs, list):
            raise _Bad("io.l5d.static needs a list of configs")
        entries = []
        errors: list[Exception] = []
        for i, entry in enumerate(configs):
            try:
                if not isinstance(entry, Mapping) or not isinstance(entry.get("prefix"), str):
                    raise _Bad("each config needs a prefix")
                prefix = entry["prefix"]
                check_prefix_pattern(prefix)
                rest = {k: val for k, val in entry.items() if k != "prefix"}
                entries.append(PrefixedParams(prefix=prefix, params=self._attrs(rest, params)))
            except Exception as e:
                e.add_note(IterableValidationNote(f"Structuring configs @ index {i}", i, dict))
                errors.append(e)
        if errors:
            group = IterableValidationError("bad configs", errors, list)
            raise ClassValidationError(
                "bad configs",
                [_noted(group, AttributeValidationNote("Structuring configs", "configs", list))],
                PerPrefix,
            )
        return PerPrefix(kind=kind, entries=tuple(entries))

    # -- the whole file -------------------------------------------------------

    def router(self, v: object, _: type) -> RouterConfig:
        if not isinstance(v, Mapping):
            raise _Bad(f"expected a router object, got {_type_name(v)} {v!r}")
        data = dict(v)
        errors: list[Exception] = []
        special: dict[str, Any] = {}
        for key, params in (("client", ClientParams), ("service", ServiceParams)):
            if key in data:
                try:
                    special[key] = self.per_prefix(data.pop(key), params)
                except Exception as e:
                    errors.append(
                        _noted(e, AttributeValidationNote(f"Structuring {key}", key, PerPrefix))
                    )
        try:
            r = self._attrs(data, RouterConfig)
        except ClassValidationError as e:
            errors.extend(e.exceptions)
            r = None
        if errors:
            raise ClassValidationError("bad router", errors, RouterConfig)
        assert r is not None
        return attrs.evolve(r, **special)

    def linker(self, data: object) -> LinkerConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(f"a config file holds an object, not {_type_name(data)}")
        if "routers" not in data:
            raise ConfigError("routers: required (a list with at least one router)")
        self.c.register_structure_hook(RouterConfig, self.router)
        try:
            cfg = self.c.structure(dict(data), LinkerConfig)
        except (ClassValidationError, IterableValidationError) as e:
            raise ConfigError("\n".join(_messages(e))) from None
        except _Bad as e:
            raise ConfigError(str(e)) from None
        return cfg


def _noted(e: Exception, note: str) -> Exception:
    e.add_note(note)
    return e


def _format(exc: BaseException, type_: type | None) -> str:
    if isinstance(exc, _Bad):
        return str(exc)
    if isinstance(exc, KeyError):
        return "required"
    if isinstance(exc, cattrs.ForbiddenExtraKeysError):
        keys = ", ".join(sorted(exc.extra_fields))
        return f"unknown key{'s' if len(exc.extra_fields) > 1 else ''}: {keys}"
    if isinstance(exc, ConfigError):
        return exc.message
    if isinstance(exc, ConfigValueError):
        return f"{_KEY}{exc.key}{_KEY}{exc}" if exc.key else str(exc)
    if isinstance(exc, (ValueError, TypeError)):
        return f"invalid value ({exc})"
    return str(exc) or type(exc).__name__


#: Marks the field name a ConfigValueError carries, ahead of its message.
_KEY = "\x00"


def _messages(exc: BaseException) -> list[str]:
    lines = []
    for line in cattrs.transform_error(exc, path="$", format_exception=_format):
        msg, _, where = line.rpartition(" @ ")
        path = where.removeprefix("$").removeprefix(".")
        if msg.startswith(_KEY):
            key, msg = msg[1:].split(_KEY, 1)
            path = f"{path}.{key}" if path else key
        if msg.startswith("unknown key"):
            # cattrs reports an unknown key at the object holding it: name the key itself
            for key in msg.split(": ", 1)[1].split(", "):
                lines.append(f"{path}.{key}: unknown key" if path else f"{key}: unknown key")
            continue
        lines.append(f"{path}: {msg}" if path else msg)
    return lines


# --- prefixes of io.l5d.static ------------------------------------------------------

_VAR = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")


def check_prefix_pattern(prefix: str) -> None:
    """A client/service prefix: a path whose elements may be ``*`` or hold ``{var}``s."""
    if prefix in ("", "/"):
        return
    if not prefix.startswith("/"):
        raise _Bad(f"prefix {prefix!r} must start with '/'")
    for elem in prefix.strip("/").split("/"):
        if elem == "*":
            continue
        plain = _VAR.sub("x", elem)
        try:
            Path.read("/" + plain)
        except ParseError as e:
            raise _Bad(f"invalid prefix {prefix!r}: {e}") from None


# --- checks across the file ----------------------------------------------------------


def _validate(cfg: LinkerConfig) -> list[str]:
    errors = []
    if not cfg.routers:
        errors.append("routers: at least one router is required")
    labels: dict[str, int] = {}
    ports: dict[tuple[str, int], str] = {}

    def claim(ip: str, port: int, what: str) -> None:
        for (other_ip, other_port), owner in ports.items():
            wildcard = ip in ("0.0.0.0", "::") or other_ip in ("0.0.0.0", "::")
            if other_port == port and port != 0 and (other_ip == ip or wildcard):
                errors.append(f"{what}: port {port} is already used by {owner}")
                return
        ports[(ip, port)] = what

    claim(cfg.admin.ip, cfg.admin.port, "admin")
    errors += _server_tls_errors(cfg.admin.tls, "admin.tls")
    for i, r in enumerate(cfg.routers):
        where = f"routers[{i}]"
        if r.name in labels:
            errors.append(
                f"{where}.label: router label {r.name!r} is used twice (routers[{labels[r.name]}])"
            )
        labels[r.name] = i
        if not r.servers:
            errors.append(f"{where}.servers: at least one server is required")
        for j, s in enumerate(r.servers):
            port = s.port if s.port is not None else DEFAULT_PORTS.get(r.protocol, 0)
            if not 0 <= port <= 65535:
                errors.append(f"{where}.servers[{j}].port: {port} is not a port number")
                continue
            claim(s.ip, port, f"{where}.servers[{j}]")
        if r.interpreter.kind == "io.l5d.fs" and not r.interpreter.dtabFile:
            errors.append(f"{where}.interpreter.dtabFile: required by io.l5d.fs")
        for j, s in enumerate(r.servers):
            errors += _server_tls_errors(s.tls, f"{where}.servers[{j}].tls")
            errors += _ratio_errors(s.windowUpdateRatio, f"{where}.servers[{j}]")
        static = r.client.kind == "io.l5d.static"
        for k, entry in enumerate(r.client.entries):
            at = f"{where}.client.configs[{k}]" if static else f"{where}.client"
            tls = entry.params.tls
            if tls is not None:
                errors += _client_tls_errors(tls, f"{at}.tls")
            errors += _ratio_errors(entry.params.windowUpdateRatio, at)
    for i, n in enumerate(cfg.namers):
        prefix = namer_prefix(n)
        try:
            Path.read(prefix)
        except ParseError as e:
            errors.append(f"namers[{i}].prefix: {e}")
    return errors


def _ratio_errors(ratio: float | None, at: str) -> list[str]:
    if ratio is None or 0 < ratio < 1:
        return []
    return [f"{at}.windowUpdateRatio: {ratio:g} is not between 0 and 1 (exclusive)"]


_TLS_PROTOCOLS = ("TLSv1.2", "TLSv1.3")
_CLIENT_TLS_KINDS = ("io.l5d.noValidation", "io.l5d.static")


def _protocol_errors(protocols: list[str] | None, at: str) -> list[str]:
    return [
        f"{at}.protocols: unknown protocol {p!r} (known: {', '.join(_TLS_PROTOCOLS)})"
        for p in protocols or []
        if p not in _TLS_PROTOCOLS
    ]


def _server_tls_errors(tls: ServerTls | None, at: str) -> list[str]:
    if tls is None or not tls.enabled:
        return []
    errors = _protocol_errors(tls.protocols, at)
    for key in ("certPath", "keyPath"):
        if not getattr(tls, key):
            errors.append(f"{at}.{key}: required to serve TLS")
    if tls.requireClientAuth and not tls.caCertPath:
        errors.append(f"{at}.caCertPath: required by requireClientAuth (the clients' CA)")
    return errors


def _client_tls_errors(tls: ClientTls, at: str) -> list[str]:
    if not tls.enabled:
        return []
    errors = _protocol_errors(tls.protocols, at)
    if tls.kind is not None and tls.kind not in _CLIENT_TLS_KINDS:
        errors.append(
            f"{at}.kind: unknown client TLS kind {tls.kind!r} "
            f"(known: {', '.join(_CLIENT_TLS_KINDS)}; or none, with the keys inline)"
        )
    validating = not tls.disableValidation and tls.kind != "io.l5d.noValidation"
    if validating and not tls.commonName:
        errors.append(
            f"{at}.commonName: required unless disableValidation is true (the name the "
            "endpoints' certificates must carry, also sent as SNI; it may use the "
            "prefix's {vars})"
        )
    if not validating and tls.clientAuth is not None:
        errors.append(f"{at}.clientAuth: cannot be used with disableValidation")
    return errors


#: The interpreters linkpy has (namerd's are not: linkpy has no namerd).
INTERPRETERS = ("default", "io.l5d.fs")


def namer_prefix(n: NamerConfig) -> str:
    """The prefix under ``/#`` a namer serves (its config's, else its kind's default)."""
    p = n.prefix or type(n).default_prefix
    return p if p.startswith("/") else "/" + p


def load(text: str, registry: Registry | None = None, *, path: str = "") -> LinkerConfig:
    """Read a config file's text.  Raises :class:`ConfigError` listing every problem."""
    data = parse_yaml(text)
    cfg = Loader(registry or Registry.discover()).linker(data)
    errors = _validate(cfg)
    if errors:
        raise ConfigError("\n".join(errors))
    return attrs.evolve(cfg, source=text, path=path)


def load_file(path: str, registry: Registry | None = None) -> LinkerConfig:
    """Read a config file (``-`` is standard input)."""
    if path == "-":
        import sys

        return load(sys.stdin.read(), registry, path="-")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from None
    return load(text, registry, path=os.path.abspath(path))
