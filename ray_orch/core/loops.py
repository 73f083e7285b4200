"""Loop data: what a ``task_type="loop"`` task iterates over.

``loop_data`` may be a CSV path (the header row names the fields), a JSON file (a list),
a JSONL file (one item a line), a Python list, or None (iterate over the output of the
first context task: a list in its structured output, else the lines of its raw text).
Each item becomes the ``inputs`` of one iteration and fills ``{placeholders}``; every
item also has ``index`` and ``item`` (the whole item, as text for scalars).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from ray_orch.core.errors import LoopDataError
from ray_orch.core.output import TaskOutput

__all__ = ["as_inputs", "items_from_output", "load_items"]


def load_items(source: Any, *, task: str, ragged: str = "error") -> list[Any]:
    """Read the items of a static ``loop_data``.

    Args:
        source: a CSV / JSON / JSONL path, or a list.
        task: the loop task's name (for messages).
        ragged: a CSV row with more or fewer fields than the header: ``"error"``
            (``LoopDataError`` naming the file and line) or ``"pad"`` (missing fields
            are "", extra fields dropped).

    Raises:
        LoopDataError: unreadable, unsupported, not a list, ragged, or empty.
    """
    if isinstance(source, (list, tuple)):
        items = list(source)
    elif isinstance(source, (str, os.PathLike)):
        items = _read_file(Path(source), task=task, ragged=ragged)
    else:
        raise LoopDataError(f"task '{task}': loop_data must be a CSV/JSON/JSONL path or a list, "
                            f"not {type(source).__name__}", task=task, field="loop_data")
    if not items:
        raise LoopDataError(f"task '{task}': loop_data {source!r} has no items", task=task,
                            field="loop_data")
    return items


def _read_file(path: Path, *, task: str, ragged: str) -> list[Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise LoopDataError(f"task '{task}': cannot read loop_data '{path}': {exc.strerror}",
                            task=task, field="loop_data") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            return _read_csv(text, path, task=task, ragged=ragged)
        if suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        if suffix == ".json":
            data = json.loads(text)
            if not isinstance(data, list):
                raise LoopDataError(f"task '{task}': loop_data '{path}' must hold a JSON list",
                                    task=task, field="loop_data")
            return data
    except (json.JSONDecodeError, csv.Error) as exc:
        raise LoopDataError(f"task '{task}': loop_data '{path}' is not valid {suffix[1:]}: {exc}",
                            task=task, field="loop_data") from None
    raise LoopDataError(f"task '{task}': loop_data '{path}' must end in .csv, .json or .jsonl",
                        task=task, field="loop_data")


def _read_csv(text: str, path: Path, *, task: str, ragged: str) -> list[dict[str, str]]:
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None:
        return []
    if len(set(header)) != len(header) or any(not name.strip() for name in header):
        raise LoopDataError(f"task '{task}': loop_data '{path}' line 1: the header needs "
                            f"unique, non-empty column names, not {header}", task=task,
                            field="loop_data")
    rows: list[dict[str, str]] = []
    for values in reader:
        if not values:
            continue  # a blank line
        if len(values) != len(header):
            if ragged != "pad":
                raise LoopDataError(
                    f"task '{task}': loop_data '{path}' line {reader.line_num}: {len(values)} "
                    f"fields where the header has {len(header)} ({', '.join(header)}); fix the "
                    "row, or pass loop_ragged='pad' to pad / trim such rows", task=task,
                    field="loop_data")
            values = (values + [""] * len(header))[:len(header)]
        rows.append(dict(zip(header, values, strict=True)))
    return rows


def fields_of(items: list[Any]) -> set[str]:
    """The field names every item offers to placeholders."""
    names = {"index", "item"}
    if items and all(isinstance(i, dict) for i in items):
        common = set(items[0])
        for item in items[1:]:
            common &= set(item)
        names |= common
    return names


def as_inputs(item: Any, index: int) -> dict[str, Any]:
    """One item as the inputs of its iteration."""
    text = item if isinstance(item, str) else json.dumps(item, ensure_ascii=False, default=str)
    inputs: dict[str, Any] = {"index": index, "item": text}
    if isinstance(item, dict):
        inputs.update(item)
    return inputs


def items_from_output(output: TaskOutput, *, task: str) -> list[Any]:
    """The items of an upstream output: a list field of its structured output, or its lines.

    Raises:
        LoopDataError: the output holds no items.
    """
    data = output.json_dict
    if data is None and output.pydantic is not None and hasattr(output.pydantic, "model_dump"):
        data = output.pydantic.model_dump(mode="json")
    if data is None:
        try:
            parsed = json.loads(output.raw)
        except (TypeError, ValueError):
            parsed = None
        if isinstance(parsed, (list, dict)):
            data = parsed  # type: ignore[assignment]
    items: list[Any] | None = None
    if isinstance(data, list):
        items = data
    elif isinstance(data, dict):
        lists = [value for value in data.values() if isinstance(value, list)]
        if len(lists) == 1:
            items = lists[0]
    if items is None:
        items = [line.strip().lstrip("-*•").strip() for line in output.raw.splitlines()]
        items = [line for line in items if line]
    if not items:
        raise LoopDataError(f"task '{task}': the output of '{output.task_id}' has no items "
                            "to loop over", task=task, field="loop_data")
    return items
