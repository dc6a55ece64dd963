"""Data components: prepare (generate/load), validate (Great Expectations), augment."""

# kfp ships each component function's source alone (a lightweight component), so every import its body
# needs is made inside the function: the function-local imports in this file are required, not a choice.
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Output


def prepare_data(config: str, seed: int, dataset: Output[Dataset]):
    """Generate the embedded benchmark or load the configured files into a dataset folder: the data of
    training seed ``seed`` (each seed draws its own unless the config says ``vary_data_with_seed: false``)."""
    from debiaskd.runtime.dispatch import execute

    manifest = execute("prepare_data", config=config, seed=seed, out_dir=dataset.path)
    dataset.metadata["content_hash"] = manifest["content_hash"]


def validate_data(config: str, seed: int, dataset: Input[Dataset], tracking_uri: str, study: Input[Artifact],
                  report: Output[Markdown], data_docs: Output[HTML]):
    """Run the GX suites (one Checkpoint); fail the pipeline (before training) when the data breaks a rule.
    ``report`` is the JSON report as Markdown, ``data_docs`` the Great Expectations Data Docs of this
    validation as one self-contained HTML page (the full site is in the study run's artifacts)."""
    from pathlib import Path

    from debiaskd.runtime.dispatch import execute

    result = execute("validate_data", config=config, seed=seed, dataset_dir=dataset.path,
                     tracker={"uri": tracking_uri, "study_run_id": study.metadata["run_id"]})
    Path(report.path).write_text(result["page"], encoding="utf-8")
    report.metadata["ok"] = bool(result["report"].get("ok", True))
    Path(data_docs.path).parent.mkdir(parents=True, exist_ok=True)
    Path(data_docs.path).write_text(result["html"], encoding="utf-8")  # a validation that passed built its docs


def augment_data(config: str, seed: int, dataset: Input[Dataset], augmented: Output[Dataset]):
    """Bias-model predictions stored with the data, plus the bias-aware augmented train split."""
    from debiaskd.runtime.dispatch import execute

    manifest = execute("augment_data", config=config, seed=seed, dataset_dir=dataset.path, out_dir=augmented.path)
    augmented.metadata["content_hash"] = manifest["content_hash"]
