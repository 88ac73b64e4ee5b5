"""Fashion-MNIST IDX loader (numpy only).

Reads the four IDX files of Fashion-MNIST (gzipped or plain) and returns
uint8 arrays:

    images: (N, 28, 28) uint8, pixel values 0..255
    labels: (N,)        uint8, class index 0..9

Default location is the Debian package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist/``); override with the
``FASHION_MNIST_DIR`` environment variable or the ``data_dir`` argument.

Usage:
    from fashion_mnist import load_train, load_test, LABELS
    x_train, y_train = load_train()
    x_test, y_test = load_test()
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"

# Preprocessing statistics used by the BitFleet models:
#   x_float = (x_uint8 / 255 - MEAN) / STD
MEAN = 0.2860
STD = 0.3530

LABELS = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# IDX element type codes -> numpy dtypes (big-endian).
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def data_dir(path: str | None = None) -> str:
    return path or os.environ.get("FASHION_MNIST_DIR") or DEFAULT_DIR


def _find(directory: str, stem: str) -> str:
    for name in (stem, stem + ".gz"):
        p = os.path.join(directory, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(
        f"{stem}[.gz] not found in {directory} "
        "(apt-get install dataset-fashion-mnist, or set FASHION_MNIST_DIR)"
    )


def read_idx(path: str) -> np.ndarray:
    """Parse one IDX file (optionally gzip-compressed) into a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4:
        raise ValueError(f"{path}: too short for an IDX header")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code not in _IDX_DTYPES:
        raise ValueError(f"{path}: bad IDX magic {data[:4]!r}")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    dtype = _IDX_DTYPES[dtype_code]
    count = int(np.prod(dims)) if dims else 1
    offset = 4 + 4 * ndim
    expected = offset + count * dtype.itemsize
    if len(data) < expected:
        raise ValueError(f"{path}: truncated ({len(data)} < {expected} bytes)")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return arr.reshape(dims).astype(dtype.newbyteorder("="), copy=True)


def load(split: str, path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 [N,28,28], labels uint8 [N]) for 'train' or 'test'."""
    if split not in _FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    d = data_dir(path)
    img_stem, lbl_stem = _FILES[split]
    images = read_idx(_find(d, img_stem))
    labels = read_idx(_find(d, lbl_stem))
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise ValueError("expected uint8 IDX files")
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise ValueError(f"inconsistent shapes {images.shape} / {labels.shape}")
    return images, labels


def load_train(path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    return load("train", path)


def load_test(path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    return load("test", path)


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 [N,28,28] -> float32 [N,1,28,28], (x/255 - MEAN) / STD."""
    x = images.astype(np.float32) / np.float32(255.0)
    x = (x - np.float32(MEAN)) / np.float32(STD)
    return x.reshape(images.shape[0], 1, images.shape[1], images.shape[2])


if __name__ == "__main__":
    for split in ("train", "test"):
        x, y = load(split)
        print(split, x.shape, x.dtype, y.shape, y.dtype,
              "pixel mean/std = %.4f/%.4f" % ((x / 255).mean(), (x / 255).std()),
              "label counts", np.bincount(y, minlength=10).tolist())
