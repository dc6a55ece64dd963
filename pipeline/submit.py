"""Create a run of the study on a Kubeflow Pipelines endpoint."""

import os
import tempfile
import time
from pathlib import Path

import kfp

from debiaskd.core.config import StudyConfig
from debiaskd.core.errors import DebiaskdError
from debiaskd.pipeline.study_pipeline import compile_pipeline, pipeline_name

#: a run in one of these states will not change any more (KFP v2 API)
FINAL_STATES = ("SUCCEEDED", "FAILED", "SKIPPED", "CANCELED")


def _client(host: str, namespace: str | None):
    return kfp.Client(host=host, namespace=namespace, existing_token=os.environ.get("KF_PIPELINES_TOKEN") or None)


def submit_run(cfg: StudyConfig, host: str, experiment: str, namespace: str | None = None,
               service_account: str | None = None) -> tuple[str, str]:
    """Compile with the cluster settings and create a run (as ``service_account`` when given, the
    account ``k8s/`` grants the pipeline's permissions to); returns (run id, UI link).

    Credentials come from the environment (``KF_PIPELINES_TOKEN``), never from the config.
    """
    with tempfile.TemporaryDirectory(prefix="debiaskd-submit-") as tmp:
        package = Path(tmp) / "pipeline.yaml"
        compile_pipeline(cfg, str(package), platform=True)
        try:
            client = _client(host, namespace)
            run = client.create_run_from_pipeline_package(
                str(package), arguments={"run_name": f"study-{cfg.config_hash()}"},
                experiment_name=experiment, run_name=f"{pipeline_name(cfg)}-{cfg.preset}",
                namespace=namespace, service_account=service_account,
            )
        except Exception as exc:  # connection refused, HTTP errors, bad host: all user-fixable
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DebiaskdError(f"could not create a run on the Kubeflow endpoint: {first[:300]}", file=host,
                                rule="kubeflow endpoint reachable") from exc
    run_id = run.run_id
    return run_id, f"{host.rstrip('/')}/#/runs/details/{run_id}"


def wait_for_run(host: str, run_id: str, namespace: str | None = None, timeout: float | None = None,
                 poll_seconds: float = 10.0, on_state=None) -> str:
    """Follow a run until it reaches a final state (:data:`FINAL_STATES`) and return that state;
    ``on_state(state)`` hears each new state. Raises :class:`DebiaskdError` when the endpoint cannot be
    read or ``timeout`` seconds pass first."""
    client = _client(host, namespace)
    started, last = time.monotonic(), None
    while True:
        try:
            state = str(client.get_run(run_id).state or "PENDING").upper()
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DebiaskdError(f"could not read run {run_id}: {first[:300]}", file=host,
                                rule="kubeflow endpoint reachable") from exc
        if state != last and on_state is not None:
            on_state(state)
        last = state
        if state in FINAL_STATES:
            return state
        if timeout is not None and time.monotonic() - started > timeout:
            raise DebiaskdError(f"run {run_id} is still {state} after {timeout:.0f} s", file=host,
                                rule="--wait-timeout")
        time.sleep(poll_seconds)
