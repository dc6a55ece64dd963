"""Kubeflow Trainer TrainJobs from a pipeline task: build one, create it, follow it to its end.

A training task that asks for more than one node or more than one GPU (``cluster.*_launch``) does not
train in its own pod: it creates a TrainJob (``trainer.kubeflow.org/v1alpha1``) that refers to a torch
runtime (``cluster.trainer_runtime``, the TrainingRuntime of ``k8s/base/trainer-runtime.yaml``), whose
``numNodes`` pods each run ``torchrun`` with ``numProcPerNode`` processes (the runtime's torch policy
sets the ``PET_*`` variables torchrun reads), then waits for it: it prints the first node's log as it
grows, returns when the TrainJob's ``Complete`` condition is true and raises :class:`TrainJobFailed`,
with the failed pods' last lines, when ``Failed`` is.

Only the Kubernetes API is used, through the official client's public methods
(``CustomObjectsApi.*_namespaced_custom_object``, ``CoreV1Api.list_namespaced_pod`` and
``read_namespaced_pod_log``); :class:`TrainJobClient` takes both objects, so tests give it fakes.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GROUP, VERSION, PLURAL, KIND = "trainer.kubeflow.org", "v1alpha1", "trainjobs", "TrainJob"
#: labels JobSet puts on every pod of a TrainJob (its JobSet has the TrainJob's name)
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"
REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
#: the trainer's replicated job and its container in a torch runtime
NODE = "node"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
TAIL_LINES = 40


class TrainJobFailed(RuntimeError):
    """The TrainJob ended ``Failed`` (the message holds its reason and the failed pods' last lines)."""


@dataclass(frozen=True)
class TrainJobRequest:
    """What one TrainJob runs, and on what."""

    name: str
    namespace: str
    image: str
    command: list[str]
    nodes: int = 1
    gpus_per_node: int = 0
    accelerator: str = "nvidia.com/gpu"
    cpu: str = "8"
    memory: str = "32G"
    runtime: str = "debiaskd-torch"
    runtime_kind: str = "TrainingRuntime"
    env: dict[str, str] = field(default_factory=dict)
    #: variables read from a Secret: name → (Secret, key); optional, so a missing Secret starts the pod anyway
    secret_env: dict[str, tuple[str, str]] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def processes_per_node(self) -> int:
        """torchrun processes on each node: one per GPU (one on a CPU node)."""
        return max(1, self.gpus_per_node)


def trainjob_name(*parts: str) -> str:
    """A TrainJob name from ``parts``: lowercase RFC 1035 (a letter first, letters, digits and dashes, no
    dash last), at most 63 characters; the last part (a key) is kept whole when the rest is cut."""
    def clean(text: str) -> str:
        return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")

    head, key = clean("-".join(parts[:-1])), clean(parts[-1]) if parts else ""
    room = 63 - len(key) - 1
    name = f"{head[:max(room, 0)].rstrip('-')}-{key}" if head and room > 1 else key[:63]
    name = name.strip("-")
    return name if name[:1].isalpha() else f"t{name}"[:63].rstrip("-")


def trainjob_body(req: TrainJobRequest) -> dict[str, Any]:
    """The TrainJob object for ``req`` (the fields of ``trainer.kubeflow.org/v1alpha1`` every Trainer v2
    release reads: ``runtimeRef`` and ``trainer``)."""
    limits = {"cpu": req.cpu, "memory": req.memory}
    if req.gpus_per_node:
        limits[req.accelerator] = str(req.gpus_per_node)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": req.name, "namespace": req.namespace,
                     "labels": {"app.kubernetes.io/part-of": "debiaskd", **req.labels}},
        "spec": {
            "runtimeRef": {"name": req.runtime, "apiGroup": GROUP, "kind": req.runtime_kind},
            "trainer": {
                "image": req.image,
                "command": list(req.command),
                "numNodes": req.nodes,
                "numProcPerNode": req.processes_per_node,
                "resourcesPerNode": {"requests": {"cpu": req.cpu, "memory": req.memory}, "limits": limits},
                "env": [{"name": k, "value": v} for k, v in sorted(req.env.items())] + [
                    {"name": k, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}
                    for k, (secret, key) in sorted(req.secret_env.items())],
            },
        },
    }


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The TrainJob's condition ``kind`` ("Complete", "Failed", "Suspended") when it is true."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and str(cond.get("status")) == "True":
            return cond
    return None


def _status(exc: BaseException) -> int | None:
    """The HTTP status of a Kubernetes client error (``ApiException.status``), else None."""
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


def _as_dict(obj: Any) -> dict[str, Any]:
    """A pod as a dict (the client returns ``V1Pod`` models; their public ``to_dict`` is snake_case)."""
    return obj if isinstance(obj, dict) else obj.to_dict()


class TrainJobClient:
    """Create, follow and delete TrainJobs in one namespace with the Kubernetes client's
    ``CustomObjectsApi`` (``custom``) and ``CoreV1Api`` (``core``)."""

    def __init__(self, custom: Any, core: Any, namespace: str, *, log: Callable[[str], None] = print,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.custom, self.core, self.namespace, self.log, self.sleep = custom, core, namespace, log, sleep

    # -- the object
    def get(self, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        except Exception as exc:
            if _status(exc) == 404:
                return None
            raise

    def delete(self, name: str, *, poll_seconds: float = 2.0, attempts: int = 150) -> None:
        """Delete TrainJob ``name`` with its pods (foreground) and wait until it is gone."""
        try:
            self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name,
                                                        propagation_policy="Foreground")
        except Exception as exc:
            if _status(exc) != 404:
                raise
        for _ in range(attempts):
            if self.get(name) is None:
                return
            self.sleep(poll_seconds)
        raise TrainJobFailed(f"TrainJob {self.namespace}/{name} is still there after deleting it")

    def submit(self, body: dict[str, Any]) -> str:
        """Create the TrainJob, or take over one of the same name (a retried task): one still running
        is followed, a finished one is kept when it completed and replaced when it failed (the new one
        resumes from the checkpoints on shared storage). Returns "created", "running" or "complete"."""
        name = body["metadata"]["name"]
        existing = self.get(name)
        if existing is not None:
            if condition(existing, "Complete"):
                self.log(f"TrainJob {self.namespace}/{name} completed before: its result is used")
                return "complete"
            if not condition(existing, "Failed"):
                self.log(f"TrainJob {self.namespace}/{name} is already running: following it")
                return "running"
            self.log(f"TrainJob {self.namespace}/{name} failed before: replacing it (training resumes from its "
                     "last checkpoint)")
            self.delete(name)
        self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)
        trainer = body["spec"]["trainer"]
        self.log(f"created TrainJob {self.namespace}/{name}: {trainer['numNodes']} node(s) x "
                 f"{trainer['numProcPerNode']} process(es), runtime {body['spec']['runtimeRef']['name']}")
        return "created"

    # -- its pods
    def pods(self, name: str) -> list[dict[str, Any]]:
        """The trainer pods of TrainJob ``name``, first node first."""
        found = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"{JOBSET_LABEL}={name},{REPLICATED_JOB_LABEL}={NODE}")
        pods = [_as_dict(p) for p in getattr(found, "items", found)]
        return sorted(pods, key=lambda p: (int((p["metadata"].get("labels") or {}).get(INDEX_LABEL, 0) or 0),
                                           p["metadata"]["name"]))

    def pod_log(self, pod: str, tail: int | None = None) -> str:
        kwargs: dict[str, Any] = {"container": NODE}
        if tail is not None:
            kwargs["tail_lines"] = tail
        try:
            return self.core.read_namespaced_pod_log(pod, self.namespace, **kwargs) or ""
        except Exception as exc:
            if _status(exc) in (400, 404):  # not started yet (ContainerCreating) or gone
                return ""
            raise

    # -- following it
    def wait(self, name: str, *, poll_seconds: float = 15.0, timeout: float | None = None,
             clock: Callable[[], float] = time.monotonic) -> dict[str, Any]:
        """Follow TrainJob ``name`` until it completes (returns the object) or fails (raises
        :class:`TrainJobFailed`); the first node's log is printed as it grows."""
        started, printed = clock(), {}  # pod name → lines of its log already printed
        while True:
            obj = self.get(name)
            if obj is None:
                raise TrainJobFailed(f"TrainJob {self.namespace}/{name} disappeared (deleted by someone else?)")
            pods = self.pods(name)
            if pods:
                self._print_new(pods[0]["metadata"]["name"], printed)
            if condition(obj, "Complete"):
                if pods:
                    self._print_new(pods[0]["metadata"]["name"], printed)
                self.log(f"TrainJob {self.namespace}/{name} completed")
                return obj
            failed = condition(obj, "Failed")
            if failed:
                raise TrainJobFailed(self._failure(name, failed, pods))
            if timeout is not None and clock() - started > timeout:
                raise TrainJobFailed(f"TrainJob {self.namespace}/{name} did not finish within {timeout:.0f} s")
            self.sleep(poll_seconds)

    def _print_new(self, pod: str, printed: dict[str, int]) -> None:
        lines = self.pod_log(pod).splitlines()
        done = printed.get(pod, 0)
        if len(lines) < done:  # the log was rotated: print what is there
            done = 0
        for line in lines[done:]:
            self.log(line)
        printed[pod] = len(lines)

    def _failure(self, name: str, failed: dict[str, Any], pods: list[dict[str, Any]]) -> str:
        parts = [f"TrainJob {self.namespace}/{name} failed ({failed.get('reason') or 'no reason given'}): "
                 f"{failed.get('message') or ''}".rstrip(": ")]
        bad = [p for p in pods if (p.get("status") or {}).get("phase") == "Failed"] or pods
        for pod in bad:
            pod_name = pod["metadata"]["name"]
            tail = self.pod_log(pod_name, tail=TAIL_LINES).rstrip()
            if tail:
                parts.append(f"--- last lines of {pod_name} ---\n{tail}")
        return "\n".join(parts)

    def run(self, body: dict[str, Any], *, poll_seconds: float = 15.0, timeout: float | None = None) -> dict[str, Any]:
        """:meth:`submit` the TrainJob, then :meth:`wait` for it; returns the finished object."""
        if self.submit(body) == "complete":
            return self.get(body["metadata"]["name"]) or body
        return self.wait(body["metadata"]["name"], poll_seconds=poll_seconds, timeout=timeout)


def current_namespace(default: str = "default") -> str:
    """The namespace this pod runs in (its service account's), else ``default``."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip() or default
    except OSError:
        return default


def cluster_client(namespace: str | None = None, log: Callable[[str], None] = print) -> TrainJobClient:
    """A :class:`TrainJobClient` on the cluster this pod runs in (in-cluster config; a kubeconfig
    outside a cluster) in ``namespace`` (default: this pod's)."""
    # the Kubernetes client: loaded only where a TrainJob is created (a pipeline task on a cluster)
    from kubernetes import client, config

    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return TrainJobClient(client.CustomObjectsApi(), client.CoreV1Api(), namespace or current_namespace(), log=log)
