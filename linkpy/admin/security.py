"""``admin.security``: which admin paths are served (Linkerd's ``SecurityFilter``).

Every path falls in one category: *ui* (the pages and the JSON they read), *control*
(what changes the process: ``/admin/shutdown``, ``/admin/reload``, ``/logging.json``)
or *diagnostics*
(everything else).  A request is served when its category is enabled and its path is
not blacklisted, or when its category is disabled but its path is whitelisted.  Every
other request is answered 404, as if the endpoint did not exist.  Patterns match the
whole path (the query string is not part of it), as Java's ``Matcher.matches`` does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from ..config.schema import AdminSecurity

UI: Final = "ui"
CONTROL: Final = "control"
DIAGNOSTICS: Final = "diagnostics"

#: Linkerd's UI paths, plus linkpy's own UI data (``/admin/routers.json``) and the
#: file view's index (``/files``).
UI_PATHS: Final = (
    "/",
    "/files",
    "/files/.*",
    "/admin/files/.*",
    "/config[.]json",
    "/metrics[.]json",
    "/admin/metrics[.]json",
    "/admin/metrics",
    "/admin/routers[.]json",
    "/delegator",
    "/delegator[.]json",
    "/logging",
    "/help",
)

#: Linkerd's control paths: the ones that change the running process.
CONTROL_PATHS: Final = ("/admin/shutdown", "/admin/reload", "/logging[.]json")


def _compile(patterns: Sequence[str]) -> list[re.Pattern[str]]:
    return [re.compile(p) for p in patterns]


class Security:
    """Decides, from the path alone, whether the admin serves a request."""

    def __init__(self, cfg: AdminSecurity | None = None) -> None:
        cfg = cfg or AdminSecurity()
        self.enabled = {
            UI: cfg.uiEnabled,
            CONTROL: cfg.controlEnabled,
            DIAGNOSTICS: cfg.diagnosticsEnabled,
        }
        self.whitelist = _compile(cfg.pathWhitelist or ())
        self.blacklist = _compile(cfg.pathBlacklist or ())
        self._ui = _compile(UI_PATHS)
        self._control = _compile(CONTROL_PATHS)

    def category(self, path: str) -> str:
        if any(p.fullmatch(path) for p in self._ui):
            return UI
        if any(p.fullmatch(path) for p in self._control):
            return CONTROL
        return DIAGNOSTICS

    def allows(self, path: str) -> bool:
        if self.enabled[self.category(path)]:
            return not any(p.fullmatch(path) for p in self.blacklist)
        return any(p.fullmatch(path) for p in self.whitelist)
