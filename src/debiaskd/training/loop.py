"""One training loop for every variant: teachers, students, KD (cached or online), debiasing.

:func:`train_model` trains a single model (a teacher, or one round of a student) and saves it
with :func:`debiaskd.training.models.save_model`. The loop: AdamW with linear warm-up/decay, gradient
accumulation, dynamic padding with length-grouped batches, early stopping on validation
accuracy (the best epoch's weights are kept), bf16 autocast on CUDA only, and checkpoints every
``checkpoint_every`` optimizer steps holding everything that decides the rest of the run (model,
optimizer, scheduler, step, epoch, position in the epoch's batch order, RNG states, best weights,
GroupDRO weights), so a run killed at any point and restarted ends with the same weights as an
uninterrupted run on CPU.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from debiaskd.core.config import StudyConfig, TrainConfig
from debiaskd.core.errors import DebiaskdError
from debiaskd.core.resources import peak_rss_mb
from debiaskd.data.schema import NLI_LABELS, ImageSplit
from debiaskd.training import losses
from debiaskd.training.batching import (
    collate_images,
    collate_nli,
    encode_nli,
    image_batches,
    images_to_tensor,
    length_grouped_batches,
)
from debiaskd.training.models import (
    LoadedModel,
    build_nli_student,
    build_nli_teacher,
    build_vision_model,
    init_from_teacher,
    init_vision_from_teacher,
    save_model,
    vision_arch,
)

CHECKPOINT_DIR = "checkpoint"
CHECKPOINT_FILE = "state.pt"
BAR_UPDATE_EVERY = 10  # micro-batches between progress-bar refreshes (each costs one .item())


@dataclass
class TrainResult:
    """Where the model went and how training went (one ``history`` entry per epoch)."""

    model_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int = 0
    seconds: float = 0.0
    examples_per_second: float = 0.0


# ------------------------------------------------------------------ inputs
class Inputs:
    """A split ready for batching: encoded once, labels as indices (−1 where unknown)."""

    def __init__(self, task: str, data: pd.DataFrame | ImageSplit, label_names: list[str],
                 tokenizer: Any = None, max_length: int = 64) -> None:
        self.task = task
        frame = data.frame if isinstance(data, ImageSplit) else data
        self.frame = frame
        self.n = len(frame)
        if task == "vision":
            if not isinstance(data, ImageSplit):
                raise DebiaskdError("vision training needs ImageSplit inputs", rule="task")
            self.images = images_to_tensor(data)
            self.labels = torch.tensor(frame["label"].astype(int).to_numpy(copy=True), dtype=torch.long)
            self.lengths = None
            self.pad_id = 0
        else:
            if tokenizer is None:
                raise DebiaskdError("NLI inputs need a tokenizer", rule="task")
            self.encoded = encode_nli(tokenizer, frame, max_length)
            self.lengths = self.encoded.lengths
            self.pad_id = int(tokenizer.pad_token_id or 0)
            lookup = {name: i for i, name in enumerate(label_names)}
            labels = [lookup.get(str(v), -1) for v in frame["label"].tolist()] if "label" in frame else [-1] * self.n
            self.labels = torch.as_tensor(labels, dtype=torch.long)

    def batches(self, batch_size: int, seed: int, shuffle: bool = True) -> list[list[int]]:
        if self.task == "vision":
            return image_batches(self.n, batch_size, seed, shuffle)
        return length_grouped_batches(self.lengths, batch_size, seed, shuffle)

    def collate(self, idx: list[int]) -> dict[str, torch.Tensor]:
        if self.task == "vision":
            return collate_images(self.images, idx)
        return collate_nli(self.encoded, idx, self.pad_id)

    def digest(self) -> str:
        h = hashlib.sha256(self.labels.numpy().tobytes())
        h.update(self.images.numpy().tobytes() if self.task == "vision" else self.lengths.tobytes())
        return h.hexdigest()[:16]


def resolve_device(setting: str = "auto") -> torch.device:
    if setting == "cuda" and not torch.cuda.is_available():
        raise DebiaskdError("train.device is 'cuda' but no CUDA device is available", rule="device")
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def _autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def forward(model: nn.Module, batch: dict[str, torch.Tensor], hidden: bool = False, attn: bool = False):
    """``(logits, hidden_states, attentions)`` for an HF classifier or a vision model."""
    if "pixel_values" in batch:
        return model(batch["pixel_values"]), None, None
    if not hidden and not attn:
        return model(**batch).logits, None, None
    out = model(**batch, output_hidden_states=hidden, output_attentions=attn)
    return out.logits, out.hidden_states, out.attentions


def predict_logits(model: nn.Module, inputs: Inputs, batch_size: int, device: torch.device | None = None,
                   bf16: bool = True) -> np.ndarray:
    """Logits for every row of ``inputs`` in order (inference mode, length-sorted batches)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: np.ndarray | None = None
    with torch.inference_mode(), _autocast(device, bf16):
        for idx in inputs.batches(batch_size, 0, shuffle=False):
            logits = forward(model, _to(inputs.collate(idx), device))[0].float().cpu().numpy()
            if out is None:
                out = np.zeros((inputs.n, logits.shape[1]), dtype=np.float32)
            out[idx] = logits
    model.train(was_training)
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def accuracy(model: nn.Module, inputs: Inputs, batch_size: int, device: torch.device, bf16: bool = True) -> float:
    if inputs.n == 0:
        return float("nan")
    logits = predict_logits(model, inputs, batch_size, device, bf16)
    labels = inputs.labels.numpy()
    known = labels >= 0
    return float((logits.argmax(1)[known] == labels[known]).mean()) if known.any() else float("nan")


# ------------------------------------------------------------------ models
def _eager(model: nn.Module) -> None:
    if hasattr(model, "set_attn_implementation"):
        model.set_attn_implementation("eager")


def _unwrap(model: Any) -> nn.Module | None:
    return model.model if isinstance(model, LoadedModel) else model


def build_for(spec, cfg: StudyConfig, seed: int, *, init_from: LoadedModel | None = None,
              teacher_model: nn.Module | None = None, layers: int | None = None,
              layer_map: list[int] | None = None, num_classes: int = 10, tokenizer: Any = None):
    """The model a spec trains, its tokenizer (NLI) and metadata about how it was built."""
    meta: dict[str, Any] = {}
    if cfg.task == "vision":
        arch, width = vision_arch(cfg.vision_model, spec.role)
        model = build_vision_model(arch, width, num_classes, seed)
        meta.update(arch=arch, width=width, num_classes=num_classes)
        if init_from is not None:
            meta["init_copied"] = init_vision_from_teacher(model, init_from.model)
        return model, None, meta
    tokenizer = getattr(init_from, "tokenizer", None) or tokenizer
    if spec.role == "teacher":
        model, tokenizer = build_nli_teacher(cfg.nli_model, seed)
    else:
        base = init_from.model if init_from is not None else teacher_model
        if base is None or tokenizer is None:
            ref, ref_tok = build_nli_teacher(cfg.nli_model, seed)
            base = base or ref
            tokenizer = tokenizer or ref_tok
        model = build_nli_student(base.config, cfg.nli_model, seed, layers)
        if init_from is not None:
            meta["layer_map"] = init_from_teacher(model, init_from.model, layer_map)
    meta["layers"] = int(model.config.num_hidden_layers)
    meta["hidden_size"] = int(model.config.hidden_size)
    return model, tokenizer, meta


# ------------------------------------------------------------------ schedule
def _optimizer(params: list[tuple[str, nn.Parameter]], tcfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; biases and norm weights (1-D tensors) without weight decay."""
    decay, no_decay = [], []
    for _, p in params:
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": tcfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:  # the fused kernel is several times faster on CPU and CUDA (and deterministic on CPU)
        return torch.optim.AdamW(groups, lr=tcfg.lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=tcfg.lr)


def _linear_schedule(total: int, warmup: int):
    def factor(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))
    return factor


# ------------------------------------------------------------------ checkpoints
def _rng_state() -> dict[str, Any]:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    py = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": [py[0], list(py[1]), py[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _atomic_save(obj: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _cpu_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`train_model` (tensors only: ``weights_only=True``)."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


# ------------------------------------------------------------------ training
@dataclass
class _Objective:
    """Everything a batch's loss needs beyond the model's outputs."""

    method: str
    kd: bool
    alpha: float
    temperature: float
    teacher_logits: torch.Tensor | None = None
    teacher_model: nn.Module | None = None
    conf_probs: torch.Tensor | None = None
    bias_probs: torch.Tensor | None = None
    groups: torch.Tensor | None = None
    group_dro: losses.GroupDROState | None = None
    sample_weights: torch.Tensor | None = None
    hidden_weight: float = 0.0
    attention_weight: float = 0.0
    layer_map: list[int] | None = None
    proj: nn.Module | None = None

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor], idx: torch.Tensor,
             labels: torch.Tensor) -> torch.Tensor:
        want_h, want_a = self.hidden_weight > 0, self.attention_weight > 0
        logits, s_hidden, s_attn = forward(model, batch, want_h, want_a)
        extras: dict[str, Any] = {}
        if self.bias_probs is not None:
            extras["bias_probs"] = self.bias_probs[idx]
        if self.conf_probs is not None:
            extras["teacher_probs"] = self.conf_probs[idx]
        if self.groups is not None:
            extras["groups"], extras["group_dro"] = self.groups[idx], self.group_dro
        if self.method == "reweight" and self.bias_probs is None:
            task = losses.erm_loss(logits, labels, self.sample_weights[idx])
        else:
            task = losses.debias_loss(self.method, logits, labels, extras)
        if not self.kd:
            return task
        t_hidden = t_attn = None
        if self.teacher_model is not None and (self.teacher_logits is None or want_h or want_a):
            with torch.no_grad():
                t_logits, t_hidden, t_attn = forward(self.teacher_model, batch, want_h, want_a)
        if self.teacher_logits is not None:
            t_logits = self.teacher_logits[idx]
        loss = losses.kd_loss(logits, t_logits.float(), labels, self.alpha, self.temperature, task_loss=task)
        mask = batch.get("attention_mask")
        if want_h:
            loss = loss + self.hidden_weight * losses.hidden_loss(s_hidden, t_hidden, self.layer_map, self.proj, mask)
        if want_a:
            loss = loss + self.attention_weight * losses.attention_loss(s_attn, t_attn, self.layer_map, mask)
        return loss


def soften(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``p^(1/T)`` renormalised per row (T = 1 returns ``probs`` unchanged)."""
    if temperature == 1.0:
        return probs
    soft = np.power(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None), 1.0 / temperature)
    return (soft / soft.sum(axis=1, keepdims=True)).astype(np.float32)


def _bias_array(bias_probs: np.ndarray | None, frame: pd.DataFrame, n: int) -> np.ndarray | None:
    if bias_probs is None and "bias_probs" in frame.columns:
        bias_probs = np.asarray([list(v) for v in frame["bias_probs"].tolist()], dtype=np.float32)
    if bias_probs is not None and len(bias_probs) != n:
        raise DebiaskdError(f"{len(bias_probs)} bias predictions for {n} training rows", rule="bias model")
    return bias_probs


def train_model(
    spec, cfg: StudyConfig, train: pd.DataFrame | ImageSplit, validation: pd.DataFrame | ImageSplit | None,
    seed: int, out_dir: str | Path, *, teacher_logits: np.ndarray | None = None, teacher_model: Any = None,
    init_from: LoadedModel | None = None, bias_probs: np.ndarray | None = None, progress: bool = True,
    resume: bool = True, conf_reg_logits: np.ndarray | None = None, student_layers: int | None = None,
    layer_map: list[int] | None = None, extra_meta: dict[str, Any] | None = None,
) -> TrainResult:
    """Train the model of ``spec`` on ``train`` and save it into ``out_dir``.

    KD (``spec.teacher`` set) uses ``teacher_logits`` (rows aligned with ``train``) or online
    forward passes of ``teacher_model``; hidden/attention transfer needs ``teacher_model``.
    Debiasing follows ``spec.method`` with ``bias_probs`` (or ``train``'s ``bias_probs`` column);
    ``conf_reg`` also needs ``conf_reg_logits`` (an ERM model's logits on ``train``; a KD teacher's
    never stand in for them). ``init_from`` initialises a student from teacher weights (``layer_map``
    or evenly spaced); ``student_layers`` overrides the student depth (teacher-assistants).
    """
    started = time.perf_counter()
    tcfg = cfg.train_config(spec.role)
    if tcfg.num_threads:
        torch.set_num_threads(tcfg.num_threads)
    device = resolve_device(tcfg.device)
    out = Path(out_dir)
    teacher_net = _unwrap(teacher_model)

    frame = train.frame if isinstance(train, ImageSplit) else train
    if cfg.task == "vision":
        if not isinstance(train, ImageSplit):
            raise DebiaskdError("vision training needs an ImageSplit", rule="task")
        label_names = [str(c) for c in train.class_names]
    else:
        label_names = list(NLI_LABELS)

    # ---- model
    model, tokenizer, build_meta = build_for(
        spec, cfg, seed, init_from=init_from, teacher_model=teacher_net, layers=student_layers,
        layer_map=layer_map, num_classes=len(label_names), tokenizer=getattr(teacher_model, "tokenizer", None),
    )
    max_length = cfg.nli_model.max_length
    tr = Inputs(cfg.task, train, label_names, tokenizer, max_length)
    va = Inputs(cfg.task, validation, label_names, tokenizer, max_length) if validation is not None else None
    if tr.n == 0:
        raise DebiaskdError("the training split is empty", rule="training data")
    if bool((tr.labels < 0).any()):
        bad = sorted(set(frame["label"].astype(str)) - set(label_names))
        raise DebiaskdError(f"training labels {bad} are not among {label_names}", rule="training data")

    # ---- objective
    kd = spec.uses_kd
    if kd and teacher_logits is None and teacher_net is None:
        raise DebiaskdError(f"variant '{spec.name}' distils from '{spec.teacher}': pass teacher logits or model",
                            rule="distillation")
    want_transfer = kd and cfg.task == "nli" and (cfg.distill.hidden_weight > 0 or cfg.distill.attention_weight > 0)
    if want_transfer and teacher_net is None:
        raise DebiaskdError("hidden/attention transfer needs the teacher model (online KD)", rule="distillation")
    obj = _Objective(spec.method, kd, cfg.distill.alpha, cfg.distill.temperature)
    if kd and teacher_logits is not None:
        if len(teacher_logits) != tr.n:
            raise DebiaskdError(f"{len(teacher_logits)} teacher logits for {tr.n} training rows", rule="distillation")
        obj.teacher_logits = torch.as_tensor(np.asarray(teacher_logits), dtype=torch.float32, device=device)
    if teacher_net is not None and kd:
        if want_transfer and cfg.distill.attention_weight > 0:
            _eager(teacher_net)
            _eager(model)
        teacher_net.to(device).eval()
        obj.teacher_model = teacher_net
    bias = _bias_array(bias_probs, frame, tr.n)
    if spec.method in ("product_of_experts", "conf_reg") and bias is None:
        raise DebiaskdError(f"method '{spec.method}' needs bias-model predictions for the training rows",
                            rule="bias model")
    if bias is not None and spec.method in ("product_of_experts", "reweight", "conf_reg"):
        bias = soften(bias, cfg.debias.bias_temperature)
        obj.bias_probs = torch.as_tensor(bias, dtype=torch.float32, device=device)
    if spec.method == "reweight" and bias is None:  # vision: inverse group frequency
        codes, _ = _group_codes(frame)
        counts = np.bincount(codes)
        obj.sample_weights = torch.as_tensor(1.0 / counts[codes], dtype=torch.float32, device=device)
    if spec.method == "conf_reg":
        # the ERM reference's logits, never a (debiased) KD teacher's: those are the wrong reference
        conf = conf_reg_logits
        if conf is None:
            raise DebiaskdError("conf_reg needs the logits of an ERM-trained model (the study's teacher_erm) on "
                                "the training rows", rule="conf_reg")
        if len(conf) != tr.n:
            raise DebiaskdError(f"{len(conf)} ERM reference logits for {tr.n} training rows", rule="conf_reg")
        obj.conf_probs = torch.softmax(torch.as_tensor(np.asarray(conf), dtype=torch.float32, device=device), -1)
    if spec.method == "group_dro":
        codes, names = _group_codes(frame)
        obj.groups = torch.as_tensor(codes, dtype=torch.long, device=device)
        obj.group_dro = losses.GroupDROState(len(names), cfg.debias.group_dro_step)
    if want_transfer:
        obj.hidden_weight, obj.attention_weight = cfg.distill.hidden_weight, cfg.distill.attention_weight
        obj.layer_map = layer_map or build_meta.get("layer_map") or _even_map(teacher_net, model)
        s_w, t_w = model.config.hidden_size, teacher_net.config.hidden_size
        if s_w != t_w and obj.hidden_weight > 0:
            torch.manual_seed(seed)
            obj.proj = nn.Linear(s_w, t_w).to(device)

    # ---- optimisation
    model.to(device)
    torch.manual_seed(seed)
    params = list(model.named_parameters()) + (list(obj.proj.named_parameters(prefix="proj")) if obj.proj else [])
    optimizer = _optimizer(params, tcfg)
    n_batches = math.ceil(tr.n / tcfg.batch_size)
    steps_per_epoch = math.ceil(n_batches / tcfg.grad_accum)
    total_steps = tcfg.max_steps or steps_per_epoch * tcfg.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _linear_schedule(total_steps, int(tcfg.warmup_ratio * total_steps))
    )
    labels_dev = tr.labels.to(device)
    bf16 = tcfg.bf16

    fingerprint = hashlib.sha256(json.dumps(
        [cfg.config_hash(), spec.to_dict(), seed, tr.digest(), va.digest() if va else "", student_layers,
         layer_map, teacher_logits is not None], sort_keys=True, default=str,
    ).encode()).hexdigest()[:16]
    ckpt_path = out / CHECKPOINT_DIR / CHECKPOINT_FILE
    st: dict[str, Any] = {"step": 0, "epoch": 0, "batch_pos": 0, "order": None, "history": [],
                          "best_acc": -1.0, "best_epoch": 0, "bad_epochs": 0, "best_state": None,
                          "epoch_loss": 0.0, "epoch_examples": 0, "epoch_seconds": 0.0}
    if resume and ckpt_path.is_file():
        ck = load_checkpoint(ckpt_path)
        if ck.get("fingerprint") == fingerprint:
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            scheduler.load_state_dict(ck["scheduler"])
            if obj.proj is not None and ck.get("proj") is not None:
                obj.proj.load_state_dict(ck["proj"])
            if obj.group_dro is not None and ck.get("group_weights") is not None:
                obj.group_dro.weights = ck["group_weights"].to(device)
            _set_rng_state(ck["rng"])
            for key in st:
                st[key] = ck.get(key, st[key])
            if st["order"] is not None:
                flat, sizes = st["order"]
                st["order"] = [c.tolist() for c in torch.split(flat, sizes.tolist())]
            if progress:
                print(f"resuming {spec.name} from step {st['step']} (epoch {st['epoch'] + 1})", file=sys.stderr)

    def save_checkpoint(order: list[list[int]]) -> None:
        flat = torch.as_tensor([i for b in order for i in b], dtype=torch.long)
        sizes = torch.as_tensor([len(b) for b in order], dtype=torch.long)
        payload = {k: v for k, v in st.items() if k != "order"}
        payload.update(
            fingerprint=fingerprint, model=_cpu_state(model), optimizer=optimizer.state_dict(),
            scheduler=scheduler.state_dict(), rng=_rng_state(), order=(flat, sizes),
            proj=_cpu_state(obj.proj) if obj.proj is not None else None,
            group_weights=obj.group_dro.weights.cpu() if obj.group_dro is not None else None,
        )
        _atomic_save(payload, ckpt_path)

    show = progress and sys.stderr.isatty()
    model.train()
    stop = False
    while st["epoch"] < tcfg.epochs and not stop:
        epoch = st["epoch"]
        order = st["order"] or tr.batches(tcfg.batch_size, seed * 1000 + epoch, shuffle=True)
        st["order"] = order
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        running = torch.zeros((), device=device)
        bar = _bar(show, len(order), st["batch_pos"], f"{spec.name} epoch {epoch + 1}/{tcfg.epochs}")
        pos = st["batch_pos"]
        while pos < len(order):
            group_end = min(len(order), (pos // tcfg.grad_accum + 1) * tcfg.grad_accum)
            n_micro = group_end - pos if group_end == len(order) else tcfg.grad_accum
            for mpos in range(pos, group_end):
                idx = order[mpos]
                idx_t = torch.as_tensor(idx, dtype=torch.long, device=device)
                batch = _to(tr.collate(idx), device)
                with _autocast(device, bf16):
                    loss = obj.loss(model, batch, idx_t, labels_dev[idx_t])
                (loss / n_micro).backward()
                running += loss.detach() * len(idx)
                st["epoch_examples"] += len(idx)
                if bar is not None:
                    bar.update(1)
                    if (mpos + 1) % BAR_UPDATE_EVERY == 0:
                        done = st["epoch_examples"]
                        elapsed = st["epoch_seconds"] + time.perf_counter() - t0
                        bar.set_postfix(loss=f"{(st['epoch_loss'] + running.item()) / done:.4f}",
                                        ex_s=f"{done / max(elapsed, 1e-9):.0f}")
            pos = group_end
            torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            st["step"] += 1
            st["batch_pos"] = pos
            if tcfg.max_steps and st["step"] >= tcfg.max_steps:
                stop = True
            if tcfg.checkpoint_every and st["step"] % tcfg.checkpoint_every == 0:
                st["epoch_loss"] += float(running.item())
                running.zero_()
                st["epoch_seconds"] += time.perf_counter() - t0
                t0 = time.perf_counter()
                save_checkpoint(order)
            if stop:
                break
        if bar is not None:
            bar.close()
        st["epoch_loss"] += float(running.item())
        train_seconds = st["epoch_seconds"] + time.perf_counter() - t0
        record: dict[str, Any] = {
            "epoch": epoch + 1, "step": st["step"],
            "loss": st["epoch_loss"] / max(st["epoch_examples"], 1),
            "train_seconds": train_seconds,
            "examples_per_second": st["epoch_examples"] / max(train_seconds, 1e-9),
            "validation_accuracy": None,
        }
        last = stop or epoch + 1 == tcfg.epochs
        if va is not None and va.n and ((epoch + 1) % tcfg.eval_every_epochs == 0 or last):
            acc = accuracy(model, va, cfg.eval.batch_size, device, bf16)
            record["validation_accuracy"] = acc
            if acc > st["best_acc"]:
                st["best_acc"], st["best_epoch"], st["bad_epochs"] = acc, epoch + 1, 0
                st["best_state"] = _cpu_state(model)
            else:
                st["bad_epochs"] += 1
                if tcfg.early_stopping_patience and st["bad_epochs"] >= tcfg.early_stopping_patience:
                    stop = True
        elif va is None or not va.n:
            st["best_epoch"], st["best_state"] = epoch + 1, None
        record["peak_rss_mb"] = peak_rss_mb()
        if device.type == "cuda":
            record["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        st["history"].append(record)
        if progress:
            val = record["validation_accuracy"]
            print(f"{spec.name} epoch {epoch + 1}: loss {record['loss']:.4f}, "
                  f"val acc {'-' if val is None else f'{val:.3f}'}, {record['examples_per_second']:.0f} ex/s",
                  file=sys.stderr)
        st.update(epoch=epoch + 1, batch_pos=0, order=None, epoch_loss=0.0, epoch_examples=0, epoch_seconds=0.0)

    if st["best_state"] is not None:
        model.load_state_dict(st["best_state"])
    history = st["history"]
    examples = sum(h["examples_per_second"] * h["train_seconds"] for h in history)
    train_secs = sum(h["train_seconds"] for h in history)
    seconds = time.perf_counter() - started
    meta = {
        "task": cfg.task, "role": spec.role, "variant": spec.name, "method": spec.method, "seed": seed,
        "teacher": spec.teacher, "rounds": spec.rounds, "augment": spec.augment, "teacher_init": spec.teacher_init,
        "config_hash": cfg.config_hash(), "label_names": label_names, "num_classes": len(label_names),
        "max_length": max_length if cfg.task == "nli" else None,
        "kd": {"alpha": cfg.distill.alpha, "temperature": cfg.distill.temperature,
               "cached": teacher_logits is not None} if kd else None,
        "train": {"best_epoch": st["best_epoch"], "best_validation_accuracy": st["best_acc"] if va else None,
                  "steps": st["step"], "train_examples": tr.n, "seconds": seconds,
                  "examples_per_second": examples / max(train_secs, 1e-9), "history": history},
        **build_meta, **(extra_meta or {}),
    }
    model.eval()
    save_model(model.to("cpu"), out, meta, tokenizer)
    shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    return TrainResult(out, history, st["best_epoch"], seconds, examples / max(train_secs, 1e-9))


def _group_codes(frame: pd.DataFrame) -> tuple[np.ndarray, list[str]]:
    if "group" not in frame.columns:
        raise DebiaskdError("group-based debiasing needs a 'group' column", rule="training data")
    names = sorted(set(frame["group"].astype(str)))
    lookup = {g: i for i, g in enumerate(names)}
    return np.array(frame["group"].astype(str).map(lookup).to_numpy(), dtype=np.int64), names


def _even_map(teacher: nn.Module, student: nn.Module) -> list[int]:
    from debiaskd.training.models import evenly_spaced_layers

    return evenly_spaced_layers(teacher.config.num_hidden_layers, student.config.num_hidden_layers)


def _bar(show: bool, total: int, initial: int, desc: str):
    if not show:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


def iter_batches(inputs: Inputs, batch_size: int) -> Iterator[tuple[list[int], dict[str, torch.Tensor]]]:
    """Inference batches (length-sorted) with their row indices, for evaluation code."""
    for idx in inputs.batches(batch_size, 0, shuffle=False):
        yield idx, inputs.collate(idx)
