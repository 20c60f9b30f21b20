"""An emulator of the registry, for tests (yours and your users')."""

from __future__ import annotations

from collections.abc import Mapping

from linkpy.testing.fakes import FakeServer, Request, Response, json_response


class FakeRegistry(FakeServer):
    """``GET /v1/services/<name>`` on a loopback port; every fault method of
    ``FakeServer`` (``fail_next``, ``hang_next``, ``garble_next``, ...) works on it."""

    kind = "registry"

    def __init__(self) -> None:
        super().__init__()
        self.services: dict[str, list[tuple[str, int]]] = {}
        self.router.add("GET", "/v1/services/{name}", self._service)

    def set(self, name: str, addresses: list[tuple[str, int]]) -> None:
        self.services[name] = list(addresses)

    def remove(self, name: str) -> None:
        self.services.pop(name, None)

    async def _service(self, request: Request, args: Mapping[str, str]) -> Response:
        found = self.services.get(args["name"])
        if found is None:
            return json_response({"error": "no such service"}, 404)
        return json_response({"addresses": [f"{h}:{p}" for h, p in found]})
