"""Knowledge from files: ``Agent(knowledge=["docs/", "faq.md", "policy.pdf"])``.

Files (a folder: every ``.md``, ``.markdown``, ``.txt``, ``.rst`` and ``.pdf`` under it)
are cut into chunks of about ``CHUNK_CHARS`` characters along paragraphs (a Markdown
heading starts a new chunk and is kept with it), embedded once and kept in the memory
store as ``kind="knowledge"`` rows, keyed by the file's SHA-256: a file whose bytes
changed is indexed again (its old chunks replaced), an unchanged one costs one digest.
Each chunk's metadata names its ``source`` (absolute path) and ``chunk`` (its number), so
an answer can cite it. PDFs are read with ``pypdf`` (the ``knowledge`` extra).
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from pathlib import Path
from typing import Any

from ray_orch.core.errors import InvalidTaskFieldError
from ray_orch.store.memory import MemoryRow

__all__ = ["CHUNK_CHARS", "SUFFIXES", "chunk_text", "index_knowledge", "knowledge_files"]

CHUNK_CHARS = 1000
SUFFIXES = (".md", ".markdown", ".txt", ".rst", ".pdf")
_HEADING = re.compile(r"^#{1,6}\s")


def knowledge_files(paths: Any, *, who: str) -> list[Path]:
    """The files ``knowledge=`` names, folders expanded (sorted), each checked.

    Args:
        paths: a path or a list of paths (files or folders).
        who: names the owner in an error (``"agent 'Writer'"``).

    Raises:
        InvalidTaskFieldError: a path that does not exist, a file of a kind that cannot
            be read, a PDF without ``pypdf`` installed.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not isinstance(paths, (list, tuple)):
        raise InvalidTaskFieldError(f"{who}: knowledge must be a list of files or folders, "
                                    f"not {type(paths).__name__}", field="knowledge")
    found: list[Path] = []
    for given in paths:
        if not isinstance(given, (str, Path)):
            given = getattr(given, "file_path", None) or getattr(given, "file_paths", None)
            if isinstance(given, list):  # CrewAI's TextFileKnowledgeSource(file_paths=[...])
                found += knowledge_files(given, who=who)
                continue
            if given is None:
                raise InvalidTaskFieldError(f"{who}: knowledge entries must be paths, not "
                                            f"{paths!r}", field="knowledge")
        path = Path(given).expanduser().absolute()
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and
                            p.suffix.lower() in SUFFIXES)
        elif path.is_file():
            if path.suffix.lower() not in SUFFIXES:
                raise InvalidTaskFieldError(
                    f"{who}: knowledge file {path} is not one of {', '.join(SUFFIXES)}",
                    field="knowledge")
            found.append(path)
        else:
            raise InvalidTaskFieldError(f"{who}: knowledge path {path} does not exist",
                                        field="knowledge")
    if any(p.suffix.lower() == ".pdf" for p in found):
        import importlib.util

        if importlib.util.find_spec("pypdf") is None:
            raise InvalidTaskFieldError(f"{who}: knowledge has PDF files; reading them needs "
                                        "pypdf (pip install 'ray-orch[knowledge]')",
                                        field="knowledge")
    return list(dict.fromkeys(found))


def _read(path: Path, data: bytes) -> str:
    if path.suffix.lower() != ".pdf":
        return data.decode("utf-8", errors="replace")
    import io

    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    return "\n\n".join(page.extract_text() or "" for page in reader.pages)


def chunk_text(text: str, *, size: int = CHUNK_CHARS) -> list[str]:
    """Cut ``text`` into chunks of about ``size`` characters, along paragraphs; a Markdown
    heading starts a new chunk; a paragraph longer than ``size`` is cut at sentences.

    Example:
        >>> chunk_text("# Refunds\\nWithin 30 days.\\n\\n# Shipping\\nTwo days.")
        ['# Refunds\\nWithin 30 days.', '# Shipping\\nTwo days.']
    """
    pieces: list[str] = []
    for block in re.split(r"\n\s*\n", text):
        block = block.strip()
        if not block:
            continue
        lines = block.splitlines()
        start = 0
        for i, line in enumerate(lines):  # headings inside a block start new pieces
            if i > start and _HEADING.match(line):
                pieces.append("\n".join(lines[start:i]))
                start = i
        pieces.append("\n".join(lines[start:]))
    chunks: list[str] = []
    current = ""
    for piece in pieces:
        for part in _split_long(piece, size):
            if current and (len(current) + len(part) + 2 > size or _HEADING.match(part)):
                chunks.append(current)
                current = ""
            current = f"{current}\n\n{part}" if current else part
    if current:
        chunks.append(current)
    return chunks


def _split_long(piece: str, size: int) -> list[str]:
    if len(piece) <= size:
        return [piece]
    parts, current = [], ""
    for sentence in re.split(r"(?<=[.!?])\s+", piece):
        while len(sentence) > size:  # no sentence end in sight: cut it
            parts.append(sentence[:size])
            sentence = sentence[size:]
        if current and len(current) + len(sentence) + 1 > size:
            parts.append(current)
            current = ""
        current = f"{current} {sentence}" if current else sentence
    if current:
        parts.append(current)
    return parts


def index_knowledge(memory: Any, paths: list[Path]) -> dict[str, str]:
    """Index the files in ``memory``'s store: each new or changed file is read, chunked,
    embedded and stored; an unchanged one (same SHA-256) is left as it is.

    Args:
        memory: the ``Memory`` whose store and embedder to use.
        paths: files (from ``knowledge_files``).

    Returns:
        ``{source: "indexed" | "unchanged"}``.
    """
    store, namespace = memory.store, memory.namespace
    done: dict[str, str] = {}
    for path in paths:
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        source = str(path)
        if store.file_digest(namespace, source) == digest:
            done[source] = "unchanged"
            continue
        chunks = chunk_text(_read(path, data))
        now = time.time()
        rows = [MemoryRow(id=uuid.uuid4().hex, namespace=namespace, text=chunk,
                          kind="knowledge", source=source, created_at=now,
                          metadata={"chunk": i, "digest": digest[:16]})
                for i, chunk in enumerate(chunks)]
        if rows:
            tag = memory.embedder.tag
            for row, vector in zip(rows, memory.embedder.embed(chunks), strict=True):
                row.embedder, row.vector = tag, vector
        store.set_file(namespace, source, digest, rows)
        done[source] = "indexed"
    return done
