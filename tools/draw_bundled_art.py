"""Draws the art of the bundled packs (backgrounds, character expressions, covers) with Pillow.

The images in scenarios/*/art/ were made by this script; run it again after changing it:

    python tools/draw_bundled_art.py

Everything is drawn from shapes, so the art is original and the script is the whole source.
Backgrounds are 640×360, portraits 256×384 with a transparent background.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

ROOT = Path(__file__).resolve().parents[1] / "scenarios"
BACKGROUND = (640, 360)
PORTRAIT = (256, 384)
RGB = tuple[int, int, int]


# -- helpers ------------------------------------------------------------------------------------


def gradient(size: tuple[int, int], top: RGB, bottom: RGB) -> Image.Image:
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    for y in range(height):
        t = y / max(1, height - 1)
        draw.line([(0, y), (width, y)], fill=tuple(round(a + (b - a) * t) for a, b in zip(top, bottom)))
    return image


def glow(image: Image.Image, centre: tuple[int, int], radius: int, colour: RGB, strength: float = 0.8) -> None:
    """Blend a soft radial light onto `image`."""
    layer = Image.new("RGB", image.size, colour)
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).ellipse(
        [centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius], fill=int(255 * strength)
    )
    image.paste(layer, (0, 0), mask.filter(ImageFilter.GaussianBlur(radius / 2)))


def stars(draw: ImageDraw.ImageDraw, count: int, box: tuple[int, int, int, int], seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(count):
        x, y = rng.randint(box[0], box[2]), rng.randint(box[1], box[3])
        shade = rng.randint(150, 255)
        size = rng.choice((0, 0, 0, 1))
        draw.ellipse([x - size, y - size, x + size, y + size], fill=(shade, shade, min(255, shade + 20)))


def waves(draw: ImageDraw.ImageDraw, top: int, colour: RGB, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    for row in range(rows):
        y0 = top + row * 14
        phase = rng.random() * math.tau
        points = [(x, y0 + 4 * math.sin(x / 23 + phase)) for x in range(0, 641, 8)]
        shade = tuple(min(255, c + row * 6) for c in colour)
        draw.line(points, fill=shade, width=2)


def save(image: Image.Image, pack: str, name: str) -> None:
    path = ROOT / pack / "art" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)


def title_font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


# -- portraits ----------------------------------------------------------------------------------


def person(
    skin: RGB,
    hair: RGB,
    clothes: RGB,
    expression: str,
    *,
    long_hair: bool = False,
    accent: RGB | None = None,
) -> Image.Image:
    """A bust: shoulders, neck, head, hair, and a face showing `expression`."""
    image = Image.new("RGBA", PORTRAIT, (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    if long_hair:
        draw.rounded_rectangle([58, 90, 198, 300], radius=50, fill=hair)
    draw.polygon([(28, 384), (52, 290), (100, 262), (156, 262), (204, 290), (228, 384)], fill=clothes)
    if accent:
        draw.polygon([(112, 262), (128, 300), (144, 262)], fill=accent)
    draw.rectangle([112, 220, 144, 270], fill=tuple(int(c * 0.9) for c in skin))
    draw.ellipse([68, 80, 188, 240], fill=skin)
    draw.chord([62, 66, 194, 190], 180, 360, fill=hair)
    draw.polygon([(66, 130), (80, 92), (120, 84), (96, 112)], fill=hair)
    face(draw, expression, eye=(40, 40, 60), mouth=(150, 70, 70))
    draw.ellipse([80, 176, 100, 190], fill=(*_blush(skin), 255))
    draw.ellipse([156, 176, 176, 190], fill=(*_blush(skin), 255))
    return image


def _blush(skin: RGB) -> RGB:
    return (min(255, skin[0] + 10), max(0, skin[1] - 30), max(0, skin[2] - 25))


def face(draw: ImageDraw.ImageDraw, expression: str, *, eye: RGB, mouth: RGB) -> None:
    left, right, eye_y, mouth_y = 104, 152, 150, 200
    brow = {"stern": 6, "surprised": -8, "sad": -4}.get(expression, 0)
    # eyebrows: stern slopes down to the middle, sad slopes up
    for x, side in ((left, -1), (right, 1)):
        inner, outer = (x - 12 * side, x + 12 * side)
        tilt = {"stern": 5, "sad": -5}.get(expression, 0)
        draw.line([(inner, eye_y - 18 + brow + tilt), (outer, eye_y - 18 + brow - tilt)], fill=eye, width=3)
    if expression in ("smile", "happy", "laugh"):
        for x in (left, right):
            draw.arc([x - 10, eye_y - 6, x + 10, eye_y + 8], 200, 340, fill=eye, width=3)
    elif expression == "sleepy":
        for x in (left, right):
            draw.line([(x - 9, eye_y + 2), (x + 9, eye_y + 2)], fill=eye, width=3)
    else:
        height = {"surprised": 9, "stern": 4}.get(expression, 7)
        for x in (left, right):
            draw.ellipse([x - 7, eye_y - height, x + 7, eye_y + height], fill=eye)
            draw.ellipse([x - 2, eye_y - height + 2, x + 2, eye_y - height + 6], fill=(255, 255, 255))
    if expression in ("smile", "happy"):
        draw.arc([112, mouth_y - 14, 144, mouth_y + 6], 20, 160, fill=mouth, width=3)
    elif expression == "laugh":
        draw.chord([110, mouth_y - 10, 146, mouth_y + 14], 0, 180, fill=mouth)
    elif expression == "surprised":
        draw.ellipse([120, mouth_y - 8, 136, mouth_y + 10], fill=mouth)
    elif expression in ("stern", "sad"):
        draw.arc([114, mouth_y - 2, 142, mouth_y + 16], 200, 340, fill=mouth, width=3)
    elif expression == "thinking":
        draw.line([(118, mouth_y), (140, mouth_y - 4)], fill=mouth, width=3)
    else:
        draw.line([(116, mouth_y), (140, mouth_y)], fill=mouth, width=3)


def cat(expression: str) -> Image.Image:
    image = Image.new("RGBA", PORTRAIT, (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    fur, dark, eye = (150, 150, 158), (110, 110, 118), (170, 210, 90)
    draw.ellipse([48, 250, 208, 384], fill=fur)
    ears_up = expression != "hiss"
    for side in (-1, 1):
        cx = 128 + side * 50
        tip = (cx + side * (8 if ears_up else 34), 110 if ears_up else 150)
        draw.polygon([(cx - 28, 180), (cx + 28, 180), tip], fill=fur)
        draw.polygon([(cx - 14, 176), (cx + 14, 176), (tip[0], tip[1] + 22)], fill=(220, 160, 170))
    draw.ellipse([58, 140, 198, 270], fill=fur)
    draw.line([(128, 150), (128, 175)], fill=dark, width=4)
    for x in (98, 158):
        if expression == "calm":
            draw.arc([x - 14, 192, x + 14, 214], 200, 340, fill=(40, 40, 40), width=3)
        else:
            draw.ellipse([x - 13, 188, x + 13, 214], fill=eye)
            draw.ellipse([x - 3, 190, x + 3, 212], fill=(20, 20, 20))
    draw.polygon([(120, 224), (136, 224), (128, 232)], fill=(220, 130, 150))
    if expression == "hiss":
        draw.chord([108, 228, 148, 262], 0, 180, fill=(120, 30, 40))
        draw.polygon([(114, 232), (120, 232), (117, 244)], fill=(255, 255, 255))
        draw.polygon([(136, 232), (142, 232), (139, 244)], fill=(255, 255, 255))
    else:
        draw.arc([112, 226, 128, 240], 0, 180, fill=(60, 60, 60), width=2)
        draw.arc([128, 226, 144, 240], 0, 180, fill=(60, 60, 60), width=2)
    for side in (-1, 1):
        for dy in (-6, 4):
            draw.line([(128 + side * 20, 230 + dy), (128 + side * 70, 222 + dy * 2)], fill=(230, 230, 230), width=1)
    return image


def robot(expression: str) -> Image.Image:
    image = Image.new("RGBA", PORTRAIT, (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    metal, dark, light = (170, 185, 200), (90, 100, 115), (120, 230, 255)
    draw.rounded_rectangle([60, 270, 196, 384], radius=20, fill=metal)
    draw.rectangle([116, 240, 140, 272], fill=dark)
    draw.line([(128, 90), (128, 60)], fill=dark, width=4)
    draw.ellipse([118, 46, 138, 66], fill=(255, 120, 90) if expression == "happy" else light)
    draw.rounded_rectangle([56, 90, 200, 244], radius=28, fill=metal)
    draw.rounded_rectangle([72, 112, 184, 210], radius=18, fill=(30, 40, 55))
    if expression == "happy":
        for x in (104, 152):
            draw.arc([x - 14, 140, x + 14, 170], 200, 340, fill=light, width=5)
        draw.arc([104, 160, 152, 196], 20, 160, fill=light, width=4)
    else:
        for x in (104, 152):
            draw.rounded_rectangle([x - 10, 140, x + 10, 164], radius=4, fill=light)
        draw.line([(112, 188), (144, 188)], fill=light, width=4)
    return image


# -- the lighthouse -----------------------------------------------------------------------------


def lighthouse_silhouette(draw: ImageDraw.ImageDraw, x: int, base: int, scale: float, colour: RGB) -> None:
    width_bottom, width_top, height = 46 * scale, 28 * scale, 170 * scale
    draw.polygon(
        [
            (x - width_bottom / 2, base),
            (x + width_bottom / 2, base),
            (x + width_top / 2, base - height),
            (x - width_top / 2, base - height),
        ],
        fill=colour,
    )
    draw.rectangle([x - 20 * scale, base - height - 26 * scale, x + 20 * scale, base - height], fill=colour)
    draw.polygon(
        [
            (x - 24 * scale, base - height - 26 * scale),
            (x + 24 * scale, base - height - 26 * scale),
            (x, base - height - 48 * scale),
        ],
        fill=colour,
    )


def kitchen() -> Image.Image:
    image = gradient(BACKGROUND, (92, 62, 46), (60, 40, 32))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 270, 640, 360], fill=(74, 50, 38))
    for x in range(0, 640, 48):
        draw.line([(x, 270), (x + 30, 360)], fill=(66, 44, 34), width=2)
    draw.rectangle([380, 60, 560, 200], fill=(26, 34, 52))
    rng = random.Random(4)
    for _ in range(60):
        x, y = rng.randint(384, 556), rng.randint(64, 196)
        draw.line([(x, y), (x - 3, y + 9)], fill=(120, 140, 170), width=1)
    draw.line([(470, 60), (470, 200)], fill=(60, 40, 30), width=6)
    draw.line([(380, 130), (560, 130)], fill=(60, 40, 30), width=6)
    draw.rectangle([372, 52, 568, 208], outline=(50, 34, 26), width=8)
    draw.rectangle([60, 180, 200, 290], fill=(40, 40, 44))
    draw.rectangle([80, 200, 180, 250], fill=(255, 140, 50))
    glow(image, (130, 225), 120, (255, 150, 60), 0.35)
    draw = ImageDraw.Draw(image)
    draw.rectangle([240, 240, 460, 256], fill=(120, 80, 50))
    draw.rectangle([256, 256, 268, 330], fill=(100, 66, 42))
    draw.rectangle([432, 256, 444, 330], fill=(100, 66, 42))
    draw.ellipse([330, 222, 362, 244], fill=(60, 110, 160))
    return image


def lamp_room() -> Image.Image:
    image = gradient(BACKGROUND, (12, 18, 40), (24, 34, 70))
    draw = ImageDraw.Draw(image)
    stars(draw, 120, (0, 0, 640, 200), seed=7)
    glow(image, (320, 170), 170, (255, 220, 120), 0.65)
    draw = ImageDraw.Draw(image)
    for x in range(40, 640, 112):
        draw.line([(x, 0), (x, 300)], fill=(40, 50, 70), width=6)
    draw.ellipse([270, 120, 370, 220], fill=(255, 236, 170))
    draw.polygon([(320, 170), (640, 90), (640, 250)], fill=(255, 240, 190))
    draw.rectangle([0, 290, 640, 360], fill=(30, 30, 36))
    draw.line([(0, 290), (640, 290)], fill=(70, 70, 80), width=4)
    for x in range(0, 640, 24):
        draw.line([(x, 290), (x, 320)], fill=(60, 60, 70), width=2)
    return image


def shore() -> Image.Image:
    image = gradient(BACKGROUND, (20, 26, 56), (60, 70, 110))
    draw = ImageDraw.Draw(image)
    stars(draw, 90, (0, 0, 640, 160), seed=3)
    draw.ellipse([520, 40, 570, 90], fill=(240, 236, 210))
    draw.rectangle([0, 220, 640, 360], fill=(18, 34, 60))
    waves(draw, 226, (40, 70, 110), 9, seed=5)
    draw.polygon([(0, 360), (0, 250), (60, 230), (130, 260), (220, 300), (300, 360)], fill=(30, 28, 30))
    lighthouse_silhouette(draw, 90, 240, 0.9, (26, 24, 28))
    draw.polygon([(90, 75), (640, 20), (640, 110)], fill=(90, 90, 100))
    glow(image, (90, 80), 30, (255, 230, 150), 0.9)
    return image


def lighthouse_cover() -> Image.Image:
    image = shore()
    draw = ImageDraw.Draw(image)
    font = title_font(34)
    draw.text((320, 300), "The Lighthouse at Gull Point", font=font, anchor="mm", fill=(255, 236, 190))
    return image


# -- the café -----------------------------------------------------------------------------------


def cafe_counter() -> Image.Image:
    image = gradient(BACKGROUND, (58, 40, 70), (36, 26, 46))
    draw = ImageDraw.Draw(image)
    draw.rectangle([40, 40, 300, 150], fill=(8, 10, 24))
    stars(draw, 50, (44, 44, 296, 146), seed=11)
    draw.ellipse([220, 70, 270, 120], fill=(210, 120, 90))
    draw.rectangle([36, 36, 304, 154], outline=(90, 70, 110), width=6)
    for x in (380, 470, 560):
        draw.line([(x, 0), (x, 70)], fill=(30, 20, 30), width=2)
        draw.chord([x - 24, 60, x + 24, 100], 180, 360, fill=(240, 200, 120))
        glow(image, (x, 90), 60, (255, 210, 140), 0.4)
        draw = ImageDraw.Draw(image)
    draw.rectangle([0, 250, 640, 360], fill=(96, 60, 44))
    draw.rectangle([0, 240, 640, 256], fill=(140, 96, 70))
    draw.rounded_rectangle([440, 180, 520, 242], radius=8, fill=(190, 190, 200))
    draw.rectangle([462, 160, 498, 182], fill=(160, 160, 170))
    for x, colour in ((120, (230, 230, 240)), (170, (250, 190, 80)), (220, (140, 200, 240))):
        draw.rounded_rectangle([x, 214, x + 30, 242], radius=6, fill=colour)
    return image


def observation_deck() -> Image.Image:
    image = gradient(BACKGROUND, (4, 6, 18), (14, 18, 40))
    draw = ImageDraw.Draw(image)
    stars(draw, 260, (0, 0, 640, 300), seed=21)
    draw.ellipse([360, 120, 760, 520], fill=(70, 110, 170))
    draw.arc([360, 120, 760, 520], 180, 270, fill=(140, 190, 240), width=6)
    for y in (240, 280, 320):
        draw.arc([380, y - 120, 740, y + 240], 200, 250, fill=(90, 140, 190), width=3)
    draw.rectangle([0, 300, 640, 360], fill=(30, 34, 48))
    for x in range(0, 640, 160):
        draw.line([(x, 0), (x, 300)], fill=(40, 46, 64), width=10)
    draw.line([(0, 300), (640, 300)], fill=(80, 90, 120), width=4)
    return image


def cafe_cover() -> Image.Image:
    image = observation_deck()
    draw = ImageDraw.Draw(image)
    draw.text((200, 150), "Starlight Cafe", font=title_font(40), anchor="mm", fill=(255, 220, 160))
    draw.text(
        (200, 195), "a small place at the edge of the map", font=title_font(16), anchor="mm", fill=(200, 210, 240)
    )
    return image


# -- the packs ----------------------------------------------------------------------------------

ART: dict[str, dict[str, Callable[[], Image.Image]]] = {
    "lighthouse": {
        "cover": lighthouse_cover,
        "scenes/kitchen": kitchen,
        "scenes/lamp-room": lamp_room,
        "scenes/shore": shore,
        **{
            f"mira/{expression}": (
                lambda e=expression: person(
                    (232, 196, 170), (120, 60, 40), (60, 80, 90), e, long_hair=True, accent=(200, 170, 90)
                )
            )
            for expression in ("neutral", "smile", "stern", "surprised")
        },
        **{f"pip/{expression}": (lambda e=expression: cat(e)) for expression in ("calm", "alert", "hiss")},
    },
    "starlight-cafe": {
        "cover": cafe_cover,
        "scenes/counter": cafe_counter,
        "scenes/deck": observation_deck,
        **{
            f"juno/{expression}": (
                lambda e=expression: person((200, 150, 120), (40, 40, 60), (150, 90, 60), e, accent=(240, 230, 210))
            )
            for expression in ("neutral", "happy", "thinking", "sad")
        },
        **{f"bolt/{expression}": (lambda e=expression: robot(e)) for expression in ("idle", "happy")},
    },
}


def main() -> None:
    for pack, images in ART.items():
        for name, draw in images.items():
            save(draw(), pack, name)
            print(f"scenarios/{pack}/art/{name}.png")


if __name__ == "__main__":
    main()
