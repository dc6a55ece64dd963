"""Data validation with Great Expectations Core 1.x, and a readable failure report.

Each split runs a GX expectation suite (ephemeral context, pandas data source) over a
*validation frame*: the split's rows plus derived check columns (``_premise_is_str``,
``_group_consistent``, per-image ``_pixel_max`` …) so that type and consistency rules are GX
expectations too and every failure comes back with the offending row indices. GX returns
results out of insertion order, so results are mapped back to rules by expectation type + kwargs.

Per split (NLI): required columns; no nulls; string / bool types; non-empty text of at most
``max_text_chars``; labels in the label set; heuristics known; ``group`` consistent with
heuristic/label; unique ``pair_id``; at least one row. Per split (vision): the image array is
uint8 ``(N, 3, H, W)`` with one image per row (checked on the array), per-image pixel range
and no NaN (GX on derived columns), labels in ``0..K-1``, known colours/places, unique ids.

Across splits: no ``pair_id`` / ``image_id`` and no (premise, hypothesis) shared between train
and an evaluation split; no label above ``max_label_share`` of a split; in the challenge splits
(``challenge`` and, where present, ``challenge_dev``) every bias group (NLI: each heuristic
present × each gold label, and all three HANS heuristics when any is present; vision:
bias-conflicting examples of every class) has at least ``min_group_count`` rows. Where the
rows carry construction marks (the embedded benchmark's optional ``construction`` /
``construction_seen`` columns): ``construction_seen`` is boolean, ``challenge`` and
``challenge_dev`` share no construction, and no training row's construction is a held-out
challenge construction.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from debiaskd.core.config import StudyConfig, ValidationConfig
from debiaskd.core.errors import DebiaskdError
from debiaskd.data.checks import MAX_EXAMPLES, Failure
from debiaskd.data.checks import as_text as _as_text
from debiaskd.data.checks import example as _example
from debiaskd.data.loaders import load_spec, parse_spec
from debiaskd.data.schema import ImageSplit
from debiaskd.data.store import Dataset, read_dataset
from debiaskd.tasks import Task, get_task, task_of

__all__ = ["Failure", "SplitReport", "ValidationReport", "cross_split_checks", "validate_dataset", "validate_spec",
           "validate_split", "validate_splits"]

Split = pd.DataFrame | ImageSplit


@dataclass
class SplitReport:
    split: str
    file: str
    rows: int
    evaluated: int = 0
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


@dataclass
class ValidationReport:
    """Everything one validation found; saved as the JSON validation artifact."""

    task: str
    source: str
    splits: list[SplitReport] = field(default_factory=list)
    cross: list[Failure] = field(default_factory=list)

    @property
    def failures(self) -> list[Failure]:
        return [f for s in self.splits for f in s.failures] + list(self.cross)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "source": self.source, "ok": self.ok,
                "n_failures": len(self.failures),
                "splits": [asdict(s) | {"ok": s.ok} for s in self.splits],
                "cross_split": [asdict(f) for f in self.cross]}

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True, default=str, ensure_ascii=False) + "\n"
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text, encoding="utf-8")
        return text

    def summary(self) -> str:
        if self.ok:
            rows = sum(s.rows for s in self.splits)
            return f"{self.source}: valid ({len(self.splits)} split(s), {rows} rows)"
        return "\n".join(f.line() for f in self.failures)

    def raise_for_failures(self) -> None:
        """One :class:`DebiaskdError` listing every failure, with the first one's example rows."""
        if self.ok:
            return
        fails = self.failures
        first = fails[0]
        listing = "\n".join(f"  * {f.line()}" for f in fails)
        rules = "; ".join(dict.fromkeys(f.rule for f in fails))
        raise DebiaskdError(f"data validation failed ({len(fails)} rule(s) broken):\n{listing}\n"
                            f"first failure: {first.rule} in {first.file}",
                            file=first.file, rule=rules, examples=first.examples[:MAX_EXAMPLES])


# ------------------------------------------------------------------------------ GX
@functools.lru_cache(maxsize=1)
def _gx_context():
    import great_expectations as gx  # Great Expectations: slow (~6 s), only a suite run needs it

    ctx = gx.get_context(mode="ephemeral")
    try:
        from great_expectations.data_context.types.base import ProgressBarsConfig  # as gx above

        ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    except Exception:  # cosmetic only
        pass
    source = ctx.data_sources.add_pandas("debiaskd")
    return ctx, source


_counter = itertools.count()


def _key(kind: str, kwargs: dict) -> str:
    clean = {k: v for k, v in kwargs.items() if k not in ("batch_id", "result_format")}
    return kind + json.dumps(clean, sort_keys=True, default=str)


def _run_suite(frame: pd.DataFrame, rules: list[tuple[str, Any]], suite_name: str) -> list[tuple[str, Any]]:
    """Run expectations; return (rule, result) for each, mapped back by type + kwargs."""
    import great_expectations as gx  # Great Expectations: slow (~6 s), only a suite run needs it

    _, source = _gx_context()
    asset = source.add_dataframe_asset(name=f"{suite_name}-{next(_counter)}")
    batch_def = asset.add_batch_definition_whole_dataframe("whole")
    suite = gx.ExpectationSuite(name=suite_name)
    by_key: dict[str, str] = {}
    for rule, exp in rules:
        suite.add_expectation(exp)
        by_key[_key(exp.expectation_type, exp.configuration.kwargs)] = rule
    batch = batch_def.get_batch(batch_parameters={"dataframe": frame})
    result = batch.validate(suite, result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20})
    out = []
    for res in result.results:
        cfg = res.expectation_config
        out.append((by_key.get(_key(cfg.type, cfg.kwargs), cfg.type), res))
    with contextlib.suppress(Exception):  # best-effort cleanup
        source.delete_asset(asset.name)
    return out


# ------------------------------------------------------------------------ suites
def validate_split(df_or_split: Split, task: str | Task, split_name: str, file_label: str,
                   cfg: ValidationConfig) -> SplitReport:
    """Run the task's suite on one split; failures name ``file_label`` and the rule."""
    kind = get_task(task)
    if not kind.is_split(df_or_split):
        rule, message = kind.split_type_rule
        return SplitReport(split_name, file_label, len(df_or_split), 0,
                           [Failure(file_label, rule, "type check", message)])
    report = SplitReport(split_name, file_label, len(df_or_split))
    report.failures += kind.split_failures(df_or_split, file_label)
    frame, rules = kind.validation_rules(df_or_split, cfg)
    cols = kind.example_columns
    results = _run_suite(frame, rules, f"{kind.name}-{split_name}")
    report.evaluated = len(results)
    for rule, res in sorted(results, key=lambda r: r[0]):
        if res.success:
            continue
        info = res.result or {}
        idx = info.get("partial_unexpected_index_list") or []
        examples = [_example(frame, int(i), cols) for i in idx[:MAX_EXAMPLES]]
        if info.get("unexpected_count") is not None:
            msg = f"{info['unexpected_count']} of {info.get('element_count', len(frame))} rows break it"
        elif res.exception_info and res.exception_info.get("raised_exception"):
            msg = f"could not be evaluated: {res.exception_info.get('exception_message')}"
        else:
            observed = info.get("observed_value")
            if isinstance(observed, list):
                observed = [c for c in observed if not str(c).startswith("_")]
            mismatch = (info.get("details") or {}).get("mismatched") or {}
            mismatch = {k: [c for c in v if not str(c).startswith("_")] for k, v in mismatch.items()}
            msg = f"observed {observed!r}" + (f"; {mismatch}" if mismatch else "")
            examples = [mismatch] if mismatch else [{"observed": observed}]
        report.failures.append(Failure(file_label, rule, res.expectation_config.type, msg, examples))
    return report


# ------------------------------------------------------------------ cross-split checks
def _label_balance(name: str, split: Split, file_label: str, cfg: ValidationConfig) -> list[Failure]:
    frame = task_of(split).frame(split)
    if "label" not in frame.columns or frame.empty:
        return []
    shares = _as_text(frame["label"]).value_counts(normalize=True)
    top = shares.index[0]
    if shares.iloc[0] > cfg.max_label_share:
        return [Failure(file_label, "label balance", "max label share",
                        f"label {top!r} is {shares.iloc[0]:.1%} of split '{name}' (max {cfg.max_label_share:.0%})",
                        [{"label": str(k), "share": round(float(v), 4)} for k, v in shares.head(5).items()])]
    return []


def _leaks(train: Split, other: Split, name: str, file_label: str, kind: Task) -> list[Failure]:
    out = []
    tf = task_of(train).frame(train)
    of = task_of(other).frame(other)
    id_col = kind.id_column
    if id_col in tf.columns and id_col in of.columns:
        shared = of[_as_text(of[id_col]).isin(set(_as_text(tf[id_col])))]
        if len(shared):
            out.append(Failure(file_label, f"no {id_col} shared between train and {name}", "cross-split leak",
                               f"{len(shared)} id(s) of '{name}' also occur in train",
                               [_example(of, int(i), (id_col,)) for i in np.flatnonzero(
                                   _as_text(of[id_col]).isin(set(_as_text(tf[id_col]))))[:MAX_EXAMPLES]]))
    pair = kind.leak_columns
    if pair and set(pair) <= set(tf.columns) & set(of.columns):
        train_pairs = set(zip(*(_as_text(tf[c]) for c in pair), strict=True))
        mask = np.array([p in train_pairs for p in zip(*(_as_text(of[c]) for c in pair), strict=True)], dtype=bool)
        if mask.any():
            shown = ", ".join(pair)
            out.append(Failure(file_label, f"no ({shown}) shared between train and {name}",
                               "cross-split leak", f"{int(mask.sum())} pair(s) of '{name}' also occur in train",
                               [_example(of, int(i), (id_col, *pair)) for i in np.flatnonzero(mask)[:MAX_EXAMPLES]]))
    return out


def _challenge_groups(split: Split, file_label: str, kind: Task, cfg: ValidationConfig) -> list[Failure]:
    frame = task_of(split).frame(split)
    if not {"label", "bias_aligned"} <= set(frame.columns) or frame.empty:
        return []
    counts = kind.challenge_group_counts(split)
    if counts is None:
        return []
    short = {g: n for g, n in counts.items() if n < cfg.min_group_count}
    if not short:
        return []
    return [Failure(file_label, "every bias group present", "min group count",
                    f"{len(short)} group(s) below {cfg.min_group_count} rows in the challenge split",
                    [{"group": g, "rows": n} for g, n in list(short.items())[:MAX_EXAMPLES]])]


def cross_split_checks(splits: dict[str, Split], task: str | Task, files: dict[str, str],
                       cfg: ValidationConfig) -> list[Failure]:
    kind = get_task(task)
    out: list[Failure] = []
    if "train" in splits:
        for name, split in splits.items():
            if name != "train":
                out += _leaks(splits["train"], split, name, files[name], kind)
    for name, split in splits.items():
        out += _label_balance(name, split, files[name], cfg)
    for name in ("challenge", "challenge_dev"):
        if name in splits:
            out += _challenge_groups(splits[name], files[name], kind, cfg)
    if kind.marks_constructions:
        out += _construction_checks(splits, files)
    return out


def _constructions(split: Split, seen: bool | None = None) -> set[str]:
    frame = task_of(split).frame(split)
    if "construction" not in frame.columns:
        return set()
    sel = frame["construction"].notna().to_numpy()
    if seen is not None:
        if "construction_seen" not in frame.columns:
            return set()
        sel = sel & np.array([isinstance(v, (bool, np.bool_)) and bool(v) == seen
                              for v in frame["construction_seen"]], dtype=bool)
    return set(frame["construction"][sel].astype(str))


def _construction_checks(splits: dict[str, Split], files: dict[str, str]) -> list[Failure]:
    out = []
    if {"challenge", "challenge_dev"} <= set(splits):
        shared = _constructions(splits["challenge"]) & _constructions(splits["challenge_dev"])
        if shared:
            out.append(Failure(files["challenge_dev"], "challenge and challenge_dev share no construction",
                               "construction leak", f"{len(shared)} construction(s) in both challenge splits",
                               [{"construction": c} for c in sorted(shared)[:MAX_EXAMPLES]]))
    held_out = set().union(*(_constructions(splits[n], seen=False) for n in ("challenge", "challenge_dev")
                             if n in splits))
    for name in ("train", "train_augmented", "validation"):
        if name in splits and held_out:
            leaked = _constructions(splits[name]) & held_out
            if leaked:
                out.append(Failure(files[name], f"no held-out challenge construction in {name}", "construction leak",
                                   f"{len(leaked)} held-out construction(s) occur in '{name}'",
                                   [{"construction": c} for c in sorted(leaked)[:MAX_EXAMPLES]]))
    return out


# ------------------------------------------------------------------------ entry points
def validate_splits(splits: dict[str, Split], task: str, cfg: ValidationConfig, source: str,
                    files: dict[str, str] | None = None) -> ValidationReport:
    files = files or {name: f"{source}:{name}" for name in splits}
    report = ValidationReport(task, source)
    for name, split in splits.items():
        report.splits.append(validate_split(split, task, name, files[name], cfg))
    report.cross = cross_split_checks(splits, task, files, cfg)
    return report


def validate_dataset(dataset_or_path: Any, cfg: StudyConfig) -> ValidationReport:
    """Per-split suites plus cross-split checks on a dataset folder (or a read :class:`Dataset`)."""
    try:
        ds = dataset_or_path if isinstance(dataset_or_path, Dataset) else read_dataset(dataset_or_path)
    except DebiaskdError as exc:
        return _error_report(exc, cfg.task, str(dataset_or_path))
    files = {name: str(Path(ds.path) / f"{name}.jsonl") for name in ds.splits}
    return validate_splits(ds.splits, ds.task, cfg.validation, str(ds.path), files)


def _error_report(exc: DebiaskdError, task: str, source: str) -> ValidationReport:
    report = ValidationReport(task, source)
    report.cross.append(Failure(exc.file or source, exc.rule or "readable data", "load", exc.message,
                                list(exc.examples)))
    return report


def validate_spec(spec: str, task: str, cfg: StudyConfig) -> ValidationReport:
    """Validate a dataset folder (with ``manifest.json``) or any loader ``SPEC``."""
    try:
        scheme, arg = parse_spec(spec)
    except DebiaskdError as exc:
        return _error_report(exc, task, spec)
    if scheme == "dataset" and (Path(arg) / "manifest.json").is_file():
        report = validate_dataset(arg, cfg)
        if report.task != task and report.ok:
            report.cross.append(Failure(arg, "task", "manifest", f"dataset task is {report.task}, not {task}"))
        return report
    try:
        split = load_spec(spec, task, cfg, split="test")
    except DebiaskdError as exc:
        return _error_report(exc, task, spec)
    name = get_task(task).spec_split_name(split)
    return validate_splits({name: split}, task, cfg.validation, spec, {name: arg or spec})
