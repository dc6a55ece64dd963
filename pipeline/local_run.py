"""Run the study pipeline on kfp's local SubprocessRunner, with a progress bar and clear errors.

kfp prints every task's executor input and logs; those go to ``DIR/kfp.log`` (``--verbose``
streams them) while a progress bar counts finished tasks. A step that fails on user input
records its message through ``$DEBIASKD_ERROR_FILE``; the run then ends with that message
(exit code 2) and no summary, so nothing half-written looks like a result.
"""

import contextlib
import hashlib
import json
import os
import re
import shutil
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

from kfp import local
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from debiaskd.core.config import StudyConfig, save_config
from debiaskd.core.errors import DebiaskdError
from debiaskd.core.resources import peak_rss_mb
from debiaskd.core.study import analysis_pairs, variant_specs
from debiaskd.jobs.base import ERROR_FILE_ENV
from debiaskd.jobs.data import preflight
from debiaskd.pipeline.study_pipeline import build_pipeline
from debiaskd.pipeline.sweep_pipeline import build_sweep_pipeline
from debiaskd.runtime import warm
from debiaskd.tracking import service as tracking

FINISHED = re.compile(r"Task .*?'(?P<name>[^'\x1b]+)'.*? finished with status .*?(?P<status>SUCCESS|FAILURE)")
OUTPUTS = ("summary.json", "report.md")
SWEEP_OUTPUTS = ("sweep.json", "report.md")
#: where a local sweep keeps its finished models by content key (``DIR/store``)
STORE = "store"


def expected_tasks(cfg: StudyConfig) -> int:
    if cfg.matrix.enabled:  # start, 3 data steps per seed, every model, collect per seed, report, promotion, end
        return 1 + (3 + len(variant_specs(cfg)) + 1) * len(cfg.seeds) + 3
    per_seed = len(variant_specs(cfg)) + (len(analysis_pairs(cfg)) if cfg.analysis.enabled else 0) + 1
    return 4 + per_seed * len(cfg.seeds) + 3  # ... + summary, promotion, end of the study run


def study_key(cfg: StudyConfig, out: Path, uri: str) -> str:
    """The key the pipeline's exit task finds the study run by: the same for a re-run of the same
    ``DIR`` (whose cached first task reuses that run), different for another folder or store."""
    return hashlib.sha256(f"{cfg.config_hash()}|{out}|{uri}".encode()).hexdigest()[:16]


class _Tee:
    """A file-like object writing kfp's output to the log (and the terminal with --verbose)."""

    def __init__(self, log, echo) -> None:
        self.log, self.echo = log, echo

    def write(self, text: str) -> int:
        self.log.write(text)
        if self.echo is not None:
            self.echo.write(text)
        return len(text)

    def flush(self) -> None:
        self.log.flush()
        if self.echo is not None:
            self.echo.flush()

    def isatty(self) -> bool:
        return False


def _follow(log_path: Path, total: int, console, stop: threading.Event) -> None:
    """Tail the kfp log and advance a progress bar per finished task."""
    done = 0
    with Progress(TextColumn("[bold]study[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.description}"), console=console, transient=False) as progress:
        bar = progress.add_task("starting", total=total)
        position = 0
        while not stop.is_set() or position < log_path.stat().st_size:
            with log_path.open("r", encoding="utf-8", errors="replace") as fh:
                fh.seek(position)
                chunk = fh.read()
                position = fh.tell()
            for match in FINISHED.finditer(chunk):
                done += 1
                progress.update(bar, completed=min(done, total),
                                description=f"{match['name']}: {match['status'].lower()}")
            if stop.is_set():
                break
            time.sleep(0.5)
        progress.update(bar, completed=total if done >= total - 1 else done)


def run_local(
    cfg: StudyConfig, out_dir: str | Path, tracking_uri: str | None = None, verbose: bool = False, console=None,
    warm_workers: bool = True,
) -> dict[str, Any]:
    """Execute the pipeline with kfp.local; returns the summary (also written to ``out_dir``).

    With ``warm_workers`` each task's step runs in a process forked from one that imported the
    heavy libraries once (:mod:`debiaskd.runtime.warm`; its log is ``DIR/warm.log``) instead of paying
    for those imports in every task.

    With ``cfg.matrix.enabled`` it runs the sweep pipeline instead (:mod:`debiaskd.pipeline.sweep_pipeline`):
    ``DIR/sweep.json`` and ``DIR/report.md``, finished models kept by content key in ``DIR/store`` so a later
    sweep in the same ``DIR`` reuses them."""
    sweep = cfg.matrix.enabled
    outputs, summary_name = (SWEEP_OUTPUTS, "sweep.json") if sweep else (OUTPUTS, "summary.json")
    preflight(cfg)  # before the output folder: a config that cannot run leaves nothing behind
    out = Path(out_dir).resolve()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DebiaskdError(f"cannot create the output folder: {exc.strerror}", file=str(out),
                            rule="writable output") from exc
    _check_writable(out)
    for name in outputs:  # a stale result must not pass for this run's
        (out / name).unlink(missing_ok=True)
    save_config(cfg, out / "resolved_config.yaml")
    uri = tracking_uri or tracking.resolve_tracking_uri(cfg, out)
    error_file = out / "errors.jsonl"
    error_file.unlink(missing_ok=True)
    log_path = out / "kfp.log"

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(out / "kfp"),
               enable_caching=True, raise_on_error=True)
    study = build_sweep_pipeline(cfg, platform=False) if sweep else build_pipeline(cfg, platform=False)
    extra = {"store": str(out / STORE)} if sweep else {}
    env = {ERROR_FILE_ENV: str(error_file), "TQDM_DISABLE": "1", "DVC_NO_ANALYTICS": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    stop = threading.Event()
    failure: BaseException | None = None
    started = time.time()
    # the tasks kfp starts inherit $DEBIASKD_WARM_SOCKET: each component's job runs in a child of the server
    workers = warm.serving(out / "warm.log") if warm_workers else contextlib.nullcontext()
    with log_path.open("w", encoding="utf-8") as log, workers:
        follower = None
        if console is not None and not verbose:
            follower = threading.Thread(target=_follow, args=(log_path, expected_tasks(cfg), console, stop),
                                        daemon=True)
            follower.start()
        try:
            with contextlib.redirect_stdout(_Tee(log, sys.__stdout__ if verbose else None)), \
                    warnings.catch_warnings():
                if not verbose:  # kfp warns, per task, that display names and images are ignored locally
                    warnings.filterwarnings("ignore", module=r"kfp\.local.*")
                result = study(tracking_uri=uri, run_name=f"{'sweep' if sweep else 'study'}-{cfg.config_hash()}",
                               study_key=study_key(cfg, out, uri), **extra)
        except BaseException as exc:  # kfp raises RuntimeError on a failed task
            failure = exc
        finally:
            log.flush()
            stop.set()
            if follower is not None:
                follower.join(timeout=10)
            for key, value in previous.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        if failure is None:
            report_dir = Path(result.outputs["files"].path)
            for item in report_dir.iterdir():
                if item.is_file():
                    shutil.copy2(item, out / item.name)
            summary = json.loads((out / summary_name).read_text(encoding="utf-8"))
    if failure is not None:
        if isinstance(failure, KeyboardInterrupt):
            raise failure
        messages = _recorded_errors(error_file)
        if messages:
            raise DebiaskdError(messages[0]["message"] + f"\n(step: {messages[0]['step']}; pipeline stopped, "
                                f"nothing was registered or promoted; full log: {log_path})",
                                rule="pipeline input") from None
        raise RuntimeError(f"the pipeline failed: {failure}; see {log_path}") from failure

    summary["tracking_uri"] = uri
    summary["pipeline_root"] = str(out / "kfp")
    summary["seconds"] = round(time.time() - started, 1)
    summary["peak_rss_mb"] = peak_rss_mb(children=True)
    tmp = out / f"{summary_name}.tmp"
    tmp.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    os.replace(tmp, out / summary_name)
    return summary


def _recorded_errors(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _check_writable(path: Path) -> None:
    probe = path / ".write-test"
    try:
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise DebiaskdError(f"output folder is not writable: {exc.strerror}", file=str(path),
                            rule="writable output") from exc
