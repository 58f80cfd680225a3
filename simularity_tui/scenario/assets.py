"""A pack's images: inside the pack, present, small enough, and really images.

Images come from strangers. A file is opened by Pillow only after its size is checked, and its
pixel count is checked from the header before any pixel is decoded (a 100 kB PNG can claim
50,000 × 50,000 pixels: a decompression bomb).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..toml_source import KeyPath
from .schema import Pack
from .sources import PathOutsidePack, resolve_inside

MAX_IMAGE_BYTES = 8 << 20
MAX_IMAGE_SIDE = 4096
IMAGE_FORMATS = {"PNG", "JPEG", "WEBP", "GIF"}

Finding = tuple[KeyPath, str]


def asset_references(pack: Pack) -> Iterator[tuple[KeyPath, str]]:
    """Every asset path the pack names, with the key that names it."""
    if pack.cover is not None:
        yield ["cover"], pack.cover
    for cid, character in pack.characters.items():
        for expression, path in character.expressions.items():
            yield ["characters", cid, "expressions", expression], path
    for sid, scene in pack.scenes.items():
        if scene.background is not None:
            yield ["scenes", sid, "background"], scene.background


def check_assets(pack: Pack, root: Path) -> list[Finding]:
    return [(where, problem) for where, path in asset_references(pack) if (problem := image_problem(root, path))]


def image_problem(root: Path, relative: str) -> str | None:
    """Why `relative` is not a usable image of the pack at `root`, or None when it is."""
    from PIL import Image, UnidentifiedImageError  # here: the game's first frame needs no Pillow

    try:
        path = resolve_inside(root, relative)
    except PathOutsidePack as escape:
        return str(escape)
    if not path.exists():
        return f"'{relative}': no such file in the pack"
    if not path.is_file():
        return f"'{relative}' is not a file"
    size = path.stat().st_size
    if size > MAX_IMAGE_BYTES:
        return f"'{relative}' is {size / 2**20:.1f} MiB: images may be at most {MAX_IMAGE_BYTES >> 20} MiB"
    try:
        with Image.open(path) as image:
            width, height = image.size
            kind = image.format
            if kind not in IMAGE_FORMATS:
                return f"'{relative}' is a {kind} image: use PNG, JPEG, WebP or GIF"
            if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE:
                return f"'{relative}' is {width}×{height} pixels: at most {MAX_IMAGE_SIDE}×{MAX_IMAGE_SIDE}"
            image.verify()
    except UnidentifiedImageError:
        return f"'{relative}' is not an image: use PNG, JPEG, WebP or GIF"
    except Image.DecompressionBombError:
        return f"'{relative}' claims more pixels than any image may have (a decompression bomb?)"
    except Exception as error:  # noqa: BLE001 - Pillow's decoders raise many kinds on hostile bytes
        return f"'{relative}' is not a readable image ({type(error).__name__}: {error})"[:300]
    return None
