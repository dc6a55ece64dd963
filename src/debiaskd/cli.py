"""The ``debiaskd`` command line (also ``python -m debiaskd``).

Exit codes: 0 success; 2 invalid input or usage (one clear paragraph, no traceback);
3 the promotion gate refused; 1 anything unexpected (with its traceback: that is a bug).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from debiaskd.core.config import load_config
from debiaskd.core.errors import DebiaskdError, GateRefused
from debiaskd.core.paths import check_output_dir, check_output_file, require_dir, write_text_atomic
from debiaskd.core.study import variant_specs
from debiaskd.core.sweep import cells
from debiaskd.core.task import TASK_NAMES
from debiaskd.tracking import service as tracking

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

app = typer.Typer(
    name="debiaskd", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Does the robustness we paid for survive distillation? Train debiased teachers, distil students, "
         "measure robustness per bias group, and promote only students that keep it.",
)
data_app = typer.Typer(no_args_is_help=True, help="Generate and validate the bias benchmarks.")
app.add_typer(data_app, name="data")
err = Console(stderr=True)
# a wide table even when stdout is a pipe or a CI log (rich assumes 80 columns there)
out = Console(width=None if sys.stdout.isatty() else 140)

PresetOpt = Annotated[str, typer.Option("--preset", "-p", help="smoke (tests, seconds) | default (CPU demo) | "
                                        "paper (GPU, BERT-base teacher)")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML file overriding the preset")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="override one key: a.b=value (repeatable)")]
TrackingOpt = Annotated[str | None, typer.Option("--tracking-uri", envvar="MLFLOW_TRACKING_URI",
                                                 help="MLflow tracking URI (default: sqlite in the output dir)")]


def _config(preset: str, config: Path | None, overrides: list[str] | None, task: str | None = None):
    return load_config(preset, config, overrides, task)


def _check_tracking(uri: str | None) -> None:
    """A malformed --tracking-uri (or $MLFLOW_TRACKING_URI) is refused before any work."""
    if uri is not None:
        tracking.check_tracking_uri(uri)


def _compile_to_text(cfg, out_file: Path) -> str:
    """The IR YAML as text (compiled into a private temporary folder, so ``out_file`` is written once, whole);
    the sweep pipeline when ``cfg.matrix.enabled``."""
    from debiaskd.pipeline import compile_pipeline  # kfp: slow (~1 s), only compile needs it
    from debiaskd.pipeline.sweep_pipeline import compile_sweep  # kfp: likewise

    with tempfile.TemporaryDirectory(prefix="debiaskd-compile-") as tmp:
        path = Path(tmp) / "pipeline.yaml"  # with the platform spec, kfp serialises YAML only
        (compile_sweep if cfg.matrix.enabled else compile_pipeline)(cfg, str(path), platform=True)
        return path.read_text(encoding="utf-8")


ALL_TASKS = "all"  # ``run --task all``: one study per task
TRAIN_SECTIONS = ("teacher_train", "student_train", "vision_teacher_train", "vision_student_train")


def _check_task(task: str, allowed: tuple[str, ...] = TASK_NAMES) -> None:
    if task not in allowed:
        raise DebiaskdError(f"--task must be one of {', '.join(allowed)}; got '{task}'", rule="usage")


# ------------------------------------------------------------------------ run
@app.command()
def run(
    preset: PresetOpt = "default",
    task: Annotated[str, typer.Option(help="nli | vision | all")] = "nli",
    config: ConfigOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="output folder (default runs/<preset>-<task>)")]
    = None,
    tracking_uri: TrackingOpt = None,
    overrides: SetOpt = None,
    seeds: Annotated[list[int] | None, typer.Option(
        "--seed", "--seeds", help="a training seed (repeatable: --seed 0 --seed 1 is --set seeds=[0,1])")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="stream the kfp task logs")] = False,
    warm_workers: Annotated[bool, typer.Option(
        "--warm/--no-warm", envvar="DEBIASKD_WARM",
        help="fork each task from a process that imported torch, transformers and MLflow once "
             "(--no-warm: a fresh interpreter per task, as on a cluster)")] = True,
    processes: Annotated[int | None, typer.Option(
        "--processes", help="train each model with N data-parallel processes (torchrun on this machine): sets "
        "every *_train.processes; the global batch stays batch_size × grad_accum")] = None,
) -> None:
    """Run the whole study as a Kubeflow pipeline on the local kfp runner.

    validate → augment → teachers → students (every variant) → bias-stratified evaluation →
    analysis → register → promotion gate. Writes DIR/summary.json, DIR/report.md and plots;
    re-running with the same DIR and config reuses finished steps (kfp caching).
    """
    # kfp, and numpy for the results table: slow, and only this command runs the study
    from debiaskd.pipeline.local_run import run_local
    from debiaskd.reporting.report import results_headers, results_rows

    _check_task(task, (*TASK_NAMES, ALL_TASKS))
    if seeds:  # after every --set: the explicit option wins
        overrides = [*(overrides or []), f"seeds=[{', '.join(str(seed) for seed in seeds)}]"]
    if processes is not None:  # likewise, for every training role
        if processes < 1:
            raise DebiaskdError(f"--processes must be at least 1 (the data-parallel processes per model); got "
                                f"{processes}", rule="usage")
        overrides = [*(overrides or []), *(f"{section}.processes={processes}" for section in TRAIN_SECTIONS)]
    every = task == ALL_TASKS
    tasks = list(TASK_NAMES) if every else [task]
    _check_tracking(tracking_uri)
    for t in tasks:  # every config and output folder checked before the first study starts
        cfg = _config(preset, config, overrides, t)
        if cfg.matrix.enabled:
            raise DebiaskdError("matrix.enabled is set: the distillability matrix runs with `debiaskd sweep`",
                                rule="usage")
        target = out_dir or Path("runs") / f"{cfg.preset}-{t}"
        check_output_dir(out_dir / t if every and out_dir is not None else target, "--out")
    for t in tasks:
        cfg = _config(preset, config, overrides, t)
        target = out_dir or Path("runs") / f"{cfg.preset}-{t}"
        if every and out_dir is not None:
            target = out_dir / t
        summary = run_local(cfg, target, tracking_uri, verbose=verbose, console=err, warm_workers=warm_workers)
        table = Table(title=f"debiaskd {t} study ({cfg.preset}) — accuracies in %", show_lines=False)
        for h in results_headers(summary):
            table.add_column(h, justify="left" if h == "variant" else "right", no_wrap=True)
        for row in results_rows(summary):
            table.add_row(*row)
        out.print(table)
        promoted = summary.get("promoted")
        if promoted:
            out.print(f"[green]promoted[/] {promoted['name']} v{promoted['version']} → @{promoted['alias']}")
        else:
            reg = (summary.get("registration") or {}).get("student")
            why = "; ".join(r for r in reg["gate"]["reasons"]) if reg else "no student registered"
            out.print(f"[yellow]no student promoted[/]: {why}")
        out.print(f"report: {Path(target) / 'report.md'}   summary: {Path(target) / 'summary.json'}")
        _print_ui_hint(summary.get("tracking_uri") or "", cfg.experiment_name)


# ---------------------------------------------------------------------- sweep
@app.command()
def sweep(
    preset: Annotated[str, typer.Option("--preset", "-p", help="smoke (tests, a minute or two) | matrix (this "
                                        "machine, ≤ 20 minutes) | default | paper")] = "matrix",
    task: Annotated[str, typer.Option(help="nli | vision")] = "nli",
    config: ConfigOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="output folder (default runs/sweep-<preset>-"
                                                 "<task>)")] = None,
    tracking_uri: TrackingOpt = None,
    overrides: SetOpt = None,
    seeds: Annotated[list[int] | None, typer.Option("--seed", "--seeds", help="a training seed (repeatable)")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="stream the kfp task logs")] = False,
    warm_workers: Annotated[bool, typer.Option("--warm/--no-warm", envvar="DEBIASKD_WARM",
                                               help="fork each task from a warm process")] = True,
) -> None:
    """The distillability matrix: every combination of the config's ``matrix`` axes (debiasing method ×
    distillation objective × student size × intervention) as one kfp pipeline run on the local runner.

    One teacher per debiasing method, shared by its cells; the cells a ParallelFor fan-out. Writes
    DIR/sweep.json, DIR/report.md and the heat map; one MLflow parent run with a nested run per cell. A later
    sweep in the same DIR reuses every model it already trained (by content key): adding a value to an axis
    trains only the new cells.
    """
    from debiaskd.pipeline.local_run import run_local  # kfp: slow, and only run and sweep need it

    _check_task(task)
    if seeds:
        overrides = [*(overrides or []), f"seeds=[{', '.join(str(seed) for seed in seeds)}]"]
    cfg = _config(preset, config, [*(overrides or []), "matrix.enabled=true"], task)
    grid = cells(cfg)  # an unknown or unsupported axis value: exit 2 before anything starts
    target = out_dir or Path("runs") / f"sweep-{cfg.preset}-{task}"
    _check_tracking(tracking_uri)
    check_output_dir(target, "--out")
    err.print(f"sweep: {len(grid)} cells, {len(variant_specs(cfg)) - len(grid)} teachers, seeds {cfg.seeds}")
    result = run_local(cfg, target, tracking_uri, verbose=verbose, console=err, warm_workers=warm_workers)
    table = Table(title=f"debiaskd {task} distillability matrix ({cfg.preset}): retention on held-out "
                  "constructions", show_lines=False)
    for h in ("cell", "retention", "ID acc %", "AUC", "reliance", "gate", "reused"):
        table.add_column(h, justify="left" if h == "cell" else "right", no_wrap=True)
    reused = set(result.get("reused_cells") or [])

    def num(stat: dict, scale: float = 1.0, digits: int = 2) -> str:
        return "–" if stat.get("mean") is None else f"{stat['mean'] * scale:.{digits}f}"

    for name, entry in result["cells"].items():
        table.add_row(name, num(entry["retention"]), num(entry["in_distribution_accuracy"], 100, 1),
                      num(entry["challenge_auc"]), num(entry["heuristic_reliance"]),
                      "pass" if entry["gate_passed"] else "fail", "yes" if name in reused else "")
    out.print(table)
    for method, name in result["cheapest_passing"].items():
        out.print(f"cheapest passing student for {method}: {name or 'none'}")
    out.print(f"best robust student: {result['best_robust'] or 'none'}")
    promoted = result.get("promoted")
    if promoted:
        out.print(f"[green]promoted[/] {promoted['name']} v{promoted['version']} → @{promoted['alias']}")
    out.print(f"report: {Path(target) / 'report.md'}   sweep: {Path(target) / 'sweep.json'}")
    _print_ui_hint(result.get("tracking_uri") or "", cfg.experiment_name)


def _print_ui_hint(uri: str, experiment: str) -> None:
    """How to open the MLflow UI on the study's runs (the link left out when the store cannot be read)."""
    if not uri:
        return
    try:
        experiment_id = tracking.experiment_id(uri, experiment)
    except DebiaskdError:
        experiment_id = None
    for line in tracking.ui_hint(uri, experiment_id):
        out.print(line, soft_wrap=True, highlight=False, markup=False)


# ----------------------------------------------------------------------- data
@data_app.command("generate")
def data_generate(
    task: Annotated[str, typer.Option(help="nli | vision")] = "nli",
    preset: PresetOpt = "default",
    config: ConfigOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="output folder")] = Path("data"),
    overrides: SetOpt = None,
) -> None:
    """Write the embedded benchmark deterministically (same seed, same bytes)."""
    # pandas and the generators: slow, only the data commands need them
    from debiaskd.data.build import build_dataset
    from debiaskd.data.store import check_dataset_target, read_dataset

    _check_task(task)
    cfg = _config(preset, config, overrides, task)
    check_dataset_target(out_dir, "--out")
    path = build_dataset(cfg, out_dir, task)
    ds = read_dataset(path)
    rows = {name: len(split) for name, split in ds.splits.items()}
    out.print(f"wrote {path} ({', '.join(f'{k}: {v}' for k, v in rows.items())}); content hash {ds.content_hash}")


@data_app.command("validate")
def data_validate(
    spec: Annotated[str, typer.Argument(help="a dataset folder, or a SPEC such as hans:PATH, mnli:PATH, sick:PATH")],
    task: Annotated[str, typer.Option(help="nli | vision")] = "nli",
    preset: PresetOpt = "default",
    config: ConfigOpt = None,
    report: Annotated[Path | None, typer.Option(help="write the JSON validation report here")] = None,
    docs: Annotated[Path | None, typer.Option(
        help="build the Great Expectations Data Docs site of this validation in this folder (new, empty, or an "
             "earlier site, which it replaces); without it the site is built only for invalid data, in a "
             "temporary folder the error names")] = None,
) -> None:
    """Run the Great Expectations suite on a data set; exit 2 naming file, rule, rows and the Data Docs page
    when invalid."""
    from debiaskd.data.docs import check_docs_dir  # next to the validation it serves (cheap: standard library)
    from debiaskd.data.validate import validate_spec  # pandas, Great Expectations: slow, only for validate

    _check_task(task)
    check_output_file(report, "--report")
    if docs is not None:
        check_docs_dir(docs, "--docs")
    cfg = _config(preset, config, None, task)
    target = docs if docs is not None else Path(tempfile.mkdtemp(prefix="debiaskd-data-docs-"))
    try:
        result = validate_spec(spec, task, cfg, target, docs_if_failed=docs is None)
    finally:
        if docs is None and not any(target.iterdir()):
            target.rmdir()  # no site was built: leave nothing behind
    if report is not None:
        write_text_atomic(report, result.to_json(), "--report")
    result.raise_for_failures()
    out.print(f"[green]valid[/]: {escape(spec)} passed every expectation of the {task} suite")
    if result.docs is not None:
        out.print(f"Great Expectations Data Docs: {escape(str(result.docs))}", highlight=False)


# ------------------------------------------------------------------- evaluate
@app.command()
def evaluate(
    model: Annotated[str, typer.Option(help="model folder, or models:/NAME@ALIAS, runs:/ID/model")],
    data: Annotated[str, typer.Option(help="SPEC: generated:challenge, hans:PATH, mnli:PATH, sick:PATH, …")],
    json_file: Annotated[Path | None, typer.Option("--json", help="write the metrics as JSON here")] = None,
    limit: Annotated[int | None, typer.Option(help="evaluate a seeded, group-stratified sample of N examples")]
    = None,
    preset: PresetOpt = "default",
    config: ConfigOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Bias-stratified evaluation of one model (overall, per group, per heuristic and subcase)."""
    from debiaskd.evaluation.evaluate import evaluate_spec  # torch, pandas: slow, only for evaluate

    if limit is not None and limit < 1:
        raise DebiaskdError(f"--limit must be a positive number of examples; got {limit}", rule="usage")
    check_output_file(json_file, "--json")
    _check_tracking(tracking_uri)
    cfg = _config(preset, config, None)
    model_dir = tracking.resolve_model(tracking_uri, model)
    result = evaluate_spec(str(model_dir), data, cfg, limit=limit)
    if json_file is not None:
        write_text_atomic(json_file, json.dumps(result, indent=2, default=str), "--json")
    table = Table(title=f"{model} on {data} (n={result['n']})")
    table.add_column("group")
    table.add_column("n", justify="right")
    table.add_column("accuracy", justify="right")
    for group, entry in sorted(result["by_group"].items()):
        table.add_row(group, str(entry["n"]), f"{100 * entry['accuracy']:.1f}")
    out.print(table)
    extras = [f"{k} {result[k]:.3f}" for k in ("auc", "heuristic_reliance", "ece") if isinstance(result.get(k), float)]
    out.print(f"accuracy {100 * result['accuracy']:.1f}%, worst group {100 * result['worst_group_accuracy']:.1f}%"
              + (", " + ", ".join(extras) if extras else ""))


# -------------------------------------------------------------------- analyze
@app.command()
def analyze(
    model: Annotated[str, typer.Option(help="model folder or MLflow model URI")],
    data: Annotated[str, typer.Option(help="SPEC of the examples to analyse (challenge data works best)")],
    out_dir: Annotated[Path, typer.Option("--out", "-o", help="folder for analysis.json and the plots")],
    reference: Annotated[str | None, typer.Option(help="teacher to compare heads with")] = None,
    patching: Annotated[bool | None, typer.Option(
        "--patching/--no-patching", help="activation patching on minimal pairs (anti-bias overlap pair vs its "
        "bias-aligned twin): every head, MLP and residual segment, with bootstrap intervals, and with --reference "
        "the teacher's heads transplanted through the layer map (default: the config's analysis.patching)")] = None,
    patching_pairs: Annotated[int | None, typer.Option(
        min=2, help="minimal pairs to patch (default: the config's analysis.patching_pairs)")] = None,
    preset: PresetOpt = "default",
    config: ConfigOpt = None,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Attention-pattern and circuit analysis of a model (and, with --reference, its teacher).

    With --patching, also which components carry the anti-bias decision (activation patching)."""
    # torch, pandas, matplotlib: slow, only for analyze
    from debiaskd.analysis.run import analyze as run_analysis
    from debiaskd.data.loaders import load_spec

    check_output_dir(out_dir, "--out")
    _check_tracking(tracking_uri)
    sets = ([f"analysis.patching={str(patching).lower()}"] if patching is not None else []) + (
        [f"analysis.patching_pairs={patching_pairs}"] if patching_pairs is not None else [])
    cfg = _config(preset, config, sets or None)
    model_dir = tracking.resolve_model(tracking_uri, model)
    ref_dir = tracking.resolve_model(tracking_uri, reference) if reference else None
    split = load_spec(data, cfg.task, cfg, "challenge")
    result = run_analysis(str(model_dir), split, out_dir, cfg, reference=str(ref_dir) if ref_dir else None)
    pngs = result.get("plots") or sorted(str(p) for p in Path(out_dir).glob("*.png"))
    out.print(f"wrote {Path(out_dir) / 'analysis.json'} and {len(pngs)} plots")
    for role, entry in ((result.get("patching") or {}).get("models") or {}).items():
        s = entry["summary"]
        top = ", ".join(f"{c['component']} {c['mean']:+.3g} [{c['ci_low']:+.3g}, {c['ci_high']:+.3g}]"
                        for c in s["top"][:3])
        out.print(f"patching {result['model_names'].get(role, role)} on {s['n_pairs']} pairs "
                  f"(gap {s['gap']['mean']:+.3g}, {entry['seconds']:.1f} s): {top}")


# -------------------------------------------------------------------- compile
@app.command("compile")
def compile_cmd(
    out_file: Annotated[Path, typer.Option("--out", "-o", help="IR YAML to write")],
    preset: PresetOpt = "default",
    task: Annotated[str, typer.Option(help="nli | vision")] = "nli",
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    sweep: Annotated[bool, typer.Option("--sweep", help="compile the distillability matrix (`debiaskd sweep`) "
                                        "instead of the study; its models are kept by content key on the shared "
                                        "volume, so a later sweep reuses them")] = False,
) -> None:
    """Compile the pipeline to Kubeflow IR YAML with the cluster settings (images, GPUs, secrets, volumes)."""
    _check_task(task)
    check_output_file(out_file, "--out")  # first: what the path is (a folder, under a file…) says more
    if out_file.suffix.lower() == ".json":
        raise DebiaskdError("--out: the pipeline is compiled to YAML (the Kubeflow IR with its platform spec cannot "
                            "be written as JSON); give a .yaml or .yml file", file=str(out_file), rule="usage")
    cfg = _config(preset, config, [*(overrides or []), *(["matrix.enabled=true"] if sweep else [])], task)
    if cfg.matrix.enabled:
        cells(cfg)  # an unknown axis value: exit 2 before compiling
    text = _compile_to_text(cfg, out_file)
    write_text_atomic(out_file, text, "--out")
    gpu = f"{cfg.cluster.gpu_per_training_task} GPU per training task" if cfg.cluster.gpu_per_training_task else "CPU"
    out.print(f"compiled {out_file} (image {cfg.cluster.image}; {gpu})")


@app.command()
def submit(
    host: Annotated[str, typer.Option(help="Kubeflow Pipelines endpoint, e.g. http://localhost:8080")],
    preset: PresetOpt = "default",
    task: Annotated[str, typer.Option(help="nli | vision")] = "nli",
    experiment: Annotated[str | None, typer.Option(help="KFP experiment name")] = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    namespace: Annotated[str | None, typer.Option(help="Kubeflow profile namespace")] = None,
    service_account: Annotated[str | None, typer.Option(
        help="Kubernetes service account the run's pods use (k8s/ creates 'debiaskd-pipeline')")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="follow the run; exit 0 only if it succeeded")] = False,
    wait_timeout: Annotated[float | None, typer.Option(help="with --wait: give up after this many seconds")]
    = None,
) -> None:
    """Create a run on a Kubeflow Pipelines endpoint (credentials from the environment, KF_PIPELINES_TOKEN).

    With --wait, follow it to its end: exit 0 when it succeeded, 1 when it failed, was skipped or
    canceled, 2 when the endpoint cannot be read or --wait-timeout passes."""
    from debiaskd.pipeline.submit import submit_run, wait_for_run  # kfp: slow (~1 s), only submit needs it

    _check_task(task)
    cfg = _config(preset, config, overrides, task)
    run_id, url = submit_run(cfg, host, experiment or cfg.experiment_name, namespace, service_account)
    out.print(f"created run {run_id}: {url}")
    if not wait:
        return
    state = wait_for_run(host, run_id, namespace, wait_timeout, on_state=lambda s: err.print(f"run {run_id}: {s}"))
    if state != "SUCCEEDED":
        err.print(f"[red]run {run_id} ended {state}[/]: {url}")
        raise SystemExit(1)
    out.print(f"run {run_id} succeeded: {url}")


# -------------------------------------------------------------------- compare
@app.command()
def compare(
    experiment: Annotated[str, typer.Option(help="MLflow experiment")] = "debiaskd-nli",
    json_file: Annotated[Path | None, typer.Option("--json", help="write the rows as JSON here")] = None,
    tracking_uri: TrackingOpt = None,
    run_id: Annotated[str | None, typer.Option(help="study (parent) run id; default the latest")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="a run folder whose mlflow.db to read")]
    = None,
    groups: Annotated[bool, typer.Option("--groups", help="add the challenge accuracy of every bias group")]
    = False,
) -> None:
    """Table of the runs of a study: each variant and seed with its in-distribution and challenge accuracy
    (%), challenge AUC, worst-group accuracy (%), heuristic reliance and retention of its teacher's
    challenge accuracy. ``--groups`` adds one column per bias group; ``--json`` writes every metric."""
    check_output_file(json_file, "--json")
    if out_dir is not None and tracking_uri is None:
        require_dir(out_dir, "a run folder (holding mlflow.db)", "run folder")
    uri = tracking_uri or tracking.resolve_tracking_uri(None, out_dir or _default_run_dir())
    tracking.check_tracking_uri(uri, must_exist=True)  # compare only reads: never create an empty database
    rows = tracking.study_runs(uri, experiment, run_id)
    if not rows:
        raise DebiaskdError(f"experiment '{experiment}' has no study runs yet", file=uri, rule="experiment")
    if json_file is not None:
        write_text_atomic(json_file, json.dumps(rows, indent=2, default=str), "--json")
    # compare is for reading in a terminal: as wide as it is ($COLUMNS too), 80 columns are enough
    screen = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 100)
    screen.print(compare_table(rows, title=f"{experiment}: {len(rows)} runs"))
    if groups:
        screen.print(group_table(rows))


#: (column, MLflow metric, shown in %): the headline of every variant, as in the run's results table
COMPARE_COLUMNS = (("ID", "test/accuracy", True), ("chall.", "challenge/accuracy", True),
                   ("AUC", "challenge/auc", False), ("worst", "challenge/worst_group_accuracy", True),
                   ("rel.", "challenge/heuristic_reliance", False))


def compare_table(rows: list[dict], title: str | None = None) -> Table:
    """The compare view: one line per variant run with the headline columns; retention is a student's
    challenge accuracy over its teacher's in the same seed."""
    teachers = {name: spec.teacher or "teacher_debiased" for name, spec in variant_specs(load_config("default")).items()
                if spec.role == "student"}
    challenge = {(r["variant"], r["seed"]): r["metrics"].get("challenge/accuracy") for r in rows}
    table = _compare_frame(title, [label for label, _, _ in COMPARE_COLUMNS] + ["ret."])
    for r in rows:
        metrics = r["metrics"]
        teacher = challenge.get((teachers.get(r["variant"] or ""), r["seed"]))
        mine = metrics.get("challenge/accuracy")
        kept = mine / teacher if (teacher and mine is not None and r["role"] == "student") else None
        table.add_row(*_run_label(r), *[_cell(metrics.get(key), pct) for _, key, pct in COMPARE_COLUMNS],
                      _cell(kept, False))
    return table


def group_table(rows: list[dict]) -> Table:
    """Challenge accuracy (%) of every bias group: ``lex``/``sub``/``con``/``neg`` for the heuristic, then
    the gold label, ``E`` entailment or ``N`` non-entailment (``lexN`` is where the overlap shortcut fails)."""
    keys = sorted({k for r in rows for k in r["metrics"] if k.startswith("challenge/") and k.endswith("/accuracy")
                   and k.count("/") == 3 and not k.startswith("challenge/subcase/")})
    short = {"lexical_overlap": "lex", "subsequence": "sub", "constituent": "con", "negation": "neg"}
    labels = []
    for key in keys:
        heuristic, label = key.split("/")[1:3]
        labels.append(f"{short.get(heuristic, heuristic[:3])}{'E' if label == 'entailment' else 'N'}")
    table = _compare_frame("challenge accuracy by bias group (%)", labels)
    for r in rows:
        table.add_row(*_run_label(r), *[_cell(r["metrics"].get(key), True, 0) for key in keys])
    return table


def _compare_frame(title: str | None, columns: list[str]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True, title_justify="left")
    table.add_column("variant", no_wrap=True)
    table.add_column("seed", justify="right")
    for label in columns:
        table.add_column(label, justify="right", no_wrap=True)
    return table


def _run_label(row: dict) -> tuple[str, str]:
    return row["variant"] or row["run_name"] or row["run_id"], str(row["seed"] or "")


def _cell(value: float | None, percent: bool, digits: int = 1) -> str:
    if value is None:
        return "–"
    return f"{100 * value:.{digits}f}" if percent else f"{value:.2f}"


def _default_run_dir() -> Path:
    return Path("runs") / "default-nli"


# -------------------------------------------------------------------- promote
@app.command()
def promote(
    model: Annotated[str, typer.Option(help="registered model name, e.g. debiaskd-nli-student")],
    version: Annotated[str | None, typer.Option(help="version to promote (default: the challenger)")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="apply the gate, change nothing")] = False,
    preset: PresetOpt = "default",
    config: ConfigOpt = None,
    tracking_uri: TrackingOpt = None,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="a run folder whose mlflow.db to use")]
    = None,
) -> None:
    """Apply the robustness gate to a registered version; if it passes, move `champion` to it (exit 3 if not).

    The thresholds are the ones stored on the version when it was registered (`gate.threshold.*`);
    --preset/--config can only tighten them, never loosen them.
    """
    cfg = _config(preset, config, None)
    uri = tracking_uri or tracking.resolve_tracking_uri(cfg, out_dir or _default_run_dir())
    decision = tracking.promote(uri, model, version, cfg.gate, dry_run=dry_run)
    for reason in decision.reasons:
        out.print(f"  - {reason}")
    if dry_run:
        out.print(f"gate would {'pass' if decision.passed else 'refuse'} (dry run: nothing changed)")
        if not decision.passed:
            raise GateRefused(decision.reasons)
    else:
        out.print(f"[green]promoted[/] {model} → @champion")


def main(argv: list[str] | None = None) -> int:
    """Entry point: map errors to exit codes (2 user error, 3 gate refused)."""
    try:
        app(args=argv, standalone_mode=False)
    except DebiaskdError as exc:
        err.print(f"[bold red]error:[/] {escape(exc.render())}", highlight=False)
        return 2
    except GateRefused as exc:
        err.print("[bold yellow]promotion refused:[/] " + escape("; ".join(exc.reasons)), highlight=False)
        return 3
    except SystemExit as exc:  # typer's own exits (--help)
        return int(exc.code or 0)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM during a run: say so, exit as shells expect
        err.print("[yellow]interrupted[/]")
        return 130
    except Exception as exc:
        # typer bundles its own click: recognise its usage errors by shape
        if type(exc).__name__ == "Abort":
            return 1
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):
            exc.show()
            return int(exc.exit_code) or 2
        raise
    return 0


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    entry()
