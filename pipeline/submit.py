"""Create a run of the study on a Kubeflow Pipelines endpoint."""

import os
import tempfile
from pathlib import Path

from debiaskd.config import StudyConfig
from debiaskd.errors import DebiaskdError


def submit_run(cfg: StudyConfig, host: str, experiment: str, namespace: str | None = None) -> tuple[str, str]:
    """Compile with the cluster settings and create a run; returns (run id, UI link).

    Credentials come from the environment (``KF_PIPELINES_TOKEN``), never from the config.
    """
    import kfp

    from debiaskd.pipeline.study_pipeline import compile_pipeline, pipeline_name

    with tempfile.TemporaryDirectory(prefix="debiaskd-submit-") as tmp:
        package = Path(tmp) / "pipeline.yaml"
        compile_pipeline(cfg, str(package), platform=True)
        try:
            client = kfp.Client(host=host, namespace=namespace,
                                existing_token=os.environ.get("KF_PIPELINES_TOKEN") or None)
            run = client.create_run_from_pipeline_package(
                str(package), arguments={"run_name": f"study-{cfg.config_hash()}"},
                experiment_name=experiment, run_name=f"{pipeline_name(cfg)}-{cfg.preset}",
                namespace=namespace,
            )
        except Exception as exc:  # connection refused, HTTP errors, bad host: all user-fixable
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DebiaskdError(f"could not create a run on the Kubeflow endpoint: {first[:300]}", file=host,
                                rule="kubeflow endpoint reachable") from exc
    run_id = run.run_id
    return run_id, f"{host.rstrip('/')}/#/runs/details/{run_id}"
