"""What an MCP tool result becomes for the model: text, image parts, short references.

A ``CallToolResult`` holds content blocks of several types. Each becomes text the model
reads, never a Python object dump:

- text: as it is;
- image: a short placeholder (``[image 1: image/png, 5.4 kB]``) in the text, and the
  image itself as an image part (``ToolImage``) that the tool loop attaches for models
  that take images (``model_takes_images``);
- audio and binary resources: a short placeholder;
- a resource link: ``[resource link: name <uri> (mime): description]``;
- an embedded text resource: ``[resource uri]`` and its text;
- structured content: compact JSON, when the result has no text of its own (servers
  send the same JSON as text for older clients).

Example:
    >>> from mcp.types import CallToolResult, ImageContent, TextContent
    >>> result = CallToolResult(content=[TextContent(type="text", text="a chart"),
    ...     ImageContent(type="image", data="aGVsbG8=", mime_type="image/png")])
    >>> converted = convert_result(result)
    >>> converted.text
    'a chart\\n[image 1: image/png, 5 B]'
    >>> converted.images[0].mime_type, converted.images[0].data
    ('image/png', 'aGVsbG8=')
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Converted", "ToolImage", "convert_result", "image_parts", "size_text"]

_MAX_TEXT = 100_000


@dataclass(frozen=True, kw_only=True)
class ToolImage:
    """One image a tool returned."""

    mime_type: str
    """Its media type (``image/png``)."""
    data: str
    """The image, base64-encoded (as MCP sends it)."""

    @property
    def data_url(self) -> str:
        """The image as a ``data:`` URL (what OpenAI-style image parts take)."""
        return f"data:{self.mime_type};base64,{self.data}"


@dataclass(kw_only=True)
class Converted:
    """A tool result as the model gets it."""

    text: str
    """The text of the tool message."""
    images: list[ToolImage] = field(default_factory=list)
    """Images to attach for models that take them (placeholders are in ``text``)."""
    is_error: bool = False
    """The server marked the result as an error."""


def size_text(nbytes: int) -> str:
    """A short size: ``5 B``, ``5.4 kB``, ``1.2 MB``.

    Example:
        >>> size_text(5), size_text(5_430), size_text(1_200_000)
        ('5 B', '5.4 kB', '1.2 MB')
    """
    if nbytes < 1000:
        return f"{nbytes} B"
    if nbytes < 1_000_000:
        return f"{nbytes / 1000:.1f} kB"
    return f"{nbytes / 1_000_000:.1f} MB"


def _decoded_size(data: str) -> int:
    return len(data) * 3 // 4 - data[-2:].count("=") if data else 0


def _get(item: Any, *names: str) -> Any:
    for name in names:
        value = getattr(item, name, None)
        if value is not None:
            return value
    return None


def _resource(resource: Any, images: list[ToolImage]) -> str:
    uri = str(_get(resource, "uri") or "?")
    mime = _get(resource, "mime_type", "mimeType") or ""
    text = _get(resource, "text")
    if isinstance(text, str):
        return f"[resource {uri}]\n{text}"
    blob = _get(resource, "blob") or ""
    if str(mime).startswith("image/") and blob:
        images.append(ToolImage(mime_type=str(mime), data=str(blob)))
        return f"[image {len(images)}: {mime}, {size_text(_decoded_size(blob))}, from {uri}]"
    return f"[resource {uri}: {mime or 'binary'}, {size_text(_decoded_size(blob))}, not shown]"


def _block(item: Any, images: list[ToolImage]) -> str:
    kind = getattr(item, "type", None)
    if kind == "text":
        return str(getattr(item, "text", ""))
    if kind == "image":
        mime = str(_get(item, "mime_type", "mimeType") or "image")
        data = str(getattr(item, "data", "") or "")
        images.append(ToolImage(mime_type=mime, data=data))
        return f"[image {len(images)}: {mime}, {size_text(_decoded_size(data))}]"
    if kind == "audio":
        mime = _get(item, "mime_type", "mimeType") or "audio"
        data = str(getattr(item, "data", "") or "")
        return f"[audio: {mime}, {size_text(_decoded_size(data))}, not shown]"
    if kind == "resource_link":
        name = _get(item, "title", "name") or ""
        mime = _get(item, "mime_type", "mimeType")
        description = _get(item, "description")
        text = f"[resource link: {name} <{_get(item, 'uri')}>"
        text += f" ({mime})" if mime else ""
        return text + (f": {description}]" if description else "]")
    if kind == "resource":
        return _resource(getattr(item, "resource", None), images)
    return f"[{kind or 'unknown'} content, not shown]"


def convert_result(result: Any) -> Converted:
    """A ``CallToolResult`` (mcp 1.x or 2.x) as text and image parts."""
    images: list[ToolImage] = []
    parts = [_block(item, images) for item in getattr(result, "content", None) or []]
    structured = _get(result, "structured_content", "structuredContent")
    if structured is not None and not any(getattr(item, "type", None) == "text"
                                          for item in getattr(result, "content", None) or []):
        parts.insert(0, json.dumps(structured, default=str, ensure_ascii=False))
    is_error = bool(_get(result, "is_error", "isError"))
    return Converted(text="\n".join(parts)[:_MAX_TEXT], images=images, is_error=is_error)


def image_parts(tool: str, images: list[ToolImage]) -> list[dict[str, Any]]:
    """The content parts of a user message showing a tool's images (OpenAI format).

    Example:
        >>> image_parts("chart", [ToolImage(mime_type="image/png", data="aGk=")])[1]
        {'type': 'image_url', 'image_url': {'url': 'data:image/png;base64,aGk='}}
    """
    parts: list[dict[str, Any]] = [{"type": "text", "text": f"The image(s) tool '{tool}' "
                                    "returned, in order:"}]
    parts.extend({"type": "image_url", "image_url": {"url": image.data_url}}
                 for image in images)
    return parts
