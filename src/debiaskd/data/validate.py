"""Data validation with Great Expectations Core 1.x, and a readable failure report.

Each split runs a GX expectation suite over a *validation frame*: the split's rows plus derived
check columns (``_premise_is_str``, ``_group_consistent``, per-image ``_pixel_max`` …) so that type
and consistency rules are GX expectations too and every failure comes back with the offending row
indices. A validation is a GX project of its own: a file-backed context in a temporary folder, the
suites (``<task>_<split>``, built by :mod:`debiaskd.data.suites`, the same code that wrote the suites
saved in ``debiaskd/gx/``), one Validation Definition per split and one Checkpoint running them; on
request its Data Docs site is built into a folder the caller names (:mod:`debiaskd.data.docs`).
Each expectation carries its rule's name in ``meta.rule``, so results map back to rules by name.

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
import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import numpy as np
import pandas as pd

from debiaskd.core.config import StudyConfig, ValidationConfig
from debiaskd.core.errors import DebiaskdError
from debiaskd.data.checks import MAX_EXAMPLES, Failure
from debiaskd.data.checks import as_text as _as_text
from debiaskd.data.checks import example as _example
from debiaskd.data.docs import discard, prune_static, publish, single_page, staging_dir
from debiaskd.data.loaders import load_spec, parse_spec
from debiaskd.data.schema import ImageSplit
from debiaskd.data.store import Dataset, read_dataset
from debiaskd.data.suites import build_suite, suite_name
from debiaskd.tasks import Task, get_task, task_of

__all__ = ["Failure", "SplitReport", "ValidationReport", "cross_split_checks", "docs_page", "validate_dataset",
           "validate_spec", "validate_split", "validate_splits"]

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
    """Everything one validation found; saved as the JSON validation artifact. ``docs`` is the index
    page of its Data Docs site and ``docs_pages`` each split's page there, when one was built (they
    are not part of the JSON: a path is where this run put the site, not a property of the data)."""

    task: str
    source: str
    splits: list[SplitReport] = field(default_factory=list)
    cross: list[Failure] = field(default_factory=list)
    docs: Path | None = None
    docs_pages: dict[str, Path] = field(default_factory=dict)

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

    def raise_for_failures(self, docs_note: str | None = None) -> None:
        """One :class:`DebiaskdError` listing every failure, with the first one's example rows; the
        Data Docs page (when built) is named first, so no cut of a long message loses it. ``docs_note``
        says where else the docs are (e.g. the MLflow run's artifacts)."""
        if self.ok:
            return
        fails = self.failures
        first = fails[0]
        listing = "\n".join(f"  * {f.line()}" for f in fails)
        rules = "; ".join(dict.fromkeys(f.rule for f in fails))
        docs = ""
        if self.docs is not None:
            docs = f"; Great Expectations Data Docs: {self.docs}"
            split = next((s.split for s in self.splits if s.failures and s.split in self.docs_pages), None)
            if split is not None:
                docs += f" (split '{split}': {self.docs_pages[split]})"
        if docs_note:
            docs += f"; {docs_note}"
        raise DebiaskdError(f"data validation failed ({len(fails)} rule(s) broken{docs}):\n{listing}\n"
                            f"first failure: {first.rule} in {first.file}",
                            file=first.file, rule=rules, examples=first.examples[:MAX_EXAMPLES])


# ------------------------------------------------------------------------------ GX
#: how much of each failing expectation GX reports (the examples come from its row indices)
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 20}


class _Checkpoint:
    """One validation's file-backed GX context in a temporary folder: a pandas data source with one
    asset per split (the split's validation frame, pickled: a Checkpoint hands every Validation
    Definition the same batch parameters, so each split's data must be its own asset), the splits'
    suites, one Validation Definition per split, one Checkpoint running them all; then, on request,
    the Data Docs site of the results. The folder is removed on :meth:`close`."""

    def __init__(self, task: str) -> None:
        import great_expectations as gx  # Great Expectations: slow (~4 s), only a suite run needs it

        self.task = task
        self.root = Path(tempfile.mkdtemp(prefix="debiaskd-gx-"))
        self.context = gx.get_context(mode="file", project_root_dir=self.root)
        with contextlib.suppress(Exception):  # cosmetic only: no progress bars in logs
            from great_expectations.data_context.types.base import ProgressBarsConfig  # as gx above

            self.context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
        self.results: dict[str, Any] = {}  # split -> (its result identifier, its validation result)

    def run(self, prepared: dict[str, tuple[pd.DataFrame, list[tuple[str, Any]]]]) -> dict[str, list[tuple[str, Any]]]:
        """Run every split's suite in one Checkpoint; returns each split's ``(rule, result)`` pairs."""
        import great_expectations as gx  # as in __init__

        source = self.context.data_sources.add_pandas("debiaskd")
        frames = self.root / "frames"
        frames.mkdir()
        definitions, splits_of = [], {}
        for split, (frame, rules) in prepared.items():
            path = frames / f"{len(definitions)}.pkl"
            frame.to_pickle(path)
            batch = source.add_pickle_asset(name=split, filepath_or_buffer=path).add_batch_definition_whole_dataframe(
                split)
            suite = self.context.suites.add(build_suite(suite_name(self.task, split), rules))
            definitions.append(self.context.validation_definitions.add(
                gx.ValidationDefinition(name=suite.name, data=batch, suite=suite)))
            splits_of[suite.name] = split
        checkpoint = self.context.checkpoints.add(gx.Checkpoint(
            name=f"{self.task}_validation", validation_definitions=definitions, result_format=RESULT_FORMAT))
        outcome = checkpoint.run()
        out: dict[str, list[tuple[str, Any]]] = {}
        for key, result in outcome.run_results.items():
            split = splits_of[result.suite_name]
            self.results[split] = (key, result)
            out[split] = [((res.expectation_config.meta or {}).get("rule", res.expectation_config.type), res)
                          for res in result.results]
        return out

    def build_docs(self, target: Path) -> tuple[Path, dict[str, Path]]:
        """Build the Data Docs site of the results into ``target`` (replacing an earlier site there);
        returns its index page and each split's validation page."""
        staging = staging_dir(target)
        try:
            self.context.update_data_docs_site("local_site", {
                "class_name": "SiteBuilder", "show_how_to_buttons": False,
                "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(staging)},
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}})
            self.context.build_data_docs(site_names=["local_site"])
            pages = {}
            for split, (key, _) in self.results.items():
                urls = self.context.get_docs_sites_urls(resource_identifier=key, site_name="local_site")
                url = next((u["site_url"] for u in urls if u.get("site_url")), None)
                if url:
                    pages[split] = Path(url2pathname(urlparse(url).path)).relative_to(staging)
            prune_static(staging)
            publish(staging, target)
        except BaseException:
            discard(staging)
            raise
        return target / "index.html", {split: target / page for split, page in pages.items()}

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# ------------------------------------------------------------------------ suites
def _prepare(df_or_split: Split, kind: Task, split_name: str, file_label: str,
             cfg: ValidationConfig) -> tuple[SplitReport, pd.DataFrame | None, list[tuple[str, Any]]]:
    """A split's report with the failures found before GX (the split's type, the image array), its
    validation frame and its rules (no frame when the split is not one the task can check)."""
    if not kind.is_split(df_or_split):
        rule, message = kind.split_type_rule
        return SplitReport(split_name, file_label, len(df_or_split), 0,
                           [Failure(file_label, rule, "type check", message)]), None, []
    report = SplitReport(split_name, file_label, len(df_or_split))
    report.failures += kind.split_failures(df_or_split, file_label)
    frame, rules = kind.validation_rules(df_or_split, cfg)
    return report, frame, rules


def _record(report: SplitReport, frame: pd.DataFrame, results: list[tuple[str, Any]], cols: tuple[str, ...]) -> None:
    """Add each failed expectation of ``results`` to ``report``, with example rows from ``frame``."""
    report.evaluated = len(results)
    file_label = report.file
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


def validate_split(df_or_split: Split, task: str | Task, split_name: str, file_label: str,
                   cfg: ValidationConfig) -> SplitReport:
    """Run the task's suite on one split; failures name ``file_label`` and the rule."""
    kind = get_task(task)
    report = validate_splits({split_name: df_or_split}, kind.name, cfg, file_label, {split_name: file_label},
                             cross=False)
    return report.splits[0]


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
                    files: dict[str, str] | None = None, docs_dir: str | Path | None = None, *,
                    docs_if_failed: bool = False, cross: bool = True) -> ValidationReport:
    """Every split's suite (one Checkpoint in a file-backed GX context) and the cross-split checks.

    With ``docs_dir``, the Data Docs site of the results is built there (replacing an earlier site
    there; :func:`debiaskd.data.docs.check_docs_dir`), or, with ``docs_if_failed``, only when the
    data broke a rule; ``report.docs`` then names its index page and ``report.docs_pages`` each
    split's page. ``cross=False`` leaves out the cross-split checks (one split on its own)."""
    kind = get_task(task)
    files = files or {name: f"{source}:{name}" for name in splits}
    report = ValidationReport(kind.name, source)
    prepared: dict[str, tuple[pd.DataFrame, list[tuple[str, Any]]]] = {}
    for name, split in splits.items():
        split_report, frame, rules = _prepare(split, kind, name, files[name], cfg)
        report.splits.append(split_report)
        if frame is not None:
            prepared[name] = (frame, rules)
    checkpoint = _Checkpoint(kind.name) if prepared else None
    try:
        if checkpoint is not None:
            results = checkpoint.run(prepared)
            for split_report in report.splits:
                if split_report.split in prepared:
                    _record(split_report, prepared[split_report.split][0], results.get(split_report.split, []),
                            kind.example_columns)
        if cross:
            report.cross = cross_split_checks(splits, kind, files, cfg)
        if checkpoint is not None and docs_dir is not None and not (docs_if_failed and report.ok):
            report.docs, report.docs_pages = checkpoint.build_docs(Path(docs_dir))
    finally:
        if checkpoint is not None:
            checkpoint.close()
    return report


def validate_dataset(dataset_or_path: Any, cfg: StudyConfig, docs_dir: str | Path | None = None, *,
                     docs_if_failed: bool = False) -> ValidationReport:
    """Per-split suites plus cross-split checks on a dataset folder (or a read :class:`Dataset`);
    ``docs_dir`` / ``docs_if_failed`` as in :func:`validate_splits`."""
    try:
        ds = dataset_or_path if isinstance(dataset_or_path, Dataset) else read_dataset(dataset_or_path)
    except DebiaskdError as exc:
        return _error_report(exc, cfg.task, str(dataset_or_path))
    files = {name: str(Path(ds.path) / f"{name}.jsonl") for name in ds.splits}
    return validate_splits(ds.splits, ds.task, cfg.validation, str(ds.path), files, docs_dir,
                           docs_if_failed=docs_if_failed)


def _error_report(exc: DebiaskdError, task: str, source: str) -> ValidationReport:
    report = ValidationReport(task, source)
    report.cross.append(Failure(exc.file or source, exc.rule or "readable data", "load", exc.message,
                                list(exc.examples)))
    return report


def validate_spec(spec: str, task: str, cfg: StudyConfig, docs_dir: str | Path | None = None, *,
                  docs_if_failed: bool = False) -> ValidationReport:
    """Validate a dataset folder (with ``manifest.json``) or any loader ``SPEC``; ``docs_dir`` /
    ``docs_if_failed`` as in :func:`validate_splits`."""
    try:
        scheme, arg = parse_spec(spec)
    except DebiaskdError as exc:
        return _error_report(exc, task, spec)
    if scheme == "dataset" and (Path(arg) / "manifest.json").is_file():
        report = validate_dataset(arg, cfg, docs_dir, docs_if_failed=docs_if_failed)
        if report.task != task and report.ok:
            report.cross.append(Failure(arg, "task", "manifest", f"dataset task is {report.task}, not {task}"))
        return report
    try:
        split = load_spec(spec, task, cfg, split="test")
    except DebiaskdError as exc:
        return _error_report(exc, task, spec)
    name = get_task(task).spec_split_name(split)
    return validate_splits({name: split}, task, cfg.validation, spec, {name: arg or spec}, docs_dir,
                           docs_if_failed=docs_if_failed)


def docs_page(report: ValidationReport, title: str = "Data validation") -> str | None:
    """One self-contained HTML page of the report's Data Docs (None when no site was built)."""
    if report.docs is None:
        return None
    return single_page(report.docs.parent, report.to_dict(), report.docs_pages, title)
