"""The Kubeflow pipeline of the study (installed as ``debiaskd.pipeline``): wiring only."""

from debiaskd.pipeline.study_pipeline import build_pipeline, compile_pipeline, pipeline_name

__all__ = ["build_pipeline", "compile_pipeline", "pipeline_name"]
