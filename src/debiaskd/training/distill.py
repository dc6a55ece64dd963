"""Distillation on top of :func:`debiaskd.training.loop.fit`: teacher-output caching and rounds.

Teacher logits are computed once per (model weights, data content) and stored as ``.npy``
files in a cache folder, so epochs, rounds and variants that share a teacher and a training
frame reuse them. :func:`distill_student` turns a :class:`~debiaskd.core.study.VariantSpec` into
training runs: teacher-weight initialisation, ``spec.rounds`` rounds of iterative distillation
(optionally through a teacher-assistant), cached or online KD.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from debiaskd.core.errors import DebiaskdError
from debiaskd.data.schema import ImageSplit
from debiaskd.tasks import task_of
from debiaskd.training.distributed import main_first
from debiaskd.training.loop import Start, TrainResult, fit
from debiaskd.training.models import META_FILE, VISION_WEIGHTS, LoadedModel, load_model
from debiaskd.training.predict import predict_logits, resolve_device
from debiaskd.training.recipe import LogitSettings, Recipe
from debiaskd.training.rows import Sources

_KEY_MEMO: dict[tuple[str, int, int], str] = {}


def data_hash(data: pd.DataFrame | ImageSplit, max_length: int | None = None) -> str:
    """Content hash of what a model sees: the text pairs (+ max length) or the image bytes."""
    return task_of(data).input_digest(data, max_length)


def model_key(model_dir: str | Path) -> str:
    """Hash of a saved model's weights (so a retrained model in the same folder misses the cache)."""
    model_dir = Path(model_dir)
    files = sorted(model_dir.glob("*.safetensors")) or [model_dir / VISION_WEIGHTS]
    h = hashlib.sha256()
    for f in files:
        if not f.is_file():
            raise DebiaskdError("model folder has no weights", file=str(model_dir), rule="model path")
        stat = f.stat()
        memo = (str(f.resolve()), stat.st_size, stat.st_mtime_ns)
        if memo not in _KEY_MEMO:
            fh = hashlib.sha256()
            with open(f, "rb") as stream:
                for chunk in iter(lambda s=stream: s.read(1 << 22), b""):
                    fh.update(chunk)
            _KEY_MEMO[memo] = fh.hexdigest()
        h.update(_KEY_MEMO[memo].encode())
    return h.hexdigest()[:20]


def teacher_logits(model_or_loaded: LoadedModel | nn.Module, data: pd.DataFrame | ImageSplit,
                   settings: LogitSettings, batch_size: int | None = None, tokenizer: Any = None) -> np.ndarray:
    """Logits ``(N, C)`` of a model on ``data`` (inference mode, dynamic padding, input order)."""
    loaded = model_or_loaded if isinstance(model_or_loaded, LoadedModel) else None
    model = loaded.model if loaded else model_or_loaded
    tokenizer = tokenizer or (loaded.tokenizer if loaded else None)
    task = task_of(data)
    inputs = task.make_inputs(data, task.label_names(data), tokenizer, settings.max_length)
    device = resolve_device(settings.device)
    model.to(device)
    return predict_logits(model, inputs, batch_size or settings.batch_size, device, settings.bf16)


def cached_teacher_logits(model_dir: str | Path, frame: pd.DataFrame | ImageSplit, cache_dir: str | Path,
                          settings: LogitSettings, model: LoadedModel | None = None,
                          shared: Sequence[str | Path] = ()) -> np.ndarray:
    """:func:`teacher_logits` through a cache keyed by the model's weights and the data's content.

    ``shared`` folders are looked up first and never written (a teacher's own ``teacher_cache``,
    filled once by :func:`precompute_teacher_logits` and read by every student task)."""
    cache_dir = Path(cache_dir)
    key = f"{model_key(model_dir)}-{data_hash(frame, settings.max_length)}"
    for folder in [*shared, cache_dir]:
        path = Path(folder) / f"logits-{key}.npy"
        if path.is_file():
            return np.load(path, allow_pickle=False)
    loaded = model or load_model(model_dir)
    logits = teacher_logits(loaded, frame, settings)
    path = cache_dir / f"logits-{key}.npy"
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}.npy")
    np.save(tmp, logits, allow_pickle=False)
    os.replace(tmp, path)
    info = {"model_dir": str(model_dir), "rows": len(frame), "shape": list(logits.shape), "key": key}
    path.with_suffix(".json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    return logits


def teacher_cache_dir(model_dir: str | Path) -> Path:
    """Where a trained teacher keeps the logits its students read (beside its model folder)."""
    return Path(model_dir).parent / "teacher_cache"


def precompute_teacher_logits(model_dir: str | Path, splits: Sequence[pd.DataFrame | ImageSplit],
                              settings: LogitSettings) -> Path:
    """Compute a teacher's logits on each training split once, into :func:`teacher_cache_dir`."""
    loaded = load_model(model_dir)
    cache = teacher_cache_dir(model_dir)
    for split in splits:
        cached_teacher_logits(model_dir, split, cache, settings, model=loaded)
    return cache


def _depth(model: nn.Module) -> int | None:
    config = getattr(model, "config", None)
    return getattr(config, "num_hidden_layers", None)


def distill_student(
    recipe: Recipe, train: pd.DataFrame | ImageSplit, validation: pd.DataFrame | ImageSplit | None, seed: int,
    out_dir: str | Path, teacher_dir: str | Path | None, *, bias_probs: np.ndarray | None = None,
    progress: bool = True, cache_dir: str | Path | None = None, reference_logits: np.ndarray | None = None,
    resume: bool = True,
) -> TrainResult:
    """Train the student of ``recipe`` (all rounds); the last round's model lands in ``out_dir``.

    * no teacher (``student_erm``, ``student_debiased``): plain :func:`fit`;
    * round ``r`` learns from round ``r − 1``'s model (round 1 from ``teacher_dir``); with
      ``nli_model.assistant_layers`` set, the rounds before the last train teacher-assistants of
      that depth. Intermediate rounds are kept beside the model, in ``<out_dir>.rounds/round<r>``
      (:func:`rounds_dir`), so the model folder holds only the final student;
    * ``teacher_init``: each round's student copies the layers of its round's teacher when
      that one is deeper (teacher or assistant; any vision teacher), else of the original teacher
      (``distill.init_layers`` or evenly spaced, embeddings included);
    * KD reads cached teacher logits (``cache_dir``, default ``<out_dir parent>/teacher_cache``) unless
      ``distill.cache_teacher`` is off or an objective reads the teacher's layers (online passes);
      under torchrun rank 0 computes them on a cache miss and every rank reads the same file.
    """
    sources = Sources(bias_probs=bias_probs, reference_logits=reference_logits)
    if not recipe.uses_kd:
        return fit(recipe, train, validation, seed, out_dir, sources=sources, progress=progress, resume=resume)
    if teacher_dir is None:
        raise DebiaskdError(f"variant '{recipe.variant}' needs the model of '{recipe.teacher}'", rule="distillation")
    out, rounds = Path(out_dir), recipe.rounds
    cache = Path(cache_dir) if cache_dir is not None else out.parent / "teacher_cache"
    online, attn_impl = recipe.online, recipe.attn_implementation
    original = load_model(teacher_dir, attn_implementation=attn_impl)

    current_dir, current = Path(teacher_dir), original
    result: TrainResult | None = None
    for r in range(1, rounds.count + 1):
        last = r == rounds.count
        round_dir = out if last else rounds_dir(out) / f"round{r}"
        layers = rounds.assistant_layers if (rounds.assistant_layers and not last) else None
        with main_first():  # distributed: rank 0 fills the cache on a miss, the other ranks then read it
            logits = None if online else cached_teacher_logits(current_dir, train, cache, recipe.logits,
                                                               model=current, shared=[teacher_cache_dir(teacher_dir)])
        start = Start(layers=layers)
        if rounds.teacher_init:
            depth = layers or rounds.student_layers
            current_depth = _depth(current.model)  # None for a vision model: its round's teacher always
            start.init_from = current if current_depth is None or current_depth > depth else original
            if start.init_from is original and rounds.init_layers and len(rounds.init_layers) == depth:
                start.layer_map = list(rounds.init_layers)
        result = fit(
            recipe, train, validation, seed, round_dir, progress=progress, resume=resume, start=start,
            sources=Sources(bias_probs=bias_probs, reference_logits=reference_logits, teacher_logits=logits,
                            teacher=current),
            extra_meta={"round": r, "round_teacher": str(current_dir), "assistant": bool(layers),
                        "teacher_dir": str(teacher_dir), "kd_online": online},
        )
        if not last:
            current_dir = round_dir
            current = load_model(round_dir, attn_implementation=attn_impl)
    assert result is not None
    return result


def rounds_dir(out_dir: str | Path) -> Path:
    """Where :func:`distill_student` keeps the intermediate rounds of ``out_dir``'s student."""
    out = Path(out_dir)
    return out.parent / f"{out.name}.rounds"


def read_train_meta(model_dir: str | Path) -> dict[str, Any]:
    """The ``train`` block that :func:`~debiaskd.training.loop.fit` wrote into ``debiaskd.json``."""
    meta_path = Path(model_dir) / META_FILE
    return json.loads(meta_path.read_text(encoding="utf-8")).get("train", {}) if meta_path.is_file() else {}
