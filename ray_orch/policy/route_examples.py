"""Example messages of common route keys, for decisions by meaning on the embedded model.

A decision whose text says nothing of its keys (the guide's ``Categorize customer
inquiry``, keys ``technical``, ``billing``, ``complex``, ``simple``) gives a small local
model only the keys' words to go on; a hosted model knows what a "complex" support case
is, a 22M-parameter encoder does not. This glossary is that knowledge, written down: for
route keys common in triage workflows, 80-150 example messages each for ``technical``,
``billing``, ``complex`` and ``simple`` and about forty for the others, which the
embedded default compares a message with (nearest examples, ``ray_orch.policy.decide_local``).

The examples are in ``route_examples.json`` beside this module (written for this
purpose; examples close to any inquiry of the labelled sets that measure accuracy were
removed). Their embeddings ship beside them in ``route_examples.npz`` (encoding them
takes about 3 s of CPU; loading, milliseconds), tagged with a digest of the examples and
the sentence model's weights; with other examples or another model, they are encoded
once and cached in ``~/.cache/ray_orch``.
Regenerate it with ``python -m ray_orch.policy.route_examples``. A key is
known by its name or an alias (``tech`` -> ``technical``, ``escalate`` -> ``complex``);
when two keys of one decision would take the same entry, neither does. Unknown keys are
scored on their words and descriptions alone. Hosted models never use this.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
import zipfile
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["canonical_key", "examples_for", "preload_vectors", "vectors_digest",
           "write_vectors"]

_FILE = Path(__file__).with_name("route_examples.json")
_VECTORS = Path(__file__).with_name("route_examples.npz")
_preload_lock = threading.Lock()
_log = logging.getLogger("ray_orch")


@cache
def _glossary() -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    data = json.loads(_FILE.read_text(encoding="utf-8"))
    examples: dict[str, tuple[str, ...]] = {}
    names: dict[str, str] = {}
    for key, entry in data["routes"].items():
        examples[key] = tuple(entry["examples"])
        for name in (key, *entry.get("aliases", ())):
            names[_normal(name)] = key
    return examples, names


def _normal(key: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", key.lower()).strip("_")


def canonical_key(key: str) -> str | None:
    """The glossary entry a route key takes, or ``None``.

    Example:
        >>> canonical_key("Technical"), canonical_key("escalate"), canonical_key("zebra")
        ('technical', 'complex', None)
    """
    return _glossary()[1].get(_normal(key))


def examples_for(keys: list[str]) -> dict[str, tuple[str, ...]]:
    """Example messages of each key of one decision that the glossary knows.

    Args:
        keys: the decision's keys.

    Returns:
        ``{key: examples}`` for the known keys; a key whose entry another key of the
        same decision also takes is left out (its examples could not tell them apart).

    Example:
        >>> sorted(examples_for(["billing", "complex", "zebra"]))
        ['billing', 'complex']
        >>> examples_for(["escalate", "complex"])
        {}
    """
    examples, _ = _glossary()
    taken: dict[str, list[str]] = {}
    for key in keys:
        entry = canonical_key(key)
        if entry is not None:
            taken.setdefault(entry, []).append(key)
    return {users[0]: examples[entry] for entry, users in taken.items() if len(users) == 1}


def _all_examples() -> list[str]:
    examples, _ = _glossary()
    return [text for key in sorted(examples) for text in examples[key]]


def vectors_digest(encoder: Any) -> str:
    """What vectors were computed from: the examples and the model's weights."""
    digest = hashlib.sha256(_FILE.read_bytes())
    digest.update(encoder.digest.encode())
    return digest.hexdigest()


def _cached_file(digest: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ray_orch" / f"route_examples-{digest[:16]}.npz"


def _read(path: Path, digest: str, count: int) -> Any:
    """The vectors in ``path`` when it holds ``count`` of them for ``digest``, else None."""
    import numpy as np

    try:
        with np.load(path) as data:
            if str(data["digest"]) != digest or len(data["vectors"]) != count:
                return None
            return data["vectors"].astype(np.float32)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def preload_vectors(encoder: Any) -> bool:
    """Give ``encoder`` the embeddings of every example, once per encoder.

    From the file shipped with the package; else (other examples, or another model
    through ``RAY_ORCH_SENTENCE_MODEL_PATH``) from this user's cache, else by encoding
    them now (about 3 s of CPU, said once in the log) and caching them there.

    Returns:
        Whether the shipped file was used.
    """
    with _preload_lock:
        if getattr(encoder, "examples_loaded", None) is not None:
            return bool(encoder.examples_loaded)
        import numpy as np

        texts = _all_examples()
        digest = vectors_digest(encoder)
        vectors = _read(_VECTORS, digest, len(texts))
        shipped = vectors is not None
        if vectors is None:
            cached = _cached_file(digest)
            vectors = _read(cached, digest, len(texts))
            if vectors is None:
                _log.warning("ray-orch: the route glossary's shipped embeddings do not match "
                             "these examples or this sentence model; encoding %d examples "
                             "once (cached in %s)", len(texts), cached)
                vectors = encoder.encode(texts)
                try:
                    cached.parent.mkdir(parents=True, exist_ok=True)
                    np.savez_compressed(cached, vectors=vectors.astype(np.float16),
                                        digest=np.array(digest))
                except OSError:
                    pass  # a read-only home: encoded again by the next process
        encoder.remember(texts, vectors)
        encoder.examples_loaded = shipped
        return shipped


def write_vectors() -> Path:
    """Encode every example with the installed sentence model and write the shipped file."""
    import numpy as np

    from ray_orch.model.sentence import encoder

    enc = encoder()
    vectors = enc.encode(_all_examples())
    np.savez_compressed(_VECTORS, vectors=vectors.astype(np.float16),
                        digest=np.array(vectors_digest(enc)))
    return _VECTORS


if __name__ == "__main__":
    print(f"wrote {write_vectors()}")
