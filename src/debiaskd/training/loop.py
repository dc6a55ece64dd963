"""One training loop for every variant: :func:`fit` trains one model (a teacher, or one round of a student).

What to train comes from a :class:`~debiaskd.training.recipe.Recipe` (settings and objectives) and
:class:`~debiaskd.training.rows.Sources` (what the objectives may read); the loop prepares, by row,
exactly what the objectives declare they need. The loop: AdamW with linear warm-up/decay, gradient
accumulation, dynamic padding with length-grouped batches, early stopping on validation accuracy (the
best epoch's weights are kept), bf16 autocast on CUDA only, and checkpoints every ``checkpoint_every``
optimizer steps holding everything that decides the rest of the run (model, optimizer, scheduler,
:class:`TrainState`, RNG states, the objectives' state such as GroupDRO weights), so a run killed at
any point and restarted ends with the same weights as an uninterrupted run on CPU.

Under ``torchrun`` (:mod:`debiaskd.training.launch`) the same loop trains data-parallel: the model is
wrapped in :class:`~torch.nn.parallel.DistributedDataParallel`, each rank runs whole batches of the
step's group (the split and why the global batch is one process's: :mod:`debiaskd.training.distributed`),
validation runs on rank 0 and its accuracy is broadcast (so early stopping decides the same on every
rank), and only rank 0 logs, checkpoints and saves. Checkpoints hold the unwrapped model, so a run
resumes under any number of processes.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from debiaskd.core.errors import DebiaskdError
from debiaskd.core.resources import peak_rss_mb
from debiaskd.data.schema import ImageSplit
from debiaskd.training import distributed
from debiaskd.training.distributed import World
from debiaskd.training.inputs import Inputs, model_logits
from debiaskd.training.models import LoadedModel, evenly_spaced_layers, save_model
from debiaskd.training.objectives.base import DebiasObjective, DistillObjective, Objective, Rows, Setup, Step
from debiaskd.training.predict import accuracy, autocast, resolve_device, to_device
from debiaskd.training.recipe import Recipe, TrainSettings
from debiaskd.training.rows import Sources, prepare_rows

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


@dataclass
class Start:
    """How the model starts: copied from ``init_from`` (``layer_map`` or evenly spaced), ``layers`` deep."""

    init_from: LoadedModel | None = None
    layers: int | None = None  # student depth override (teacher-assistants)
    layer_map: list[int] | None = None


@dataclass
class TrainState:
    """Where a run is (everything a checkpoint restores besides the model, optimizer and RNGs)."""

    step: int = 0
    epoch: int = 0
    batch_pos: int = 0
    order: list[list[int]] | None = None  # this epoch's batches
    history: list[dict[str, Any]] = field(default_factory=list)
    best_acc: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    epoch_loss: float = 0.0
    epoch_examples: int = 0
    epoch_seconds: float = 0.0

    def next_epoch(self) -> None:
        self.epoch, self.batch_pos, self.order = self.epoch + 1, 0, None
        self.epoch_loss, self.epoch_examples, self.epoch_seconds = 0.0, 0, 0.0


# ------------------------------------------------------------------ optimisation
def make_optimizer(params: list[tuple[str, nn.Parameter]], settings: TrainSettings) -> torch.optim.Optimizer:
    """AdamW; biases and norm weights (1-D tensors) without weight decay."""
    decay, no_decay = [], []
    for _, p in params:
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:  # the fused kernel is several times faster on CPU and CUDA (and deterministic on CPU)
        return torch.optim.AdamW(groups, lr=settings.lr, fused=True)
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, lr=settings.lr)


def linear_schedule(total: int, warmup: int):
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
    """Read a checkpoint written by :func:`fit` (tensors only: ``weights_only=True``)."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)


class Checkpointer:
    """Saves and restores a run under ``out/checkpoint/state.pt``, keyed by the run's fingerprint."""

    def __init__(self, out: Path, fingerprint: str) -> None:
        self.path, self.fingerprint = out / CHECKPOINT_DIR / CHECKPOINT_FILE, fingerprint

    def save(self, state: TrainState, run: _Run) -> None:
        order = state.order or []
        payload = {f.name: getattr(state, f.name) for f in fields(TrainState) if f.name != "order"}
        payload.update(
            fingerprint=self.fingerprint, model=_cpu_state(run.model), optimizer=run.optimizer.state_dict(),
            scheduler=run.scheduler.state_dict(), rng=_rng_state(),
            order=(torch.as_tensor([i for b in order for i in b], dtype=torch.long),
                   torch.as_tensor([len(b) for b in order], dtype=torch.long)),
        )
        for objective in run.objectives:
            payload.update(objective.state())
        _atomic_save(payload, self.path)

    def restore(self, state: TrainState, run: _Run) -> bool:
        """Continue from the checkpoint if there is one of this very run; True when resumed."""
        if not self.path.is_file():
            return False
        ck = load_checkpoint(self.path)
        if ck.get("fingerprint") != self.fingerprint:
            return False
        run.model.load_state_dict(ck["model"])
        run.optimizer.load_state_dict(ck["optimizer"])
        run.scheduler.load_state_dict(ck["scheduler"])
        for objective in run.objectives:
            objective.load_state(ck, run.device)
        _set_rng_state(ck["rng"])
        for f in fields(TrainState):
            setattr(state, f.name, ck.get(f.name, getattr(state, f.name)))
        if state.order is not None:
            flat, sizes = state.order
            state.order = [c.tolist() for c in torch.split(flat, sizes.tolist())]
        return True


# ------------------------------------------------------------------ progress and history
class ProgressBar:
    """A tqdm bar over an epoch's micro-batches (only on a terminal), with running loss and examples/s."""

    def __init__(self, show: bool, total: int, initial: int, desc: str) -> None:
        self.bar = None
        if show:
            from tqdm.auto import tqdm  # only when a terminal watches: tqdm is not needed otherwise

            self.bar = tqdm(total=total, initial=initial, desc=desc, unit="batch", leave=False, dynamic_ncols=True)

    def update(self, mpos: int, state: TrainState, running: torch.Tensor, elapsed: float) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        if (mpos + 1) % BAR_UPDATE_EVERY == 0:
            done = state.epoch_examples
            self.bar.set_postfix(loss=f"{(state.epoch_loss + running.item()) / done:.4f}",
                                 ex_s=f"{done / max(elapsed, 1e-9):.0f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def epoch_record(state: TrainState, epoch: int, train_seconds: float) -> dict[str, Any]:
    return {
        "epoch": epoch + 1, "step": state.step, "loss": state.epoch_loss / max(state.epoch_examples, 1),
        "train_seconds": train_seconds, "examples_per_second": state.epoch_examples / max(train_seconds, 1e-9),
        "validation_accuracy": None,
    }


def log_epoch(name: str, record: dict[str, Any]) -> None:
    val = record["validation_accuracy"]
    print(f"{name} epoch {record['epoch']}: loss {record['loss']:.4f}, "
          f"val acc {'-' if val is None else f'{val:.3f}'}, {record['examples_per_second']:.0f} ex/s", file=sys.stderr)


def early_stopping(state: TrainState, epoch: int, acc: float, model: nn.Module, patience: int | None,
                   keep_weights: bool = True) -> bool:
    """Keep the best epoch's weights (``keep_weights``: the rank that saves them); True when ``patience``
    epochs in a row did not improve."""
    if acc > state.best_acc:
        state.best_acc, state.best_epoch, state.bad_epochs = acc, epoch + 1, 0
        state.best_state = _cpu_state(model) if keep_weights else None
        return False
    state.bad_epochs += 1
    return bool(patience and state.bad_epochs >= patience)


# ------------------------------------------------------------------ one run
@dataclass
class _Run:
    """The pieces of one training run the epochs share."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    params: list[tuple[str, nn.Parameter]]
    debias: DebiasObjective
    distill: list[DistillObjective]
    rows: Rows
    train: Inputs
    labels: torch.Tensor
    settings: TrainSettings
    device: torch.device
    seed: int = 0
    world: World = field(default_factory=World)
    net: nn.Module | None = None  # what runs the forward pass: the DDP wrapper in a distributed run

    @property
    def extra_params(self) -> list[nn.Parameter]:
        """The objectives' own trainable parameters (outside the model, so outside DDP's all-reduce)."""
        return [p for o in self.objectives for _, p in o.parameters()]

    @property
    def objectives(self) -> list[Objective]:
        return [self.debias, *self.distill]

    def loss(self, idx: list[int]) -> torch.Tensor:
        """One micro-batch's loss: the debiasing objective's task loss, then each distillation term."""
        idx_t = torch.as_tensor(idx, dtype=torch.long, device=self.device)
        batch = to_device(self.train.collate(idx), self.device)
        with autocast(self.device, self.settings.bf16):
            step = Step(model_logits(self.net or self.model, batch), self.labels[idx_t], idx_t, batch, self.rows)
            loss = self.debias.task_loss(step)
            for objective in self.distill:
                loss = objective.add(loss, step)
        return loss


def _micro_steps(run: _Run, state: TrainState, pos: int, group_end: int, n_micro: int, running: torch.Tensor) -> int:
    """A distributed rank's share of one step group (:func:`~debiaskd.training.distributed.my_batches`):
    its whole batches, losses scaled by ``world_size / n_micro``, all-reduced once on its last
    micro-step; the number of examples it trained on."""
    world, order = run.world, state.order
    mine, scale = distributed.my_batches(pos, group_end, world), world.size
    if not mine:  # fewer batches than ranks in this group: join the all-reduce with a zero-weighted pass
        mine, scale = [pos], 0
    examples = 0
    for k, mpos in enumerate(mine):
        torch.manual_seed(distributed.batch_seed(run.seed, state.epoch, mpos))  # the batch's dropout, on any rank
        with nullcontext() if k == len(mine) - 1 else run.net.no_sync():
            loss = run.loss(order[mpos])
            (loss * (scale / n_micro)).backward()
        if scale:
            running += loss.detach() * len(order[mpos])
            examples += len(order[mpos])
    return examples


def _settle(run: _Run, state: TrainState, running: torch.Tensor, examples: int) -> None:
    """Move the running loss (and, distributed, the examples) into ``state``: summed over the ranks."""
    if run.world.distributed:
        loss, n = distributed.sum_over_ranks([float(running.item()), float(examples)], run.world)
        state.epoch_loss += loss
        state.epoch_examples += int(n)
    else:
        state.epoch_loss += float(running.item())
    running.zero_()


def _train_epoch(run: _Run, state: TrainState, checkpointer: Checkpointer, bar: ProgressBar) -> bool:
    """Optimizer steps over the rest of this epoch's batches; True when ``max_steps`` is reached."""
    s, order, world = run.settings, state.order, run.world
    t0 = time.perf_counter()
    running = torch.zeros((), device=run.device)
    examples = 0  # a distributed rank's examples since they were last summed over the ranks
    pos = state.batch_pos
    while pos < len(order):
        group_end = min(len(order), (pos // s.grad_accum + 1) * s.grad_accum)
        n_micro = group_end - pos if group_end == len(order) else s.grad_accum
        if world.distributed:
            examples += _micro_steps(run, state, pos, group_end, n_micro, running)
            distributed.mean_grads(run.extra_params, world)
        else:
            for mpos in range(pos, group_end):
                loss = run.loss(order[mpos])
                (loss / n_micro).backward()
                running += loss.detach() * len(order[mpos])
                state.epoch_examples += len(order[mpos])
                bar.update(mpos, state, running, state.epoch_seconds + time.perf_counter() - t0)
        pos = group_end
        torch.nn.utils.clip_grad_norm_([p for _, p in run.params], 1.0)
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        state.batch_pos = pos
        stop = bool(s.max_steps and state.step >= s.max_steps)
        if s.checkpoint_every and state.step % s.checkpoint_every == 0:
            _settle(run, state, running, examples)
            examples = 0
            state.epoch_seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            if world.main:
                checkpointer.save(state, run)
        if world.distributed:
            distributed.crash_point(world, state.step)
        if stop:
            break
    _settle(run, state, running, examples)
    state.epoch_seconds += time.perf_counter() - t0
    return bool(s.max_steps and state.step >= s.max_steps)


def fit(recipe: Recipe, train: pd.DataFrame | ImageSplit, validation: pd.DataFrame | ImageSplit | None, seed: int,
        out_dir: str | Path, *, sources: Sources | None = None, start: Start | None = None,
        extra_meta: dict[str, Any] | None = None, progress: bool = True, resume: bool = True) -> TrainResult:
    """Train the model of ``recipe`` on ``train`` and save it into ``out_dir``.

    ``sources`` holds what the objectives may read: bias-model predictions (else ``train``'s
    ``bias_probs`` column), the ERM reference's logits, the KD teacher's cached logits (rows aligned
    with ``train``) or the teacher itself (online passes; layer transfer needs it). ``start``
    initialises a student from teacher weights or overrides its depth (teacher-assistants).
    """
    started = time.perf_counter()
    sources, start, s = sources or Sources(), start or Start(), recipe.train
    if s.num_threads:
        torch.set_num_threads(s.num_threads)
    device, out, world = resolve_device(s.device), Path(out_dir), distributed.current()
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    label_names = recipe.model.task.label_names(train)
    model, tokenizer, build_meta, tr, va = _model_and_inputs(recipe, train, validation, seed, sources, start,
                                                            label_names)
    debias, distill = recipe.objectives()
    rows = prepare_rows([o.declared for o in (*distill, debias)], sources, tr.frame, tr.n, device,
                        bias_temperature=recipe.bias_temperature, variant=recipe.variant, teacher=recipe.teacher)
    if world.distributed and rows.teacher_logits is not None:  # every rank says so (the tests read it)
        print(f"rank {world.rank}/{world.size}: {recipe.variant} reads cached teacher logits "
              f"({rows.teacher_logits.shape[0]} rows)", file=sys.stderr, flush=True)
    layer_map = start.layer_map or build_meta.get("layer_map")
    setup = Setup(model, rows.teacher, device, seed, rows, lambda: layer_map or evenly_spaced_layers(
        rows.teacher.config.num_hidden_layers, model.config.num_hidden_layers))
    try:
        for objective in (debias, *distill):
            objective.setup(setup)
        run = _optimisation(model, debias, distill, rows, tr, seed, s, device)
        run.world = world
        state = _epochs(recipe, run, tr, va, seed, _fingerprint(recipe, seed, tr, va, start, sources), out,
                        progress, resume)
    finally:
        for objective in (debias, *distill):
            objective.close()
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    seconds = time.perf_counter() - started
    meta = _metadata(recipe, state, seed, label_names, tr, va, seconds, sources, tokenizer is not None)
    meta |= build_meta | (extra_meta or {})
    if world.distributed:
        meta["train"]["processes"] = world.size
    model.eval()
    if world.main:
        save_model(model.to("cpu"), out, meta, tokenizer)
        shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    distributed.barrier(world)  # the saved model is there for every rank (a next round loads it)
    return TrainResult(out, state.history, state.best_epoch, seconds, meta["train"]["examples_per_second"])


def _metadata(recipe: Recipe, state: TrainState, seed: int, label_names: list[str], tr: Inputs, va: Inputs | None,
              seconds: float, sources: Sources, tokenized: bool) -> dict[str, Any]:
    """What ``debiaskd.json`` says about the trained model (before the build metadata)."""
    history = state.history
    examples = sum(h["examples_per_second"] * h["train_seconds"] for h in history)
    train_secs = sum(h["train_seconds"] for h in history)
    return {
        "task": recipe.model.task.name, "role": recipe.role, "variant": recipe.variant, "method": recipe.method,
        "seed": seed, "teacher": recipe.teacher, "rounds": recipe.spec.get("rounds"),
        "augment": recipe.spec.get("augment"), "teacher_init": recipe.spec.get("teacher_init"),
        "config_hash": recipe.config_hash, "label_names": label_names, "num_classes": len(label_names),
        "max_length": recipe.model.max_length if tokenized else None,
        "kd": (recipe.kd_meta | {"cached": sources.teacher_logits is not None}) if recipe.uses_kd else None,
        "train": {"best_epoch": state.best_epoch, "best_validation_accuracy": state.best_acc if va else None,
                  "steps": state.step, "train_examples": tr.n, "seconds": seconds,
                  "examples_per_second": examples / max(train_secs, 1e-9), "history": history},
    }


def _model_and_inputs(recipe: Recipe, train, validation, seed: int, sources: Sources, start: Start,
                      label_names: list[str]):
    """The model to train (built or initialised), its tokenizer, build metadata, and the encoded splits."""
    m = recipe.model
    model, tokenizer, build_meta = m.task.build_model(
        m.section, m.role, seed, init_from=start.init_from, teacher_model=sources.teacher_net,
        layers=start.layers, layer_map=start.layer_map, num_classes=len(label_names),
        tokenizer=getattr(sources.teacher, "tokenizer", None),
    )
    tr = m.task.make_inputs(train, label_names, tokenizer, m.max_length)
    va = m.task.make_inputs(validation, label_names, tokenizer, m.max_length) if validation is not None else None
    if tr.n == 0:
        raise DebiaskdError("the training split is empty", rule="training data")
    if bool((tr.labels < 0).any()):
        bad = sorted(set(tr.frame["label"].astype(str)) - set(label_names))
        raise DebiaskdError(f"training labels {bad} are not among {label_names}", rule="training data")
    return model, tokenizer, build_meta, tr, va


def _optimisation(model: nn.Module, debias: DebiasObjective, distill: list[DistillObjective], rows: Rows,
                  tr: Inputs, seed: int, s: TrainSettings, device: torch.device) -> _Run:
    model.to(device)
    torch.manual_seed(seed)
    params = list(model.named_parameters()) + [p for o in (debias, *distill) for p in o.parameters()]
    optimizer = make_optimizer(params, s)
    steps_per_epoch = math.ceil(math.ceil(tr.n / s.batch_size) / s.grad_accum)
    total_steps = s.max_steps or steps_per_epoch * s.epochs
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(total_steps,
                                                                             int(s.warmup_ratio * total_steps)))
    return _Run(model, optimizer, scheduler, params, debias, distill, rows, tr, tr.labels.to(device), s, device,
                seed=seed)


def _fingerprint(recipe: Recipe, seed: int, tr: Inputs, va: Inputs | None, start: Start, sources: Sources) -> str:
    """What a checkpoint must match to be resumed by this run."""
    return hashlib.sha256(json.dumps(
        [recipe.config_hash, recipe.spec, seed, tr.digest(), va.digest() if va else "", start.layers,
         start.layer_map, sources.teacher_logits is not None], sort_keys=True, default=str,
    ).encode()).hexdigest()[:16]


def _epochs(recipe: Recipe, run: _Run, tr: Inputs, va: Inputs | None, seed: int, fingerprint: str, out: Path,
            progress: bool, resume: bool) -> TrainState:
    """Epochs until ``epochs``, ``max_steps`` or early stopping; the final state (with the history)."""
    s, state, name, world = run.settings, TrainState(), recipe.variant, run.world
    checkpointer = Checkpointer(out, fingerprint)
    progress = progress and world.main  # one voice: rank 0's
    if resume and checkpointer.restore(state, run) and progress:
        print(f"resuming {name} from step {state.step} (epoch {state.epoch + 1})", file=sys.stderr)
    if world.distributed:
        if progress and s.grad_accum % world.size:
            print(f"{name}: grad_accum {s.grad_accum} is not a multiple of {world.size} processes: a rank without a "
                  "batch in a step runs a zero-weighted one (same global batch, no speed-up); use a multiple",
                  file=sys.stderr)
        run.net = DistributedDataParallel(run.model, device_ids=[run.device.index] if run.device.type == "cuda"
                                          else None)
    show = progress and sys.stderr.isatty() and not world.distributed
    run.model.train()
    stop = False
    while state.epoch < s.epochs and not stop:
        epoch = state.epoch
        state.order = state.order or tr.batches(s.batch_size, seed * 1000 + epoch, shuffle=True)
        if run.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(run.device)
        bar = ProgressBar(show, len(state.order), state.batch_pos, f"{name} epoch {epoch + 1}/{s.epochs}")
        stop = _train_epoch(run, state, checkpointer, bar)
        bar.close()
        record = epoch_record(state, epoch, state.epoch_seconds)
        last = stop or epoch + 1 == s.epochs
        if va is not None and va.n and ((epoch + 1) % s.eval_every_epochs == 0 or last):
            # rank 0 evaluates; every rank takes its accuracy, so they all stop (and keep) alike
            acc = accuracy(run.model, va, s.eval_batch_size, run.device, s.bf16) if world.main else None
            record["validation_accuracy"] = acc = distributed.from_main(acc, world)
            stop = early_stopping(state, epoch, acc, run.model, s.early_stopping_patience, world.main) or stop
        elif va is None or not va.n:
            state.best_epoch, state.best_state = epoch + 1, None
        record["peak_rss_mb"] = peak_rss_mb()
        if run.device.type == "cuda":
            record["peak_cuda_mb"] = torch.cuda.max_memory_allocated(run.device) / 2**20
        state.history.append(record)
        if progress:
            log_epoch(name, record)
        state.next_epoch()
    return state
