"""Secret scrubbing: what keeps credentials out of checkpoints and the result cache.

:func:`scrub_secrets` returns a deep copy of plain JSON-like data with credentials
replaced by ``"***"``: values under credential-named keys, given secrets, the values of
``*_API_KEY`` / ``*_TOKEN`` / ``*_SECRET`` (...) environment variables, ``Bearer`` tokens
and ``sk-...`` style keys. Every checkpoint store and the result cache pass each payload
through it before writing.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["redact_dsn", "scrub_secrets"]

_REDACTED = "***"


# Key names whose values are credentials; matched on the last words of a snake-cased key
# so that ``tokens_used`` or ``max_tokens`` are kept while ``access_token`` is not.
_SECRET_KEY_RE = re.compile(
    r"(?:^|_)(?:api_?key|authorization|auth|token|secret|password|passwd|private_?key"
    r"|secret_?key|access_?key|credentials?|cookie|set_cookie)$"
)
_SECRET_ENV_SUFFIXES = ("_API_KEY", "_APIKEY", "_TOKEN", "_SECRET", "_SECRET_KEY",
                        "_SECRET_ACCESS_KEY", "_PASSWORD")
# Env values shorter than this are not treated as secrets: replacing e.g. "1" everywhere
# would mangle outputs and protect nothing.
_MIN_ENV_SECRET_LEN = 8
_SECRET_VALUE_PATTERNS = (
    # 16+ characters so that prose ("the Bearer of bad news") is left alone.
    (re.compile(r"\bBearer\s+[A-Za-z0-9\-._~+/]{16,}=*"), "Bearer " + _REDACTED),
    (re.compile(r"\bsk-[A-Za-z0-9_\-]{20,}"), _REDACTED),
)


def _is_secret_key(key: str) -> bool:
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", key).lower().replace("-", "_")
    return bool(_SECRET_KEY_RE.search(snake))


def _env_secrets() -> list[str]:
    return [value for name, value in os.environ.items()
            if name.upper().endswith(_SECRET_ENV_SUFFIXES) and len(value) >= _MIN_ENV_SECRET_LEN]


def scrub_secrets(obj: Any, secrets: Iterable[str] = ()) -> Any:
    """A deep copy of ``obj`` with credentials replaced by ``"***"``.

    Values (strings, dicts, lists) under keys named like ``api_key``, ``apiKey``,
    ``x-api-key``, ``authorization``, ``token``, ``access_token``, ``secret``,
    ``password`` (and a few more: ``cookie``, ``private_key``, ...) are replaced;
    ``tokens_used`` or ``max_tokens`` are not, nor are numbers, booleans and None. In every string (keys included), each occurrence of a given
    secret, of the value of an environment variable whose name ends in ``_API_KEY``,
    ``_TOKEN``, ``_SECRET`` (or ``_PASSWORD``, ``_SECRET_KEY``; values of 8+ characters,
    read at call time), of ``Bearer <16+ chars>`` and of ``sk-...`` style keys is replaced.

    Args:
        obj: plain JSON-like data (dicts, lists, tuples, strings, numbers).
        secrets: further strings to remove wherever they occur.

    Returns:
        The scrubbed copy; ``obj`` itself is not changed.

    Example:
        >>> scrub_secrets({"api_key": "k", "text": "pw=hunter22"}, secrets=["hunter22"])
        {'api_key': '***', 'text': 'pw=***'}
    """
    values = sorted({s for s in (*secrets, *_env_secrets()) if s}, key=len, reverse=True)

    def text(s: str) -> str:
        for value in values:
            if value in s:
                s = s.replace(value, _REDACTED)
        for pattern, replacement in _SECRET_VALUE_PATTERNS:
            s = pattern.sub(replacement, s)
        return s

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return text(node)
        if isinstance(node, dict):
            return {(text(k) if isinstance(k, str) else k):
                    (_REDACTED if isinstance(k, str) and _is_secret_key(k)
                     and isinstance(v, (str, dict, list, tuple)) else walk(v))
                    for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return type(node)(walk(item) for item in node)
        return copy.deepcopy(node)

    return walk(obj)


_URL_PASSWORD_RE = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.\-]*://[^/@:\s]*:)(?P<pw>[^@\s]*)@")
_KV_PASSWORD_RE = re.compile(r"(?P<head>\bpassword\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)",
                             re.IGNORECASE)


def redact_dsn(text: str) -> str:
    """``text`` with the password of every URL (``scheme://user:PASSWORD@host``) and every
    ``password=...`` setting replaced by ``***``: a store as it may be shown.

    Example:
        >>> redact_dsn("postgresql://app:s3cret@db:5432/runs")
        'postgresql://app:***@db:5432/runs'
        >>> redact_dsn("host=db password='a b' user=app")
        'host=db password=*** user=app'
        >>> redact_dsn("/home/me/checkpoints")
        '/home/me/checkpoints'
    """
    text = _URL_PASSWORD_RE.sub(lambda m: m.group("head") + _REDACTED + "@", text)
    return _KV_PASSWORD_RE.sub(lambda m: m.group("head") + _REDACTED, text)


def dsn_password(dsn: str) -> str | None:
    """The password a DSN holds, or None (to scrub it from messages that quote it).

    Example:
        >>> dsn_password("postgresql://app:s3cret@db/runs")
        's3cret'
    """
    for pattern in (_URL_PASSWORD_RE, _KV_PASSWORD_RE):
        found = pattern.search(dsn)
        if found and found.group("pw"):
            return found.group("pw").strip("'")
    return None


# -- API keys in stored definitions ------------------------------------------------------

_storing: contextvars.ContextVar[bool] = contextvars.ContextVar("ray_orch_storing",
                                                                default=False)


@contextlib.contextmanager
def storing() -> Iterator[None]:
    """Pickle for storage inside this block: agents and model configs keep each API key
    as a reference to the environment variable it came from (``KeyRef``), never its value
    (a paused run's definition is kept in the run store, where keys must never be)."""
    token = _storing.set(True)
    try:
        yield
    finally:
        _storing.reset(token)


@dataclass(frozen=True)
class KeyRef:
    """Where an API key came from, in place of the key in a stored definition: the
    variable it is read from again when the run continues (None: it was written in the
    script; the continuing process must supply it)."""

    env: str | None


def key_ref(value: Any) -> Any:
    """``value`` as it may be stored: an API key becomes a ``KeyRef`` while ``storing()``;
    anything else (and every value outside ``storing()``) is returned as it is.

    Example:
        >>> import os
        >>> os.environ["DOCTEST_API_KEY"] = "sk-doctest-123456"
        >>> with storing():
        ...     key_ref("sk-doctest-123456")
        KeyRef(env='DOCTEST_API_KEY')
        >>> resolve_key(KeyRef(env="DOCTEST_API_KEY"))
        'sk-doctest-123456'
    """
    if not _storing.get() or not isinstance(value, str) or not value:
        return value
    env = next((name for name, found in os.environ.items() if found == value), None)
    return KeyRef(env)


def resolve_key(value: Any) -> Any:
    """A stored ``KeyRef`` read again from the environment (None when unset or written in
    the script); any other value as it is."""
    if isinstance(value, KeyRef):
        return os.environ.get(value.env) if value.env else None
    return value
