"""The one place where trio's and the OS's transport errors become linkpy errors."""

from __future__ import annotations

import errno
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

import trio

from ..errors import LinkpyError

#: Accept errors that mean "out of resources for now": back off and retry.
OVERLOAD_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

TRANSPORT_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError, ssl.SSLError)


@contextmanager
def map_errors(into: type[LinkpyError], *, quiet: bool = False) -> Iterator[None]:
    """Turn a broken/closed stream or socket error into ``into`` (or swallow it)."""
    try:
        yield
    except TRANSPORT_ERRORS as e:
        if quiet:
            return
        raise into(describe(e)) from e


def describe(e: BaseException) -> str:
    """A short text for a transport error, for logs and ``l5d-err``."""
    cause = e.__cause__ or e.__context__
    if isinstance(e, trio.BrokenResourceError) and cause is not None:
        e = cause
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    text = str(e)
    return text or type(e).__name__
