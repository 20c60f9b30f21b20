"""Authentication to Marathon, read from the environment as Linkerd 1.x did.

- ``DCOS_SERVICE_ACCOUNT_CREDENTIAL``: a DC/OS service account, JSON
  ``{"login_endpoint", "private_key", "scheme": "RS256", "uid"}``.  The namer logs in
  by POSTing ``{"uid", "token": <RS256 JWT of {"uid", "exp"} signed with the key>}``
  to ``login_endpoint`` and sends ``Authorization: token=<token>``; on a 401 it logs in
  again once and repeats the request (tokens expire).  It wins over:
- ``MARATHON_HTTP_AUTH_CREDENTIAL``: ``base64(user:pass)``, sent as
  ``Authorization: Basic ...`` (Marathon's ``--http_credentials``).

The JWT is signed with PyJWT and cryptography, imported only when a DC/OS credential
is configured; signing runs in a worker thread (an RSA signature takes milliseconds).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import trio

from linkpy.errors import ConfigError

DCOS_ENV = "DCOS_SERVICE_ACCOUNT_CREDENTIAL"
BASIC_ENV = "MARATHON_HTTP_AUTH_CREDENTIAL"

#: Lifetime of the login JWT (it only proves the key once; the token it buys lasts longer).
LOGIN_JWT_SECONDS = 300

#: ``login(url, payload) -> response JSON``, provided by the API client.
Login = Callable[[str, Mapping[str, Any]], Awaitable[Any]]


class LoginError(Exception):
    """The DC/OS login failed (refused, or an answer without a token)."""


class Auth:
    """No authentication."""

    kind = "none"

    async def headers(self, login: Login) -> dict[str, str]:
        """The headers to add to a request (may log in first)."""
        return {}

    async def rejected(self, used: Mapping[str, str], login: Login) -> bool:
        """A request sent with ``used`` headers got a 401: True if it is worth repeating
        (new credentials were obtained)."""
        return False


class BasicAuth(Auth):
    kind = "basic"

    def __init__(self, token: str) -> None:
        self._headers = {"Authorization": f"Basic {token}"}

    async def headers(self, login: Login) -> dict[str, str]:
        return self._headers


class DcosAuth(Auth):
    """DC/OS service-account login (token auth)."""

    kind = "dcos"

    def __init__(self, uid: str, private_key: Any, login_endpoint: str) -> None:
        self.uid = uid
        self.login_endpoint = login_endpoint
        self._key = private_key
        self._token: str | None = None
        self._lock = trio.Lock()
        #: successful logins
        self.logins = 0
        #: the last failed login: (when, why), answered for a second without trying again
        self._failure: tuple[float, str] | None = None

    def sign(self) -> str:
        """The login JWT (runs in a worker thread)."""
        import jwt

        claims = {"uid": self.uid, "exp": int(time.time()) + LOGIN_JWT_SECONDS}
        return jwt.encode(claims, self._key, algorithm="RS256")

    async def headers(self, login: Login) -> dict[str, str]:
        token = self._token
        if token is None:
            token = await self._login(login, None)
        return {"Authorization": f"token={token}"}

    async def rejected(self, used: Mapping[str, str], login: Login) -> bool:
        stale = used.get("Authorization", "").removeprefix("token=") or None
        await self._login(login, stale)
        return True

    async def _login(self, login: Login, stale: str | None) -> str:
        async with self._lock:
            # Another request may have logged in while this one waited.
            if self._token is not None and self._token != stale:
                return self._token
            self._token = None
            # ...or failed to: the requests queued behind it do not all try again.
            if self._failure is not None and trio.current_time() - self._failure[0] < 1.0:
                raise LoginError(self._failure[1])
            try:
                assertion = await trio.to_thread.run_sync(self.sign)
                doc = await login(self.login_endpoint, {"uid": self.uid, "token": assertion})
                token = doc.get("token") if isinstance(doc, dict) else None
                if not isinstance(token, str) or not token:
                    raise LoginError(f"the login at {self.login_endpoint} answered without a token")
            except Exception as e:
                self._failure = (trio.current_time(), str(e))
                raise
            self._failure = None
            self._token = token
            self.logins += 1
            return token


def from_env(environ: Mapping[str, str]) -> Auth:
    """The authentication the environment asks for (raises ConfigError when it is bad)."""
    dcos = environ.get(DCOS_ENV)
    if dcos:
        return _dcos(dcos)
    basic = environ.get(BASIC_ENV)
    if basic:
        token = basic.strip()
        try:
            decoded = base64.b64decode(token, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            decoded = ""
        if ":" not in decoded:
            raise ConfigError(f"{BASIC_ENV} must be base64 of 'user:password'")
        return BasicAuth(token)
    return Auth()


def _dcos(text: str) -> DcosAuth:
    where = DCOS_ENV
    try:
        secret = json.loads(text)
    except ValueError:
        raise ConfigError(f"{where} is not JSON") from None
    if not isinstance(secret, dict):
        raise ConfigError(f"{where} must be a JSON object")
    missing = [
        k
        for k in ("login_endpoint", "private_key", "scheme", "uid")
        if not isinstance(secret.get(k), str) or not secret[k]
    ]
    if missing:
        raise ConfigError(f"{where} lacks {', '.join(missing)}")
    if secret["scheme"] != "RS256":
        raise ConfigError(f"{where}: scheme {secret['scheme']!r} is not supported (only RS256)")
    endpoint = secret["login_endpoint"]
    if not endpoint.startswith(("http://", "https://", "/")):
        raise ConfigError(f"{where}: login_endpoint must be an http(s) URL or a path")
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        key = load_pem_private_key(secret["private_key"].encode(), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # never echo the key
        raise ConfigError(f"{where}: private_key is not an unencrypted PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{where}: private_key must be an RSA key (scheme RS256)")
    return DcosAuth(secret["uid"], key, endpoint)
