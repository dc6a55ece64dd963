"""Collection and analysis components (each training task evaluates its own model)."""

# kfp ships each component function's source alone (a lightweight component), so every import its body
# needs is made inside the function: the function-local imports in this file are required, not a choice.
from kfp.dsl import HTML, Artifact, Dataset, Input, Model, Output


def collect_evaluations(config: str, seed: int, tracking_uri: str, study: Input[Artifact],
                        evaluations: Output[Artifact]):
    """Gather one seed's evaluations and analyses from MLflow (fails if a variant did not finish)."""
    from debiaskd.runtime.dispatch import execute

    execute("collect_evaluations", config=config, seed=seed, out_dir=evaluations.path,
            tracker={"uri": tracking_uri, "study_run_id": study.metadata["run_id"]})


def analyze_model(config: str, concurrent: int, model: Input[Model], reference: Input[Model], dataset: Input[Dataset],
                  tracking_uri: str, study: Input[Artifact], analysis: Output[HTML]):
    """Attention-pattern and circuit analysis of a model against its reference (``concurrent`` tasks
    share the machine's CPUs under the local runner)."""
    from pathlib import Path

    from debiaskd.runtime.dispatch import execute

    result = execute("analyze_pair", config=config, model=model.path, reference=reference.path,
                     dataset_dir=dataset.path, concurrent=concurrent, page=True,
                     tracker={"uri": tracking_uri, "study_run_id": study.metadata["run_id"]})
    Path(analysis.path).parent.mkdir(parents=True, exist_ok=True)
    Path(analysis.path).write_text(result["page"], encoding="utf-8")
