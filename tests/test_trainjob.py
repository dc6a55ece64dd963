"""Kubeflow Trainer TrainJobs from a training task, against a fake Kubernetes API (no cluster).

:class:`FakeKubernetes` stands in for the official client's ``CustomObjectsApi`` and ``CoreV1Api`` (the
same method names and arguments, errors with an HTTP ``status`` like ``ApiException``, pods as the
client's own ``V1Pod`` models): a created TrainJob's pods appear, their logs grow with every poll, and it
ends ``Complete`` or ``Failed`` after a given number of polls. The launcher's real code runs on it:
the body it builds, take-over of an earlier attempt's TrainJob, waiting on its conditions, following
the first node's log, failing with the failed pods' last lines. The end-to-end tests then train a tiny
model through :func:`debiaskd.jobs.cluster_train.train_on_cluster`, the fake "TrainJob" running the very
command every node would (``debiaskd.training.launch --spec FILE``) in this process.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from kubernetes.client import V1ObjectMeta, V1Pod, V1PodStatus

from debiaskd.core.config import load_config
from debiaskd.jobs.cluster_train import ClusterLaunch, TrainJobSettings, task_key
from debiaskd.runtime import trainjob
from debiaskd.runtime.trainjob import TrainJobClient, TrainJobFailed, TrainJobRequest, trainjob_body, trainjob_name

NAMESPACE = "debiaskd"


class ApiError(Exception):
    """What the client raises (``kubernetes.client.ApiException`` carries the HTTP status the same way)."""

    def __init__(self, status: int) -> None:
        super().__init__(f"({status})")
        self.status = status


class FakeKubernetes:
    """``CustomObjectsApi`` + ``CoreV1Api`` of one namespace in which TrainJobs run by script."""

    def __init__(self, outcome: str = "Complete", polls: int = 3, failing_node: int = 1, lines_per_poll: int = 2):
        self.outcome, self.polls, self.failing_node, self.lines_per_poll = outcome, polls, failing_node, lines_per_poll
        self.objects: dict[str, dict] = {}
        self.ticks: dict[str, int] = {}
        self.created: list[dict] = []
        self.deleted: list[str] = []
        self.selectors: list[str] = []

    # -- CustomObjectsApi
    def _check(self, group, version, namespace, plural):
        assert (group, version, namespace, plural) == ("trainer.kubeflow.org", "v1alpha1", NAMESPACE, "trainjobs")

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        self._check(group, version, namespace, plural)
        name = body["metadata"]["name"]
        if name in self.objects:
            raise ApiError(409)
        self.objects[name], self.ticks[name] = copy.deepcopy(body), 0
        self.created.append(copy.deepcopy(body))
        return copy.deepcopy(body)

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        self._check(group, version, namespace, plural)
        if name not in self.objects:
            raise ApiError(404)
        self.ticks[name] += 1
        obj = self.objects[name]
        if self.ticks[name] >= self.polls and not obj.get("status"):
            reason = {"Complete": "JobSetCompleted", "Failed": "JobSetFailed"}[self.outcome]
            obj["status"] = {"conditions": [
                {"type": "Created", "status": "True", "reason": "JobSetCreated"},
                {"type": self.outcome, "status": "True", "reason": reason,
                 "message": "jobset failed: node-1 exited 1" if self.outcome == "Failed" else "done"}]}
        return copy.deepcopy(obj)

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, propagation_policy=None):
        self._check(group, version, namespace, plural)
        assert propagation_policy == "Foreground"
        if name not in self.objects:
            raise ApiError(404)
        del self.objects[name]
        self.deleted.append(name)

    # -- CoreV1Api
    def _nodes(self, name: str) -> int:
        return self.objects[name]["spec"]["trainer"]["numNodes"] if name in self.objects else 0

    def list_namespaced_pod(self, namespace, label_selector):
        assert namespace == NAMESPACE
        self.selectors.append(label_selector)
        labels = dict(part.split("=", 1) for part in label_selector.split(","))
        name = labels[trainjob.JOBSET_LABEL]
        assert labels[trainjob.REPLICATED_JOB_LABEL] == "node"
        finished = self.ticks.get(name, 0) >= self.polls
        items = []
        for index in reversed(range(self._nodes(name))):  # listed in no particular order
            phase = "Running"
            if finished:
                phase = "Failed" if self.outcome == "Failed" and index == self.failing_node else "Succeeded"
            items.append(V1Pod(metadata=V1ObjectMeta(name=f"{name}-node-0-{index}-x7k2p", labels={
                trainjob.JOBSET_LABEL: name, trainjob.REPLICATED_JOB_LABEL: "node", trainjob.INDEX_LABEL: str(index)}),
                status=V1PodStatus(phase=phase)))
        return SimpleNamespace(items=items)

    def read_namespaced_pod_log(self, name, namespace, container=None, tail_lines=None):
        assert namespace == NAMESPACE and container == "node"
        job, index = re.match(r"(.+)-node-0-(\d+)-x7k2p$", name).groups()
        ticks = self.ticks.get(job, 0)
        if ticks <= 1:
            raise ApiError(400)  # ContainerCreating: no log yet
        lines = [f"node {index} line {i}" for i in range((ticks - 1) * self.lines_per_poll)]
        if self.outcome == "Failed" and int(index) == self.failing_node and ticks >= self.polls:
            lines.append("RuntimeError: CUDA out of memory")
        if tail_lines is not None:
            lines = lines[-tail_lines:]
        return "".join(f"{line}\n" for line in lines)


def _client(fake: FakeKubernetes, printed: list[str]) -> TrainJobClient:
    return TrainJobClient(fake, fake, NAMESPACE, log=printed.append, sleep=lambda s: None)


def _request(**changes) -> TrainJobRequest:
    fields = {"name": "debiaskd-teacher-erm-s0-0123456789ab", "namespace": NAMESPACE,
              "image": "ghcr.io/debiaskd/debiaskd:0.1.0-cuda", "command": ["python", "-m", "x", "--spec", "/s.json"],
              "nodes": 2, "gpus_per_node": 4}
    return TrainJobRequest(**{**fields, **changes})


# --------------------------------------------------------------------------- the body
def test_the_body_asks_for_the_nodes_and_gpus_of_the_request():
    body = trainjob_body(_request(env={"PYTHONUNBUFFERED": "1"}, labels={"debiaskd/seed": "0"}))
    assert body["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and body["kind"] == "TrainJob"
    assert body["metadata"]["namespace"] == NAMESPACE
    assert body["metadata"]["labels"] == {"app.kubernetes.io/part-of": "debiaskd", "debiaskd/seed": "0"}
    assert body["spec"]["runtimeRef"] == {"name": "debiaskd-torch", "apiGroup": "trainer.kubeflow.org",
                                          "kind": "TrainingRuntime"}
    trainer = body["spec"]["trainer"]
    assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == 4
    assert trainer["resourcesPerNode"] == {"requests": {"cpu": "8", "memory": "32G"},
                                           "limits": {"cpu": "8", "memory": "32G", "nvidia.com/gpu": "4"}}
    assert trainer["command"] == ["python", "-m", "x", "--spec", "/s.json"]
    assert trainer["env"] == [{"name": "PYTHONUNBUFFERED", "value": "1"}]
    cpu = trainjob_body(_request(gpus_per_node=0, runtime="torch-distributed", runtime_kind="ClusterTrainingRuntime"))
    assert "nvidia.com/gpu" not in cpu["spec"]["trainer"]["resourcesPerNode"]["limits"]
    assert cpu["spec"]["trainer"]["numProcPerNode"] == 1  # one process on a CPU node
    assert cpu["spec"]["runtimeRef"]["kind"] == "ClusterTrainingRuntime"


@pytest.mark.parametrize("parts", [
    ("debiaskd", "teacher_erm", "s0", "0123456789ab"),
    ("debiaskd", "student_kd_teacher_init" * 5, "s4294967295", "0123456789ab"),
    ("7up", "A__B", "deadbeef"),
    ("deadbeef",),
])
def test_trainjob_names_are_rfc_1035_labels_that_keep_the_key(parts):
    name = trainjob_name(*parts)
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63, name
    assert name.endswith(parts[-1]), name


# ------------------------------------------------------------------- following a TrainJob
def test_a_trainjob_is_created_followed_and_completes():
    fake, printed = FakeKubernetes(polls=4), []
    obj = _client(fake, printed).run(trainjob_body(_request()), poll_seconds=0)
    assert trainjob.condition(obj, "Complete")
    assert len(fake.created) == 1 and fake.created[0]["spec"]["trainer"]["numNodes"] == 2
    node0 = [line for line in printed if line.startswith("node ")]
    assert node0 == [f"node 0 line {i}" for i in range(6)]  # the first node's log, each line once, in order
    assert printed[0].startswith("created TrainJob debiaskd/debiaskd-teacher-erm-s0-0123456789ab: 2 node(s) x 4")
    assert printed[-1].endswith("completed")
    assert all(s == "jobset.sigs.k8s.io/jobset-name=debiaskd-teacher-erm-s0-0123456789ab,"
                    "jobset.sigs.k8s.io/replicatedjob-name=node" for s in fake.selectors)


def test_a_failed_trainjob_raises_with_the_failed_pods_last_lines():
    fake, printed = FakeKubernetes(outcome="Failed", polls=3), []
    with pytest.raises(TrainJobFailed) as info:
        _client(fake, printed).run(trainjob_body(_request()), poll_seconds=0)
    message = str(info.value)
    assert "failed (JobSetFailed): jobset failed: node-1 exited 1" in message
    assert "last lines of debiaskd-teacher-erm-s0-0123456789ab-node-0-1-x7k2p" in message
    assert message.rstrip().endswith("RuntimeError: CUDA out of memory")
    assert "node-0-0-" not in message  # only the pod that failed


def test_a_retried_task_takes_over_its_trainjob():
    body = trainjob_body(_request())
    name = body["metadata"]["name"]
    # still running: followed, not created again
    fake, printed = FakeKubernetes(polls=3), []
    fake.create_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", NAMESPACE, "trainjobs", body)
    assert _client(fake, printed).submit(body) == "running" and len(fake.created) == 1
    # failed: deleted, then created again (training resumes from its checkpoints)
    fake, printed = FakeKubernetes(outcome="Failed", polls=1), []
    fake.create_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", NAMESPACE, "trainjobs", body)
    fake.polls = 99
    fake.get_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", NAMESPACE, "trainjobs", name)
    fake.objects[name]["status"] = {"conditions": [{"type": "Failed", "status": "True", "reason": "JobSetFailed"}]}
    assert _client(fake, printed).submit(body) == "created"
    assert fake.deleted == [name] and len(fake.created) == 2
    # complete: its result is used, nothing is created
    fake, printed = FakeKubernetes(polls=1), []
    fake.create_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", NAMESPACE, "trainjobs", body)
    fake.get_namespaced_custom_object("trainer.kubeflow.org", "v1alpha1", NAMESPACE, "trainjobs", name)
    obj = _client(fake, printed).run(body, poll_seconds=0)
    assert trainjob.condition(obj, "Complete") and len(fake.created) == 1 and not fake.deleted


def test_waiting_gives_up_after_its_timeout_and_when_the_trainjob_is_deleted():
    fake, printed = FakeKubernetes(polls=10**6), []
    client = _client(fake, printed)
    client.submit(trainjob_body(_request()))
    now = iter(range(0, 10**6, 30))
    with pytest.raises(TrainJobFailed, match="did not finish within 100 s"):
        client.wait("debiaskd-teacher-erm-s0-0123456789ab", poll_seconds=0, timeout=100, clock=lambda: next(now))
    fake.objects.clear()
    with pytest.raises(TrainJobFailed, match="disappeared"):
        client.wait("debiaskd-teacher-erm-s0-0123456789ab", poll_seconds=0)


def test_other_api_errors_propagate():
    class Forbidden(FakeKubernetes):
        def get_namespaced_custom_object(self, *args):
            raise ApiError(403)

    with pytest.raises(ApiError):
        _client(Forbidden(), []).submit(trainjob_body(_request()))


# --------------------------------------------------------------------------- the launch settings
def test_the_paper_teachers_launch_as_trainjobs_and_the_students_in_their_pods():
    cfg = load_config("paper")
    teacher, student = ClusterLaunch.of_config(cfg, "teacher"), ClusterLaunch.of_config(cfg, "student")
    assert teacher.trainjob == TrainJobSettings(
        nodes=2, gpus_per_node=2, image=cfg.cluster.gpu_image, accelerator="nvidia.com/gpu",
        runtime="debiaskd-torch", runtime_kind="TrainingRuntime", namespace=None, cpu="8", memory="32G",
        mlflow_secret="debiaskd-mlflow", mlflow_keys=("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME",
                                                     "MLFLOW_TRACKING_PASSWORD"))
    assert teacher.describe() == "TrainJob: 2 nodes x 2 GPUs"
    assert student.trainjob is None and student.work_root == teacher.work_root == "/mnt/debiaskd/work"
    assert cfg.teacher_train.batch_size * cfg.teacher_train.grad_accum == 32
    assert cfg.teacher_train.grad_accum % (2 * 2) == 0  # each of the 4 processes gets a batch every step
    one_gpu_many = load_config("default", overrides=["cluster.gpu_per_training_task=4"])
    assert ClusterLaunch.of_config(one_gpu_many, "student").trainjob.gpus_per_node == 4  # > 1 GPU: a TrainJob
    cpu_nodes = load_config("default", overrides=["cluster.student_launch.nodes=3"])
    launch = ClusterLaunch.of_config(cpu_nodes, "student")
    assert launch.trainjob.image == cpu_nodes.cluster.image and launch.describe() == "TrainJob: 3 nodes x 1 CPU process"


def test_bad_launch_settings_are_refused_with_the_key():
    from debiaskd.core.errors import DebiaskdError

    with pytest.raises(DebiaskdError, match=r"cluster\.teacher_launch\.nodes"):
        load_config("paper", overrides=["cluster.teacher_launch.nodes=0"])
    with pytest.raises(DebiaskdError, match=r"cluster\.trainer_runtime_kind"):
        load_config("paper", overrides=["cluster.trainer_runtime_kind=PyTorchJob"])


def test_the_task_key_changes_with_what_is_trained(tmp_path):
    cfg = load_config("smoke")
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "result.json").write_text('{"run_id": "a"}')
    key = task_key(cfg, "student_kd", 0, "hash", teacher, None)
    assert key == task_key(cfg, "student_kd", 0, "hash", teacher, None)
    assert key == task_key(load_config("smoke", overrides=["student_train.processes=2"]), "student_kd", 0, "hash",
                           teacher, None)  # another process count resumes the same checkpoints
    other_lr = load_config("smoke", overrides=["student_train.lr=0.1"])
    others = {task_key(cfg, "student_kd", 1, "hash", teacher, None),
              task_key(cfg, "student_erm", 0, "hash", teacher, None),
              task_key(cfg, "student_kd", 0, "other", teacher, None),
              task_key(other_lr, "student_kd", 0, "hash", teacher, None)}
    (teacher / "result.json").write_text('{"run_id": "b"}')  # the teacher was trained again
    others.add(task_key(cfg, "student_kd", 0, "hash", teacher, None))
    assert key not in others and len(others) == 5


# ------------------------------------------------------------------ end to end, a tiny model
OVERRIDES = ["nli_data.n_train=64", "nli_data.n_validation=20", "teacher_train.checkpoint_every=2",
             "teacher_train.device=cpu", "teacher_train.num_threads=1", "student_train.device=cpu",
             "student_train.num_threads=1"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """The smoke config (tiny models, a few dozen rows) and an augmented data set folder."""
    from debiaskd.data.build import build_dataset
    from debiaskd.data.store import read_dataset, write_dataset
    from debiaskd.tasks import get_task

    root = tmp_path_factory.mktemp("trainjob")
    cfg = load_config("smoke", overrides=OVERRIDES)
    raw = build_dataset(cfg, root / "raw", "nli")
    splits, _ = get_task("nli").augment(cfg, dict(read_dataset(raw).splits))
    write_dataset(root / "data", "nli", splits)
    return cfg, root / "data", root


class InProcessTrainJobs:
    """A :class:`TrainJobClient` stand-in whose TrainJobs run, in this process, the command every node
    would run under torchrun (one node, one process): ``python -m debiaskd.training.launch --spec FILE``."""

    namespace = NAMESPACE

    def __init__(self) -> None:
        self.bodies: list[dict] = []

    def run(self, body, *, poll_seconds):
        from debiaskd.training import launch

        self.bodies.append(body)
        command = body["spec"]["trainer"]["command"]
        assert command[:3] == ["python", "-m", "debiaskd.runtime.node"]  # the node's system metrics around it
        command = command[command.index("--") + 1:]
        assert command[:5] == ["python", "-m", "torch.distributed.run", "-m", "debiaskd.training.launch"]
        if launch.main(command[5:]) != 0:
            raise TrainJobFailed(f"TrainJob {body['metadata']['name']} failed (JobSetFailed)")
        return body


def _launch(root: Path, trainjob: bool) -> ClusterLaunch:
    settings = TrainJobSettings(nodes=2, gpus_per_node=2, image="img:1") if trainjob else None
    return ClusterLaunch(work_root=str(root / "shared" / "work"), trainjob=settings)


def test_a_teacher_trains_as_a_trainjob_on_shared_storage(study, capsys):
    from debiaskd.core.study import variant_specs
    from debiaskd.data.store import read_dataset
    from debiaskd.jobs.cluster_train import train_on_cluster
    from debiaskd.training.loop import CHECKPOINT_DIR

    cfg, data, root = study
    ds = read_dataset(data)
    jobs, model_dir = InProcessTrainJobs(), root / "task-a" / "model"
    result = train_on_cluster(_launch(root, True), variant_specs(cfg)["teacher_erm"], cfg, ds.splits, 0,
                              ds.content_hash, data, model_dir, client=jobs, run_id="run-7")
    body = jobs.bodies[0]
    assert body["spec"]["trainer"]["command"][3:6] == ["--run-id", "run-7", "--"]
    assert body["spec"]["trainer"]["numNodes"] == 2 and body["spec"]["trainer"]["numProcPerNode"] == 2
    assert body["spec"]["trainer"]["image"] == "img:1"
    spec = json.loads(Path(body["spec"]["trainer"]["command"][-1]).read_text())
    shared = root / "shared" / "work"
    for key in ("dataset_dir", "out_dir", "result"):  # everything the nodes read or write is on the shared volume
        assert Path(spec[key]).is_relative_to(shared), key
    assert spec["variant"] == "teacher_erm" and spec["seed"] == 0 and spec["teacher_dir"] is None
    assert Path(result.model_dir) == model_dir / "model" and (model_dir / "model" / "model.safetensors").is_file()
    assert not (model_dir / "model" / CHECKPOINT_DIR).exists() and result.history
    work = Path(spec["out_dir"]).parent
    assert work.name.startswith("teacher_erm-seed0-") and (work / "trained.json").is_file()
    # a retry of the task (its pod preempted after training) finds the model and creates no TrainJob
    again = train_on_cluster(_launch(root, True), variant_specs(cfg)["teacher_erm"], cfg, ds.splits, 0,
                             ds.content_hash, data, root / "task-b" / "model", client=jobs)
    assert len(jobs.bodies) == 1 and again.history == result.history
    assert "trained by an earlier attempt" in capsys.readouterr().err


def test_a_student_trainjob_reads_its_teacher_from_shared_storage(study):
    from debiaskd.core.study import variant_specs
    from debiaskd.data.store import read_dataset
    from debiaskd.jobs.base import write_json
    from debiaskd.jobs.cluster_train import train_on_cluster
    from debiaskd.training.variant import share_logits, train_variant_model

    cfg, data, root = study
    ds = read_dataset(data)
    specs = variant_specs(cfg)
    teacher_task = root / "teacher-task"
    trained = train_variant_model(specs["teacher_debiased"], cfg, ds.splits, 0, teacher_task, progress=False)
    share_logits(specs["teacher_debiased"], specs, cfg, ds.splits, trained.model_dir)
    write_json(teacher_task / "result.json", {"model_dir": str(trained.model_dir)})
    jobs = InProcessTrainJobs()
    result = train_on_cluster(_launch(root, True), specs["student_kd"], cfg, ds.splits, 0, ds.content_hash, data,
                              root / "student-task" / "model", teacher_dir=Path(trained.model_dir), client=jobs)
    spec = json.loads(Path(jobs.bodies[0]["spec"]["trainer"]["command"][-1]).read_text())
    assert Path(spec["teacher_dir"]).is_relative_to(root / "shared" / "work")  # a copy every node can read
    assert Path(spec["teacher_dir"]).name == Path(trained.model_dir).name
    assert (Path(spec["teacher_dir"]).parent / "teacher_cache").is_dir()  # with the teacher's cached logits
    assert (Path(result.model_dir) / "model.safetensors").is_file()


def test_the_ranks_user_error_comes_back_as_a_debiaskd_error(study):
    from debiaskd.core.errors import DebiaskdError
    from debiaskd.core.study import variant_specs
    from debiaskd.data.store import read_dataset
    from debiaskd.jobs.cluster_train import train_on_cluster

    cfg, data, root = study
    ds = read_dataset(data)
    only_debiased = load_config("smoke", overrides=["variants=[teacher_debiased]"])
    with pytest.raises(DebiaskdError, match="unknown or unselected variant 'teacher_erm'"):
        train_on_cluster(_launch(root, True), variant_specs(cfg)["teacher_erm"], only_debiased, ds.splits, 0,
                         ds.content_hash, data, root / "task-err" / "model", client=InProcessTrainJobs())


@pytest.mark.slow
def test_a_task_in_its_pod_trains_on_shared_storage_and_a_retry_resumes_there(study, capsys, monkeypatch):
    """A preempted attempt (here: 2 processes under torchrun, rank 1 killed after step 3) leaves its step-2
    checkpoint in the task's folder on the shared volume; the retry (in another pod: another output
    folder, and 1 process) resumes from it and copies the model into its own output."""
    from debiaskd.core.study import variant_specs
    from debiaskd.data.store import read_dataset
    from debiaskd.jobs.cluster_train import train_on_cluster, work_dir
    from debiaskd.training.distributed import CRASH_ENV
    from debiaskd.training.launch import DistributedTrainingFailed
    from debiaskd.training.loop import CHECKPOINT_DIR, CHECKPOINT_FILE

    _, data, root = study
    ds = read_dataset(data)
    steps = [*OVERRIDES, "teacher_train.batch_size=8", "teacher_train.grad_accum=2"]  # 64 rows: 4 steps
    two = load_config("smoke", overrides=[*steps, "teacher_train.processes=2"])
    one = load_config("smoke", overrides=steps)
    spec = variant_specs(one)["teacher_debiased"]
    launch = _launch(root, False)
    work = work_dir(launch, "teacher_debiased", 0, task_key(one, "teacher_debiased", 0, ds.content_hash, None, None))
    monkeypatch.setenv(CRASH_ENV, "1:3")
    with pytest.raises(DistributedTrainingFailed):
        train_on_cluster(launch, spec, two, ds.splits, 0, ds.content_hash, data, root / "pod-a" / "model")
    monkeypatch.delenv(CRASH_ENV)
    checkpoint = work / "out" / "model" / CHECKPOINT_DIR / CHECKPOINT_FILE
    assert checkpoint.is_file() and not (work / "trained.json").exists()
    capsys.readouterr()
    result = train_on_cluster(launch, spec, one, ds.splits, 0, ds.content_hash, data, root / "pod-b" / "model",
                              progress=True)
    assert "resuming teacher_debiased from step 2" in capsys.readouterr().err
    assert Path(result.model_dir) == root / "pod-b" / "model" / "model"
    assert (Path(result.model_dir) / "model.safetensors").is_file() and not checkpoint.exists()
    assert (work / "trained.json").is_file()


def test_the_training_job_takes_the_launch_the_component_passes(tmp_path):
    """The component hands ``json.loads(launch)`` to the ``train_variant`` job: it becomes a
    :class:`ClusterLaunch` (and stays None under the local runner); a malformed one is refused."""
    from pydantic import ValidationError

    from debiaskd.jobs.train import TrainJob
    from debiaskd.pipeline.study_pipeline import launch_json

    cfg = load_config("paper")
    fields = {"config": cfg.to_yaml(), "variant": "teacher_erm", "seed": 0, "dataset_dir": str(tmp_path),
              "model_dir": str(tmp_path / "m"), "eval_dir": str(tmp_path / "e")}
    job = TrainJob.model_validate({**fields, "launch": json.loads(launch_json(cfg, "teacher"))})
    assert job.launch == ClusterLaunch.of_config(cfg, "teacher") and job.launch.trainjob.nodes == 2
    assert TrainJob.model_validate({**fields, "launch": None}).launch is None
    with pytest.raises(ValidationError):
        TrainJob.model_validate({**fields, "launch": {"work_root": "/w", "trainjob": {"nodes": 0, "image": "i"}}})


def test_a_trainjob_node_runs_its_command_with_its_system_metrics(monkeypatch):
    """``debiaskd.runtime.node`` runs the training command and returns its exit code; with a run and a
    tracking server it samples the node's system metrics into the run as ``trainjob-node-<rank>``."""
    import sys

    from debiaskd.runtime import node
    from debiaskd.tracking import service

    entered = []

    class Monitor:
        def __init__(self, run_id, node_id=None):
            self.args = (run_id, node_id)

        def __enter__(self):
            entered.append(self.args)

        def __exit__(self, *exc):
            entered.append("finished")

    monkeypatch.setattr(service, "system_metrics", Monitor)
    monkeypatch.setenv("PET_NODE_RANK", "3")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert node.main(["--run-id", "run-7", "--", sys.executable, "-c", "import sys; sys.exit(5)"]) == 5
    assert entered == [("run-7", "trainjob-node-3"), "finished"]
    entered.clear()
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # no tracking server (the Secret is optional): no monitor
    assert node.main(["--run-id", "run-7", "--", sys.executable, "-c", "pass"]) == 0
    assert node.main(["--", sys.executable, "-c", "pass"]) == 0 and entered == []
    with pytest.raises(SystemExit):
        node.main(["--run-id", "run-7"])


def test_trainjob_nodes_get_the_mlflow_variables_from_the_secret():
    cfg = load_config("paper")
    settings = ClusterLaunch.of_config(cfg, "teacher").trainjob
    assert settings.mlflow_secret == cfg.cluster.mlflow_secret
    body = trainjob_body(_request(secret_env={k: (settings.mlflow_secret, k) for k in settings.mlflow_keys}))
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in body["spec"]["trainer"]["env"] if "valueFrom" in e}
    assert set(refs) == {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
    assert all(r == {"name": "debiaskd-mlflow", "key": k, "optional": True} for k, r in refs.items())
