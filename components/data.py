"""Data components: prepare (generate/load), validate (Great Expectations), augment."""

from kfp.dsl import Artifact, Dataset, Input, Markdown, Output


def prepare_data(config: str, dataset: Output[Dataset]):
    """Generate the embedded benchmark or load the configured files into a dataset folder."""
    from debiaskd.jobs import steps

    manifest = steps.prepare_data(config, dataset.path)
    dataset.metadata["content_hash"] = manifest["content_hash"]


def validate_data(config: str, dataset: Input[Dataset], tracking_uri: str, study: Input[Artifact],
                  report: Output[Markdown]):
    """Run the GX suites; fail the pipeline (before training) when the data breaks a rule."""
    from debiaskd.jobs import steps

    result = steps.validate_data(config, dataset.path, None, tracking_uri or None, steps.study_run_id(study.path),
                                 markdown_file=report.path)
    report.metadata["ok"] = bool(result.get("ok", True))


def augment_data(config: str, dataset: Input[Dataset], augmented: Output[Dataset]):
    """Bias-model predictions stored with the data, plus the bias-aware augmented train split."""
    from debiaskd.jobs import steps

    manifest = steps.augment_data(config, dataset.path, augmented.path)
    augmented.metadata["content_hash"] = manifest["content_hash"]
