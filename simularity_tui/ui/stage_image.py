"""The stage as one picture: the scene's background with the on-stage characters' current
expressions standing in front of it, side by side.

Composed with Pillow into a single image, so that every graphics protocol (kitty, sixel, half
cells) draws the same stage with one image, and a stage change is one redraw.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from PIL import Image

from ..scenario.loader import LoadedPack
from ..scenario.sources import PathOutsidePack, resolve_inside
from ..story.stage import Stage

STAGE_SIZE = (640, 360)
SPRITE_HEIGHT = 0.86  # of the stage's height
EMPTY_BACKGROUND = (24, 24, 30)


def compose_stage(loaded: LoadedPack, stage: Stage, size: tuple[int, int] = STAGE_SIZE) -> Image.Image:
    width, height = size
    canvas = Image.new("RGBA", size, (*EMPTY_BACKGROUND, 255))
    scene = loaded.pack.scenes.get(stage.scene or "")
    if scene is not None and scene.background:
        background = _image(loaded.root, scene.background)
        if background is not None:
            canvas.paste(_cover(background, size), (0, 0))
    sprites = []
    for cid, look in stage.cast.items():
        character = loaded.pack.characters.get(cid)
        path = character.expressions.get(look.expression or "") if character else None
        sprite = _image(loaded.root, path) if path else None
        if sprite is not None:
            sprites.append(sprite)
    for index, sprite in enumerate(sprites):
        scale = height * SPRITE_HEIGHT / sprite.height
        placed = sprite.resize((max(1, round(sprite.width * scale)), max(1, round(sprite.height * scale))))
        centre = round(width * (index + 1) / (len(sprites) + 1))
        canvas.alpha_composite(placed, (centre - placed.width // 2, height - placed.height))
    return canvas.convert("RGB")


def cover_picture(loaded: LoadedPack, size: tuple[int, int] = STAGE_SIZE) -> Image.Image:
    """The pack's cover; else its first episode's opening stage."""
    cover = _image(loaded.root, loaded.pack.cover) if loaded.pack.cover else None
    if cover is not None:
        return _cover(cover, size).convert("RGB")
    return compose_stage(loaded, Stage.opening(loaded.pack, next(iter(loaded.pack.episodes))), size)


def _cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale `image` to fill `size`, cropping what overflows (centred)."""
    width, height = size
    scale = max(width / image.width, height / image.height)
    scaled = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))))
    left, top = (scaled.width - width) // 2, (scaled.height - height) // 2
    return scaled.crop((left, top, left + width, top + height))


def _image(root: Path, relative: str) -> Image.Image | None:
    try:
        path = resolve_inside(root, relative)
        return _load(path, path.stat().st_mtime_ns)
    except (PathOutsidePack, OSError):
        return None  # the pack was checked when it loaded; a file gone since is just not drawn


@lru_cache(maxsize=64)
def _load(path: Path, _mtime: int) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGBA")
