"""Data jobs: prepare (generate or load the four splits), validate (Great Expectations), augment.

The libraries they call (pandas, Great Expectations, torch) are imported inside :meth:`run`: importing
the jobs (the registry, the CLI's preflight) stays cheap, and the work pays for them where it runs.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from debiaskd.core.config import StudyConfig
from debiaskd.core.errors import DebiaskdError
from debiaskd.core.paths import describe
from debiaskd.jobs.base import Job
from debiaskd.tracking.lineage import current_data_version


def preflight(cfg: StudyConfig) -> None:
    """Cheap checks before any pipeline starts: data specs parse and exist, the model source resolves.

    The pipeline's validation step still runs the full suites; this only makes the common
    mistakes (a typo in a path, an unknown scheme) fail in a second with exit code 2.
    """
    # pandas (the parser, the tasks): slow, and importing the jobs must stay cheap
    from debiaskd.data.loaders import parse_spec
    from debiaskd.tasks import get_task

    task = get_task(cfg.task)
    sections = task.sections(cfg)
    for split in ("train", "validation", "test", "challenge"):
        spec = getattr(sections.data, split)
        try:
            scheme, arg = parse_spec(spec)
        except DebiaskdError as exc:
            rule = f"{sections.names.data}.{split}: {exc.rule}"
            raise DebiaskdError(exc.message, file=exc.file or spec, rule=rule) from exc
        if scheme in ("generated", "hf", "colored-digits"):
            continue
        path = Path(arg.split("#", 1)[0].rsplit(":", 1)[0] if scheme == "dataset" else arg.split("#", 1)[0])
        if not path.exists():
            raise DebiaskdError(f"data path {describe(path)}", file=str(path),
                                rule=f"{sections.names.data}.{split}")
    task.check_model_source(sections.model)


class PrepareDataJob(Job):
    """Generate or load the splits of training seed ``seed`` into a dataset folder (with its manifest);
    returns the manifest. Each seed draws its own data (:meth:`StudyConfig.for_seed`)."""

    KIND: Literal["prepare_data"] = "prepare_data"
    out_dir: Path
    seed: int = 0

    def run(self) -> dict[str, Any]:
        # pandas and the generators: slow, only where the job runs (importing the jobs must stay cheap)
        from debiaskd.data.build import build_dataset
        from debiaskd.data.store import read_dataset

        path = build_dataset(self.config.for_seed(self.seed), self.out_dir)
        return read_dataset(path).manifest


class ValidateDataJob(Job):
    """Run the Great Expectations suites (one Checkpoint) and build their Data Docs; write the JSON
    report, the Data Docs site (``data_docs/``) and one self-contained page of it (``data_docs.html``)
    into ``report_dir`` and the study run; raise on failure, naming the Data Docs. Returns ``{"report":
    the report, "page": a Markdown page of it, "html": the Data Docs as one HTML page}`` (the Kubeflow
    UI's views). Seed ``seed``'s files land in the study run under ``validation/seed-<seed>``; without
    ``report_dir`` they are written to a temporary folder, kept only when the data is invalid."""

    KIND: Literal["validate_data"] = "validate_data"
    dataset_dir: Path
    report_dir: Path | None = None
    seed: int = 0

    def run(self) -> dict[str, Any]:
        # Great Expectations: slow, only where it runs
        from debiaskd.data.validate import docs_page, validate_dataset

        folder = self.report_dir if self.report_dir is not None else Path(
            tempfile.mkdtemp(prefix="debiaskd-validation-"))
        try:
            folder.mkdir(parents=True, exist_ok=True)
            report = validate_dataset(self.dataset_dir, self.config, folder / "data_docs")
            html = docs_page(report, f"Data validation ({self.config.task}, seed {self.seed})")
            (folder / "validation.json").write_text(report.to_json(), encoding="utf-8")
            if html is not None:
                (folder / "data_docs.html").write_text(html, encoding="utf-8")
            where = f"validation/seed-{self.seed}"
            note = None
            if self.tracker.active:
                self.tracker.log_artifacts(folder / "validation.json", where)
                if report.docs is not None:
                    self.tracker.log_artifacts(folder / "data_docs.html", where)
                    self.tracker.log_artifacts(report.docs.parent, f"{where}/data_docs")
                    note = f"also in the study run's artifacts: {where}/data_docs.html and {where}/data_docs/"
                self.tracker.set_tags({"debiaskd.validation": "passed" if report.ok else "failed",
                                       f"debiaskd.data_version.seed-{self.seed}": self.data_version()})
            report.raise_for_failures(note)
        except BaseException:
            if self.report_dir is None and not (folder / "data_docs").is_dir():
                shutil.rmtree(folder, ignore_errors=True)  # nothing there a user could look at
            raise
        if self.report_dir is None:
            shutil.rmtree(folder, ignore_errors=True)
        verdict = "passed" if report.ok else "failed"
        page = (f"# Data validation: {verdict}\n\nThe Great Expectations Data Docs of this validation are the task's "
                f"`data_docs` output and the study run's `{where}/data_docs.html`.\n\n"
                f"```json\n{report.to_json()[:20000]}\n```\n")
        return {"report": json.loads(report.to_json()), "page": page, "html": html}

    def data_version(self) -> str:
        """The version of the data validated: git revision, DVC hash of ``data/``, content hash."""
        from debiaskd.data.store import read_manifest  # the data layer: only where the job runs

        return current_data_version(str(read_manifest(self.dataset_dir).get("content_hash", "")))


class AugmentDataJob(Job):
    """Fit the bias-only model, store its predictions with the data, add the augmented train split;
    returns the new dataset's manifest. ``seed`` is the training seed whose data these are (the
    augmentation seed moves with it, :meth:`StudyConfig.for_seed`)."""

    KIND: Literal["augment_data"] = "augment_data"
    dataset_dir: Path
    out_dir: Path
    seed: int = 0

    def run(self) -> dict[str, Any]:
        # pandas, scikit-learn and the data modules: slow, only where the job runs
        from debiaskd.data.store import read_dataset, write_dataset
        from debiaskd.tasks import get_task

        cfg = self.config.for_seed(self.seed)
        ds = read_dataset(self.dataset_dir)
        splits, n_new = get_task(ds.task).augment(cfg, ds.splits)
        meta = {"source": ds.content_hash, "augmented_rows": n_new, "bias_model": cfg.debias.bias_model}
        return write_dataset(self.out_dir, ds.task, splits, meta)
