"""The embedded vision bias benchmark: colored digits (Colored-MNIST style).

The 1,797 8×8 digits that ship with scikit-learn (``load_digits``, offline) are resized to
``image_size`` and their foreground is tinted with a colour. Digit ``k``'s own colour is
``COLOR_NAMES[k]``. In ``train`` the colour is the label's colour with probability
``color_strength`` and uniform otherwise; in ``validation`` and ``test`` it is uniform over the
ten colours; ``challenge`` is the bias-conflicting part of ``test`` (colour ≠ label's colour).
Splits: a seeded 60 / 10 / 30 % permutation; ``max_train`` caps the training split.
Groups read ``"<label>/<colour name>"``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from debiaskd.core.config import VisionDataConfig
from debiaskd.data.schema import COLOR_NAMES, COLOR_RGB, VISION_COLUMNS, ImageSplit

SPLIT_SHARES = (("train", 0.6), ("validation", 0.1), ("test", 0.3))


def resize_gray(gray: np.ndarray, size: int) -> np.ndarray:
    """``(N, H, W)`` floats in [0, 1] → ``(N, size, size)`` floats in [0, 1] (PIL bilinear)."""
    if gray.shape[1:] == (size, size):
        return gray.astype(np.float32)
    out = np.empty((len(gray), size, size), dtype=np.float32)
    for i, img in enumerate(gray):
        pil = Image.fromarray(np.clip(img * 255.0, 0, 255).astype(np.uint8), mode="L")
        out[i] = np.asarray(pil.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    return out


def colorize(
    gray_images: np.ndarray,
    labels: np.ndarray,
    strength: float,
    rng: np.random.Generator,
    size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Tint digits: colour = label's colour with prob ``strength``, else uniform over all ten.

    ``gray_images`` are ``(N, H, W)`` in [0, 1] (or uint8 in [0, 255]); returns uint8 images
    ``(N, 3, size, size)`` and the colour index of each image.
    """
    gray = np.asarray(gray_images)
    if gray.dtype == np.uint8:
        gray = gray.astype(np.float32) / 255.0
    gray = resize_gray(gray.astype(np.float32), size)
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    biased = rng.random(n) < strength
    random_colors = rng.integers(0, len(COLOR_NAMES), size=n)
    colors = np.where(biased, labels % len(COLOR_NAMES), random_colors).astype(np.int64)
    rgb = np.asarray(COLOR_RGB, dtype=np.float32)[colors]  # (N, 3)
    images = gray[:, None, :, :] * rgb[:, :, None, None]
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8), colors


def make_split(images: np.ndarray, labels: np.ndarray, colors: np.ndarray, prefix: str) -> ImageSplit:
    """Wrap arrays into an :class:`ImageSplit` with the vision schema."""
    labels = np.asarray(labels, dtype=np.int64)
    colors = np.asarray(colors, dtype=np.int64)
    frame = pd.DataFrame({
        "image_id": [f"{prefix}-{i:05d}" for i in range(len(labels))],
        "label": labels,
        "color": [COLOR_NAMES[c] for c in colors],
        "bias_aligned": (colors == labels % len(COLOR_NAMES)),
        "group": [f"{int(lab)}/{COLOR_NAMES[c]}" for lab, c in zip(labels, colors, strict=True)],
    }, columns=list(VISION_COLUMNS))
    frame["bias_aligned"] = frame["bias_aligned"].astype(bool)
    return ImageSplit(np.ascontiguousarray(images), frame)


def conflicting(split: ImageSplit, prefix: str = "challenge") -> ImageSplit:
    """The bias-conflicting examples of a split (colour ≠ label's colour), re-numbered."""
    idx = np.flatnonzero(~split.frame["bias_aligned"].to_numpy(dtype=bool))
    out = split.subset(idx)
    out.frame["image_id"] = [f"{prefix}-{i:05d}" for i in range(len(out))]
    return out


def colored_splits(
    gray: np.ndarray, labels: np.ndarray, cfg: VisionDataConfig, strength: float | None = None
) -> dict[str, ImageSplit]:
    """Seeded 60/10/30 split of gray digits, coloured as the benchmark prescribes."""
    rng = np.random.default_rng(np.random.PCG64(cfg.seed))
    order = rng.permutation(len(labels))
    bounds = np.cumsum([0] + [round(share * len(labels)) for _, share in SPLIT_SHARES])
    bounds[-1] = len(labels)
    out: dict[str, ImageSplit] = {}
    for k, (name, _) in enumerate(SPLIT_SHARES):
        idx = order[bounds[k]:bounds[k + 1]]
        if name == "train" and cfg.max_train is not None:
            idx = idx[: cfg.max_train]
        s = (cfg.color_strength if strength is None else strength) if name == "train" else 0.0
        images, colors = colorize(gray[idx], labels[idx], s, rng, cfg.image_size)
        out[name] = make_split(images, labels[idx], colors, name)
    out["challenge"] = conflicting(out["test"])
    return out


def generate_vision(cfg: VisionDataConfig) -> dict[str, ImageSplit]:
    """Colored sklearn digits: train / validation / test / challenge, deterministic from the seed."""
    from sklearn.datasets import load_digits  # scikit-learn: slow (~2.5 s), only the vision benchmark needs it

    digits = load_digits()
    gray = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    return colored_splits(gray, labels, cfg)
