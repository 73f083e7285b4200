"""Authenticated run definitions: what ``ray-orch approve`` may unpickle.

A paused run's definition is stored pickled, so that any process can continue it.
Unpickling runs code, so the blob is stored with an HMAC-SHA256 tag over the run id,
its mode and the blob, keyed by a secret private to the user: ``$RAY_ORCH_STORE_KEY``
when set (a cluster's drivers and operators share it that way), else
``~/.ray-orch/store.key`` (32 random bytes, created 0600 in a 0700 folder on first use,
refused if others may read it). The tag is checked before anything is unpickled: whoever
can write the store but does not hold the key cannot make the next approver run code.

Only drivers sign and verify (a run's definition is signed where it is packed, before
the run starts); members and the Supervisor never need the key.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from ray_orch.core.errors import StoreError, StoreIntegrityError

__all__ = ["KEY_ENV", "key_file", "sign", "store_key", "verify"]

KEY_ENV = "RAY_ORCH_STORE_KEY"
"""The environment variable holding the key (any string; it is hashed to 32 bytes)."""


def key_file() -> Path:
    """``~/.ray-orch/store.key``: where this user's key is kept when the env gives none."""
    return Path.home() / ".ray-orch" / "store.key"


def store_key() -> bytes:
    """This user's definition key: from ``$RAY_ORCH_STORE_KEY``, else the key file
    (created on first use).

    Raises:
        StoreError: the key file belongs to another user or others may read it.
    """
    configured = os.environ.get(KEY_ENV)
    if configured:
        return hashlib.sha256(configured.encode()).digest()
    path = key_file()
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32))
    info = path.stat()
    if info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise StoreError(f"the store key {path} must belong to this user and be readable by "
                         f"it alone (it is uid {info.st_uid}, mode "
                         f"{stat.S_IMODE(info.st_mode):o}): chmod 600 it", store=str(path))
    return bytes.fromhex(path.read_text().strip())


def sign(key: bytes, *, run_id: str, mode: str, blob: bytes) -> str:
    """The tag of a definition (hex HMAC-SHA256 over run id, mode and blob).

    Example:
        >>> tag = sign(b"k" * 32, run_id="r1", mode="workflow", blob=b"...")
        >>> len(tag)
        64
    """
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in (run_id.encode(), mode.encode(), blob):
        mac.update(len(part).to_bytes(8, "big"))
        mac.update(part)
    return mac.hexdigest()


def verify(key: bytes, *, run_id: str, mode: str, blob: bytes, tag: str,
           location: str) -> None:
    """Check a stored definition's tag before it is unpickled.

    Raises:
        StoreIntegrityError: the tag does not match (changed, or signed with another
            key); names the run and the store.

    Example:
        >>> key = b"k" * 32
        >>> tag = sign(key, run_id="r1", mode="workflow", blob=b"def")
        >>> verify(key, run_id="r1", mode="workflow", blob=b"def", tag=tag, location="db")
        >>> verify(key, run_id="r1", mode="workflow", blob=b"evil", tag=tag, location="db")
        Traceback (most recent call last):
        ...
        ray_orch.core.errors.StoreIntegrityError: the stored definition of run 'r1' in db failed its authentication: it was changed since it was stored, or signed with another key ($RAY_ORCH_STORE_KEY or ~/.ray-orch/store.key); it was not loaded and nothing ran
    """
    expected = sign(key, run_id=run_id, mode=mode, blob=blob)
    if not hmac.compare_digest(expected, str(tag)):
        raise StoreIntegrityError(
            f"the stored definition of run {run_id!r} in {location} failed its "
            "authentication: it was changed since it was stored, or signed with another key "
            f"(${KEY_ENV} or ~/.ray-orch/store.key); it was not loaded and nothing ran",
            store=location, run_id=run_id)
