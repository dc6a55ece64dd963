"""Training on a cluster: in a folder on shared storage keyed by the task, in this pod or as a TrainJob.

A pipeline task compiled for a cluster carries a :class:`ClusterLaunch` (``launch``, built at compile
time from ``cluster.*``): the training job then trains in ``work_root/<variant>-seed<seed>-<key>`` on
the shared ReadWriteMany volume, where ``key`` hashes what is trained (the config, the variant, the
seed, the data set's content hash and the teacher's and reference's results). A retried task (a
preempted or evicted pod) finds its checkpoints there and resumes. With ``trainjob`` set (more than one
node or more than one GPU) the task copies its inputs there, writes the spec of
:mod:`debiaskd.training.launch` and runs it as a Kubeflow Trainer TrainJob under torchrun
(:mod:`debiaskd.runtime.trainjob`), following it to its end; otherwise it trains in its own pod. Either
way the trained model is copied back into the task's output folder (without checkpoints).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from debiaskd.core.config import StudyConfig
from debiaskd.core.errors import DebiaskdError
from debiaskd.runtime import node, trainjob

#: written into a copied folder once the copy is whole (a copy cut short by a preemption is redone)
COPIED = ".debiaskd-copied"
#: the MLflow variables a TrainJob node reads from the cluster's Secret (the tracking server and its login)
MLFLOW_KEYS = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
#: written into a task's work folder once its model is trained (a retry after that only evaluates)
TRAINED = "trained.json"


class TrainJobSettings(BaseModel):
    """One role's TrainJob: ``nodes`` pods of ``gpus_per_node`` processes each, on ``image``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    nodes: int = Field(1, ge=1)
    gpus_per_node: int = Field(0, ge=0)
    accelerator: str = "nvidia.com/gpu"
    image: str
    runtime: str = "debiaskd-torch"
    runtime_kind: str = "TrainingRuntime"
    namespace: str | None = None
    cpu: str = "8"
    memory: str = "32G"
    poll_seconds: float = Field(15.0, gt=0)
    #: the Secret whose MLflow variables the nodes get (their system metrics go to the variant's run)
    mlflow_secret: str | None = None
    mlflow_keys: tuple[str, ...] = ()


class ClusterLaunch(BaseModel):
    """How a training task trains on a cluster: where (``work_root``, on shared storage) and, for more
    than one node or GPU, as what TrainJob."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    work_root: str
    trainjob: TrainJobSettings | None = None

    @classmethod
    def of_config(cls, cfg: StudyConfig, role: str) -> ClusterLaunch:
        """The launch of ``role``'s ("teacher" or "student") training tasks under ``cfg.cluster``."""
        c = cfg.cluster
        root = f"{c.pvc_mount.rstrip('/')}/{c.work_dir.strip('/')}"
        if not c.uses_trainjob(role):
            return cls(work_root=root)
        launch = c.launch(role)
        gpus = c.gpus_per_node(role)
        return cls(work_root=root, trainjob=TrainJobSettings(
            nodes=launch.nodes, gpus_per_node=gpus, accelerator=c.gpu_accelerator,
            image=c.gpu_image if gpus else c.image, runtime=c.trainer_runtime, runtime_kind=c.trainer_runtime_kind,
            namespace=c.namespace, cpu=launch.cpu, memory=launch.memory, poll_seconds=c.trainjob_poll_seconds,
            mlflow_secret=c.mlflow_secret, mlflow_keys=MLFLOW_KEYS))

    def describe(self) -> str:
        """How the task trains, in a few words (the task's display name says it)."""
        if self.trainjob is None:
            return "in its pod"
        t = self.trainjob
        per_node = f"{t.gpus_per_node} GPU{'s' if t.gpus_per_node != 1 else ''}" if t.gpus_per_node else "1 CPU process"
        return f"TrainJob: {t.nodes} node{'s' if t.nodes != 1 else ''} x {per_node}"


def task_key(cfg: StudyConfig, variant: str, seed: int, content_hash: str, *inputs: Path | None) -> str:
    """What the task trains, as a hash: the config (without process counts), the variant, the seed, the
    data set's content and the ``result.json`` of each input model folder (a retrained teacher is
    another key)."""
    parts: list[Any] = [cfg.config_hash(), variant, int(seed), content_hash]
    for folder in inputs:
        result = Path(folder) / "result.json" if folder is not None else None
        parts.append(result.read_text(encoding="utf-8") if result is not None and result.is_file() else None)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def work_dir(launch: ClusterLaunch, variant: str, seed: int, key: str) -> Path:
    return Path(launch.work_root) / f"{variant}-seed{seed}-{key}"


def copy_once(source: Path, target: Path) -> Path:
    """Copy folder ``source`` to ``target`` unless a whole copy is there already; returns ``target``."""
    if (target / COPIED).is_file():
        return target
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    (target / COPIED).write_text(str(source), encoding="utf-8")
    return target


def copy_model_back(trained: Path, out: Path, model_dir: Path) -> Path:
    """Copy the trained model folder (``trained``, inside ``out``) into the task's ``model_dir`` at the
    same place relative to it, without checkpoints; returns the copy."""
    # the checkpoint folder's name: the training loop imports torch, loaded only where a job trains
    from debiaskd.training.loop import CHECKPOINT_DIR

    relative = trained.relative_to(out) if trained.is_relative_to(out) else Path("model")
    target = Path(model_dir) / relative
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(trained, target, ignore=shutil.ignore_patterns(CHECKPOINT_DIR, COPIED))
    return target


def trainjob_command(spec_file: Path, run_id: str | None = None) -> list[str]:
    """What every node of the TrainJob runs: torchrun (nodes, processes, rank and rendezvous from the
    ``PET_*`` variables the runtime's torch policy sets) on the DDP branch's entry point, under
    :mod:`debiaskd.runtime.node` (the node's system metrics, GPUs included, into MLflow run ``run_id``)."""
    # the entry point's module name: importing debiaskd.training.launch loads torch, only where a job trains
    from debiaskd.training.launch import MODULE

    wrapper = ["python", "-m", node.MODULE, *(["--run-id", run_id] if run_id else []), "--"]
    return [*wrapper, "python", "-m", "torch.distributed.run", "-m", MODULE, "--spec", str(spec_file)]


def train_on_cluster(launch: ClusterLaunch, spec: Any, cfg: StudyConfig, splits: dict[str, Any], seed: int,
                     content_hash: str, dataset_dir: Path, model_dir: Path, *, teacher_dir: Path | None = None,
                     reference_dir: Path | None = None, progress: bool = False, client: Any = None,
                     run_id: str | None = None) -> Any:
    """Train variant ``spec`` as :func:`debiaskd.training.variant.train_variant_model` would, in its folder on
    shared storage (resuming its checkpoints), in this pod or as a TrainJob; the model is copied into
    ``model_dir``. Returns the :class:`~debiaskd.training.loop.TrainResult` (its ``model_dir`` the copy).
    ``client``: a :class:`~debiaskd.runtime.trainjob.TrainJobClient` (default: the cluster's); ``run_id``:
    the variant's MLflow run, where the TrainJob's nodes log their system metrics."""
    # torch and the training stack: loaded only where a job trains
    from debiaskd.training.launch import ERROR_FILE, RESULT_FILE, SPEC_FILE, train_in_processes
    from debiaskd.training.loop import TrainResult
    from debiaskd.training.variant import train_variant_model

    key = task_key(cfg, spec.name, seed, content_hash, teacher_dir, reference_dir)
    work = work_dir(launch, spec.name, seed, key)
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    trained = work / TRAINED
    done = json.loads(trained.read_text(encoding="utf-8")) if trained.is_file() else None
    if done is not None and Path(done["model_dir"]).is_dir():  # an earlier attempt trained it, then stopped
        print(f"{spec.name} (seed {seed}) was trained by an earlier attempt of this task: {done['model_dir']}",
              file=sys.stderr, flush=True)
    elif launch.trainjob is None:
        print(f"training {spec.name} (seed {seed}) in this pod, in {work} (checkpoints resume from there)",
              file=sys.stderr, flush=True)
        processes = cfg.train_config(spec.role).processes
        if processes > 1:
            result = train_in_processes(processes, spec.name, cfg, seed, dataset_dir, out, teacher_dir=teacher_dir,
                                        reference_dir=reference_dir, progress=progress)
        else:
            result = train_variant_model(spec, cfg, splits, seed, out, teacher_dir=teacher_dir,
                                         reference_dir=reference_dir, progress=progress)
        done = {"model_dir": str(result.model_dir), "history": result.history, "best_epoch": result.best_epoch,
                "seconds": result.seconds, "examples_per_second": result.examples_per_second}
    else:
        print(f"training {spec.name} (seed {seed}) as a {launch.describe()}, in {work} (checkpoints resume from "
              "there)", file=sys.stderr, flush=True)
        done = _train_as_trainjob(launch.trainjob, spec.name, cfg, seed, key, work, out, dataset_dir, teacher_dir,
                                  reference_dir, progress, client, (SPEC_FILE, RESULT_FILE, ERROR_FILE), run_id)
    trained.write_text(json.dumps(done, default=str), encoding="utf-8")
    copied = copy_model_back(Path(done["model_dir"]), out, model_dir)
    return TrainResult(copied, done["history"], int(done["best_epoch"]), float(done["seconds"]),
                       float(done["examples_per_second"]))


def _train_as_trainjob(settings: TrainJobSettings, variant: str, cfg: StudyConfig, seed: int, key: str, work: Path,
                       out: Path, dataset_dir: Path, teacher_dir: Path | None, reference_dir: Path | None,
                       progress: bool, client: Any, files: tuple[str, str, str],
                       run_id: str | None) -> dict[str, Any]:
    """Inputs onto shared storage, the spec, the TrainJob followed to its end; returns rank 0's result."""
    spec_name, result_name, error_name = files
    shared_data = copy_once(Path(dataset_dir), work / "dataset")
    shared_teacher = copy_once(teacher_dir.parent, work / "teacher") / teacher_dir.name if teacher_dir else None
    shared_reference = (copy_once(reference_dir.parent, work / "reference") / reference_dir.name
                        if reference_dir else None)
    launch_dir = work / "launch"
    launch_dir.mkdir(parents=True, exist_ok=True)
    result_file, error_file, spec_file = launch_dir / result_name, launch_dir / error_name, launch_dir / spec_name
    error_file.unlink(missing_ok=True)
    body = json.dumps({
        "variant": variant, "config": cfg.to_dict(), "seed": seed, "dataset_dir": str(shared_data),
        "out_dir": str(out), "teacher_dir": str(shared_teacher) if shared_teacher else None,
        "reference_dir": str(shared_reference) if shared_reference else None, "progress": progress,
        "result": str(result_file), "error": str(error_file),
    }, indent=2)
    tmp = spec_file.with_name(f"{spec_file.name}.tmp{os.getpid()}")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, spec_file)
    client = client or trainjob.cluster_client(settings.namespace, log=lambda line: print(line, flush=True))
    request = trainjob.TrainJobRequest(
        name=trainjob.trainjob_name("debiaskd", variant, f"s{seed}", key[:12]), namespace=client.namespace,
        image=settings.image, command=trainjob_command(spec_file, run_id), nodes=settings.nodes,
        gpus_per_node=settings.gpus_per_node, accelerator=settings.accelerator, cpu=settings.cpu,
        memory=settings.memory, runtime=settings.runtime, runtime_kind=settings.runtime_kind,
        env={"PYTHONUNBUFFERED": "1"},
        secret_env={k: (settings.mlflow_secret, k) for k in settings.mlflow_keys} if settings.mlflow_secret else {},
        labels={"debiaskd/variant": variant.replace("_", "-"), "debiaskd/seed": str(seed)})
    try:
        client.run(trainjob.trainjob_body(request), poll_seconds=settings.poll_seconds)
    except trainjob.TrainJobFailed:
        if error_file.is_file():  # the ranks refused the input: the user's error, exit 2
            err = json.loads(error_file.read_text(encoding="utf-8"))
            raise DebiaskdError(err["message"], file=err.get("file"), rule=err.get("rule"),
                                examples=err.get("examples")) from None
        raise
    if not result_file.is_file():
        raise trainjob.TrainJobFailed(f"TrainJob {request.name} completed but wrote no result ({result_file})")
    return json.loads(result_file.read_text(encoding="utf-8"))
