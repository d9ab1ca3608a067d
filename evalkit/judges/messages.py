"""Chat messages shared by the judges: image parts, data URLs and content fingerprints.

Inside evalkit an image part is {"type": "image", "image": PIL.Image}. On the wire (OpenAI layout) it is
{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}; PNG is lossless, so a server
sees exactly the pixels the local judge sees.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from typing import Any

from PIL import Image

_DATA_URL_PREFIX = "data:image/"


def image_sha256(image: Image.Image) -> str:
    """A hash of the pixels (mode, size, raw bytes), independent of how the image was encoded on disk."""
    digest = hashlib.sha256()
    digest.update(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def image_to_data_url(image: Image.Image) -> str:
    """A base64 PNG data URL (RGB or RGBA are kept as they are; other modes are converted to RGB)."""
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def data_url_to_image(url: str) -> Image.Image:
    """Decode a base64 image data URL; remote URLs are refused because judges run offline."""
    if not url.startswith(_DATA_URL_PREFIX) or ";base64," not in url:
        raise ValueError("only base64 image data URLs are supported")
    payload = url.split(";base64,", 1)[1]
    image = Image.open(io.BytesIO(base64.b64decode(payload)))
    image.load()
    return image


def user_message(question: str, image: Image.Image | None = None) -> dict[str, Any]:
    """A user turn: the question alone, or with the image in the yes/no layout (image first)."""
    if image is None:
        return {"role": "user", "content": [{"type": "text", "text": question}]}
    return {"role": "user", "content": yes_no_content({"type": "image", "image": image}, question)}


# A yes/no request's user content: the image, then the question. Engines with a prefix cache (vLLM, SGLang,
# the hf: judge's own KV cache) then compute an image's tokens once for all of its questions. Official
# benchmark prompts that put the text first (TIIF-Bench, WISE, GEdit's VIEScore) keep their order.
YES_NO_LAYOUT = ("image", "question")


def yes_no_content(image_part: dict[str, Any], question: str, layout: tuple[str, ...] = YES_NO_LAYOUT):
    """The user content parts of one yes/no question in `layout` order."""
    parts = {"image": image_part, "question": {"type": "text", "text": question}}
    return [parts[name] for name in layout]


def layout_key(layout: tuple[str, ...] = YES_NO_LAYOUT) -> dict[str, str]:
    """The cache-key part naming a yes/no layout. Yes/no keys leave the layout out of their hash (only the
    question and image hashes are in it), so another order must change the key: it adds {"layout": ...}.
    The image-first layout, which every key was written with before the layout had a name, adds nothing,
    so existing caches stay valid."""
    return {} if tuple(layout) == YES_NO_LAYOUT else {"layout": "+".join(layout)}


def with_system(messages: list[dict[str, Any]], system_prompt: str | None) -> list[dict[str, Any]]:
    """Prepend a system turn when one is configured."""
    if not system_prompt:
        return list(messages)
    return [{"role": "system", "content": system_prompt}, *messages]


def _parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return list(content)


def to_openai(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """evalkit messages → OpenAI wire messages (images as PNG data URLs)."""
    wire = []
    for message in messages:
        if isinstance(message.get("content"), str):
            wire.append({"role": message["role"], "content": message["content"]})
            continue
        parts = []
        for part in _parts(message):
            if part.get("type") == "image":
                parts.append({"type": "image_url", "image_url": {"url": image_to_data_url(part["image"])}})
            else:
                parts.append(part)
        wire.append({"role": message["role"], "content": parts})
    return wire


def from_openai(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI wire messages → evalkit messages (data URLs decoded to PIL images). Raises ValueError."""
    local = []
    for message in messages:
        if not isinstance(message, dict) or "role" not in message:
            raise ValueError("each message needs a role")
        if isinstance(message.get("content"), str):
            local.append({"role": message["role"], "content": message["content"]})
            continue
        parts = []
        for part in _parts(message):
            kind = part.get("type")
            if kind == "image_url":
                url = part["image_url"]["url"] if isinstance(part["image_url"], dict) else part["image_url"]
                parts.append({"type": "image", "image": data_url_to_image(url)})
            elif kind == "text":
                parts.append({"type": "text", "text": part.get("text", "")})
            else:
                raise ValueError(f"unsupported content part type {kind!r}")
        local.append({"role": message["role"], "content": parts})
    return local


def split_images(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Image.Image]]:
    """Messages with image parts reduced to {"type": "image"} (for chat templates), plus the images in order.

    Wire-format image_url parts are decoded too, so a judge accepts either layout.
    """
    stripped, images = [], []
    for message in messages:
        if isinstance(message.get("content"), str):
            stripped.append(dict(message))
            continue
        parts = []
        for part in _parts(message):
            if part.get("type") == "image":
                images.append(part["image"])
                parts.append({"type": "image"})
            elif part.get("type") == "image_url":
                url = part["image_url"]["url"] if isinstance(part["image_url"], dict) else part["image_url"]
                images.append(data_url_to_image(url))
                parts.append({"type": "image"})
            else:
                parts.append(part)
        stripped.append({"role": message["role"], "content": parts})
    return stripped, images


def messages_fingerprint(messages: list[dict[str, Any]]) -> str:
    """sha256 of the messages with every image replaced by its pixel hash: the cache's prompt key."""
    canonical = []
    for message in messages:
        parts = []
        for part in _parts(message):
            if part.get("type") == "image":
                parts.append({"type": "image", "sha256": image_sha256(part["image"])})
            elif part.get("type") == "image_url":
                url = part["image_url"]["url"] if isinstance(part["image_url"], dict) else part["image_url"]
                parts.append({"type": "image", "sha256": image_sha256(data_url_to_image(url))})
            else:
                parts.append(part)
        canonical.append({"role": message["role"], "content": parts})
    text = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()
