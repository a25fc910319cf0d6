"""Fixtures for the data layer (tests/test_data.c): what PIL and torchvision do to training images in
diffusers' train_unconditional.py (image.convert("RGB"), Resize(res, BILINEAR), CenterCrop(res), ToTensor,
Normalize([0.5], [0.5])), on small patterns, plus small image files in tests/fixtures/data/ and PIL's
decoding of them.

torchvision's size and crop arithmetic is restated here (torchvision.transforms.functional.resize with an
int size: shorter side -> size, longer -> int(size * long / short); center_crop: offsets
int(round((new - size) / 2.0))) so the generator needs only PIL and torch.
"""
import pathlib

import numpy as np
import torch
from PIL import Image

AREA = "data"
FILES = pathlib.Path(__file__).resolve().parent.parent.parent / "tests" / "fixtures" / "data"

FILTERS = {"bilinear": Image.BILINEAR, "area": Image.BOX}

# (name, height, width, channels, resolution, filter)
RESIZE_CASES = [
    ("grey_up", 28, 28, 1, 32, "bilinear"),
    ("grey_down", 28, 28, 1, 16, "bilinear"),
    ("rgb_wide_down", 37, 53, 3, 24, "bilinear"),
    ("rgb_tall_up", 20, 13, 3, 32, "bilinear"),
    ("rgb_odd_crop_a", 67, 64, 3, 64, "bilinear"),
    ("rgb_odd_crop_b", 64, 69, 3, 64, "bilinear"),
    ("rgb_big_down", 100, 75, 3, 64, "bilinear"),
    ("rgb_area_down", 100, 75, 3, 64, "area"),
    ("rgb_area_third", 45, 67, 3, 20, "area"),
    ("grey_area_up", 10, 14, 1, 23, "area"),
]


def torchvision_resize_crop(img: Image.Image, size: int, resample) -> Image.Image:
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    img = img.resize((new_w, new_h), resample)
    top = int(round((new_h - size) / 2.0))
    left = int(round((new_w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def pattern(seed: int, h: int, w: int, c: int) -> np.ndarray:
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, (h, w, c), generator=g).numpy().astype(np.float64)
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    smooth = 127.5 + 127.5 * np.sin(xx[..., None] * 0.4 + yy[..., None] * 0.25 + np.arange(c) * 1.3)
    return np.clip(0.5 * noise + 0.5 * smooth, 0, 255).astype(np.uint8)


def pil_image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr, "L" if arr.shape[2] == 1 else "RGB")


def as_tensor(img) -> torch.Tensor:
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[..., None]
    return torch.from_numpy(arr.astype(np.float32).copy())


def write_image_files():
    """Small files in several encodings; the test reads them and compares with PIL's pixels."""
    FILES.mkdir(parents=True, exist_ok=True)
    files = {}
    files["rgb420.jpg"] = (pil_image(pattern(11, 30, 40, 3)), dict(quality=90))
    files["rgb444_progressive.jpg"] = (pil_image(pattern(12, 17, 26, 3)),
                                       dict(quality=85, subsampling=0, progressive=True))
    files["grey.jpg"] = (pil_image(pattern(13, 17, 23, 1)), dict(quality=90))
    files["cmyk.jpg"] = (pil_image(pattern(14, 16, 24, 3)).convert("CMYK"), dict(quality=95))
    palette = pil_image(pattern(15, 21, 19, 3)).quantize(colors=16)
    palette.info["transparency"] = 3
    files["palette.png"] = (palette, dict(transparency=3))
    rgba = np.concatenate([pattern(16, 12, 16, 3), pattern(17, 12, 16, 1)], axis=2)
    files["rgba.png"] = (Image.fromarray(rgba, "RGBA"), {})
    files["grey.png"] = (pil_image(pattern(18, 9, 31, 1)), {})
    for name, (img, kwargs) in files.items():
        img.save(FILES / name, **kwargs)
    return sorted(files)


def generate():
    out = {}
    for i, (name, h, w, c, res, filt) in enumerate(RESIZE_CASES):
        arr = pattern(100 + i, h, w, c)
        out[f"resize.{name}.input"] = as_tensor(arr)
        out[f"resize.{name}.expected"] = as_tensor(torchvision_resize_crop(pil_image(arr), res, FILTERS[filt]))

    rgb = pattern(200, 1, 4096, 3)
    out["luma.input"] = as_tensor(rgb)
    out["luma.expected"] = as_tensor(pil_image(rgb).convert("L"))

    levels = torch.arange(256, dtype=torch.uint8)
    out["levels"] = levels.float().div(255).sub(0.5).div(0.5)  # ToTensor then Normalize([0.5], [0.5])

    for name in write_image_files():
        img = Image.open(FILES / name)
        mode = "L" if img.mode in ("L", "LA", "I;16") else "RGB"
        out[f"decode.{name}"] = as_tensor(img.convert(mode))
        out[f"pipeline16.{name}"] = as_tensor(torchvision_resize_crop(img.convert("RGB"), 16, Image.BILINEAR))
    return out
