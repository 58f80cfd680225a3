"""A card's pictures beyond its avatar: a SillyTavern expression folder, and a V3 card's assets.

SillyTavern shows a character's expressions from a folder of one image per emotion, named by its
label (`joy.png`, `anger.png`; newer versions allow `joy-1.png`, `joy.alt.png` for more of one
label): each becomes an expression of the character, the first of a label winning. A V3 card lists
`assets`; those of type `emotion` (or `expression`) become expressions, `background` become scenes.
Only what the card itself holds is read: `data:` URIs. Assets in a CHARX archive (`embeded://`),
in PNG chunks (`__asset:`) or on the web are listed as not mapped, and kept under `extensions`.

Every image comes from a stranger: a regular file (no link) of at most MAX_IMAGE_BYTES, decoded
from its header first (a bomb is refused), and really a PNG, JPEG, WebP or GIF. One that is not is
left out and listed; it does not stop the import.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from .assets import IMAGE_FORMATS, MAX_IMAGE_BYTES, MAX_IMAGE_SIDE
from .card_errors import CardError
from .import_text import slug
from .untrusted_file import read_capped

MAX_EXPRESSIONS = 64  # as a character may have
MAX_SCENES = 64  # backgrounds made scenes (a pack may have 128 scenes)
MAX_FOLDER_ENTRIES = 2000  # files looked at in an expression folder
_EXTENSIONS = {"png": "png", "jpg": "jpg", "jpeg": "jpg", "webp": "webp", "gif": "gif"}
_DATA_URI = re.compile(r"data:image/([a-z0-9.+-]+)?(?:;[^,;]*)*;base64,", re.IGNORECASE)
_FORMAT_EXTENSION = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif"}


@dataclass
class CardArt:
    """Images for the pack, by their path in it, and what they are."""

    files: dict[str, bytes] = field(default_factory=dict)
    expressions: dict[str, str] = field(default_factory=dict)  # label -> path in the pack
    scenes: dict[str, tuple[str, str]] = field(default_factory=dict)  # scene id -> (name, path)
    done: list[str] = field(default_factory=list)  # what was imported, a line each
    unmapped: list[str] = field(default_factory=list)  # what was not, a line each
    kept_assets: list[Any] | None = None  # the card's assets as kept under extensions (data URIs left out)


def expression_folder(folder: Path, art: CardArt) -> None:
    """The folder's images as expressions (`art/expressions/<label>.<ext>`)."""
    if not folder.is_dir():
        raise CardError(f"{folder} is not a folder", hint="Give --expressions the folder of one image per emotion.")
    try:
        names = sorted(entry.name for _, entry in zip(range(MAX_FOLDER_ENTRIES), os.scandir(folder), strict=False))
    except OSError as error:
        raise CardError(f"{folder}: cannot read the folder ({error.strerror})") from None
    # `joy.png` before `joy-1.png`: the plain name is the label's first image.
    names.sort(key=lambda name: (_label(name), name.lower() != f"{_label(name)}{Path(name).suffix.lower()}", name))
    others: list[str] = []
    count = 0
    for name in names:
        path = folder / name
        extension = _EXTENSIONS.get(Path(name).suffix.lower().lstrip("."))
        label = slug(_label(name))
        if path.is_symlink() or not path.is_file() or name.startswith("."):
            continue
        if extension is None or not label:
            art.unmapped.append(f"{name}: not an expression image (a PNG, JPEG, WebP or GIF named by its emotion)")
            continue
        if label in art.expressions:
            others.append(name)
            continue
        if len(art.expressions) >= MAX_EXPRESSIONS:
            art.unmapped.append(f"{name}: a character has at most {MAX_EXPRESSIONS} expressions")
            continue
        try:
            data = read_capped(path, limit=MAX_IMAGE_BYTES, what="an image", hint="", follow_links=False)
        except CardError as error:
            art.unmapped.append(f"{name}: {error.message.removeprefix(str(path)).lstrip(': ')}")
            continue
        if problem := image_problem(data):
            art.unmapped.append(f"{name}: {problem}")
            continue
        art.expressions[label] = f"art/expressions/{label}.{extension}"
        art.files[art.expressions[label]] = data
        count += 1
    if others:
        shown = ", ".join(others[:5]) + (", …" if len(others) > 5 else "")
        art.unmapped.append(f"{len(others)} more images of an emotion already imported ({shown}): one per emotion")
    art.done.append(f"{count} expressions from {folder.name}/")


def _label(name: str) -> str:
    """SillyTavern's label of a sprite file: its name up to the first `-` or `.`, in lower case."""
    return re.split(r"[-.]", name, maxsplit=1)[0].lower()


def v3_assets(assets: object, art: CardArt) -> None:
    """A V3 card's `assets`: emotions as expressions, backgrounds as scenes (the one named `main` first)."""
    if not isinstance(assets, list):
        return
    kept: list[Any] = []
    backgrounds = sorted(
        (a for a in assets if isinstance(a, dict) and a.get("type") == "background"),
        key=lambda a: a.get("name") != "main",
    )
    for asset in assets:
        if not isinstance(asset, dict):
            continue
        kind, uri, name = asset.get("type"), asset.get("uri"), asset.get("name")
        kept.append({**asset, "uri": "data: (read at import)"} if _is_data(uri) else asset)
        if kind not in ("emotion", "expression", "background"):
            if kind not in ("icon",) or uri != "ccdefault:":
                art.unmapped.append(f"the asset {_shown(name)} of type {_shown(kind)}: no place for it in a pack")
            continue
        if not isinstance(uri, str) or not _is_data(uri):
            art.unmapped.append(f"the {kind} asset {_shown(name)}: {_where(uri)}")
            continue
        data, why = _from_data_uri(uri)
        if data is None or (problem := why or image_problem(data)):
            art.unmapped.append(f"the {kind} asset {_shown(name)}: {why or problem}")
            continue
        extension = _image_extension(data)
        if kind == "background":
            continue  # below, in order
        label = slug(str(name or ""))
        if not label or label in art.expressions or len(art.expressions) >= MAX_EXPRESSIONS:
            art.unmapped.append(f"the {kind} asset {_shown(name)}: no label for it, or one already imported")
            continue
        art.expressions[label] = f"art/expressions/{label}.{extension}"
        art.files[art.expressions[label]] = data
        art.done.append(f"the {kind} asset {_shown(name)} as the expression {label}")
    for asset in backgrounds:
        data, _ = _from_data_uri(asset.get("uri"))
        if data is None or image_problem(data):
            continue  # told above
        name = str(asset.get("name") or "Background")
        if len(art.scenes) >= MAX_SCENES:
            art.unmapped.append(f"the background asset {_shown(name)}: more than {MAX_SCENES} backgrounds")
            continue
        scene_id = _unique(slug(name) or "background", art.scenes)
        art.scenes[scene_id] = (name, f"art/scenes/{scene_id}.{_image_extension(data)}")
        art.files[art.scenes[scene_id][1]] = data
        art.done.append(f"the background asset {_shown(name)} as the scene {scene_id}")
    art.kept_assets = kept


def _unique(base: str, taken: dict[str, Any]) -> str:
    candidate, number = base, 2
    while candidate in taken:
        candidate, number = f"{base}-{number}", number + 1
    return candidate


def _is_data(uri: object) -> bool:
    return isinstance(uri, str) and uri[:5].lower() == "data:"


def _shown(value: object) -> str:
    text = " ".join(str(value).split())[:40]
    return repr(text)


def _where(uri: object) -> str:
    """Why an asset's image was not read, by where it is."""
    text = uri.lower() if isinstance(uri, str) else ""
    if text.startswith(("embeded://", "embedded://")):
        return "it is inside a CHARX archive, which import-card does not read"
    if text.startswith("__asset:"):
        return "it is in a PNG chunk of its own, which import-card does not read"
    if text.startswith(("http://", "https://")):
        return "it is on the web; import-card fetches nothing"
    if text.startswith("ccdefault:"):
        return "ccdefault: names no image for this type"
    return "its uri is not one import-card reads"


def _from_data_uri(uri: object) -> tuple[bytes | None, str]:
    if not isinstance(uri, str):
        return None, "no uri"
    found = _DATA_URI.match(uri[:200])
    if found is None:
        return None, "a data: uri that is not a base64 image"
    body = uri[found.end() :]
    if len(body) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        return None, f"an image of more than {MAX_IMAGE_BYTES >> 20} MiB"
    try:
        return base64.b64decode(body, validate=True), ""
    except (binascii.Error, ValueError):
        return None, "a data: uri that is not valid base64"


def image_problem(data: bytes) -> str | None:
    """Why `data` is not an image a pack may hold (None when it is), its pixels never decoded."""
    if len(data) > MAX_IMAGE_BYTES:
        return f"{len(data) / 2**20:.1f} MiB: images may be at most {MAX_IMAGE_BYTES >> 20} MiB"
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if image.format not in IMAGE_FORMATS:
                return f"a {image.format} image: use PNG, JPEG, WebP or GIF"
            if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
                return f"{width}×{height} pixels: at most {MAX_IMAGE_SIDE}×{MAX_IMAGE_SIDE}"
            image.verify()
    except UnidentifiedImageError:
        return "not an image"
    except Image.DecompressionBombError:
        return "it claims more pixels than any image may have"
    except Exception as error:  # noqa: BLE001 - Pillow's decoders raise many kinds on hostile bytes
        return f"not a readable image ({type(error).__name__})"
    return None


def _image_extension(data: bytes) -> str:
    with Image.open(io.BytesIO(data)) as image:
        return _FORMAT_EXTENSION.get(str(image.format), "png")
