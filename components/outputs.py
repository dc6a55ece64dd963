"""What a training task shows in the Kubeflow UI, written from its job's JSON result (imported inside the
component functions, which kfp ships alone)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def show_training(result: dict[str, Any], metrics: Any, confusion: Any) -> None:
    """The headline numbers on an ``Output[Metrics]`` and the test split's confusion matrix on an
    ``Output[ClassificationMetrics]``, each with a file behind it (so kfp can cache the task)."""
    for key, value in result["headline"].items():
        metrics.log_metric(key, value)
    labels, matrix = result["confusion"]["labels"], result["confusion"]["matrix"]
    confusion.log_confusion_matrix([str(label) for label in labels], matrix)
    for artifact, shown in ((metrics, result["headline"]), (confusion, {"labels": labels, "matrix": matrix})):
        Path(artifact.path).parent.mkdir(parents=True, exist_ok=True)
        Path(artifact.path).write_text(json.dumps(shown), encoding="utf-8")
