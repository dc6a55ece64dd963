"""The compiled Kubeflow IR: every component, GPU requests, secrets and volumes (golden file)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from debiaskd.core.config import load_config
from debiaskd.core.study import analysed
from debiaskd.pipeline import compile_pipeline

GOLDEN = Path(__file__).parent / "golden" / "pipeline_paper_nli.yaml"
COMPONENTS = {"start-study", "prepare-data", "validate-data", "augment-data", "train-model", "train-student",
              "collect-evaluations", "analyze-model", "summarize-study", "promote-champion"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> tuple[str, list[dict]]:
    path = tmp_path_factory.mktemp("ir") / "pipeline.yaml"
    compile_pipeline(load_config("paper"), str(path), platform=True)
    text = path.read_text()
    return text, list(yaml.safe_load_all(text))


def test_matches_golden_file(compiled):
    text, _ = compiled
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(text)
    assert GOLDEN.is_file(), "golden file missing: run with UPDATE_GOLDEN=1 once and review it"
    assert list(yaml.safe_load_all(GOLDEN.read_text())) == list(yaml.safe_load_all(text)), (
        "the compiled pipeline changed; review the diff and refresh with UPDATE_GOLDEN=1 pytest "
        "tests/test_pipeline_compile.py"
    )


def test_every_component_and_variant_is_wired(compiled):
    _, (spec, _) = compiled
    executors = spec["deploymentSpec"]["executors"]
    names = {"-".join(k.split("-")[1:]).rstrip("-0123456789") for k in executors}
    assert names >= COMPONENTS
    tasks = [t for comp in spec["components"].values() for t in comp.get("dag", {}).get("tasks", {}).values()]
    labels = {t["taskInfo"]["name"] for t in tasks}
    cfg = load_config("paper")
    for variant in cfg.variants:
        if variant.startswith("teacher"):
            assert f"train + evaluate {variant}" in labels
    # the students are the items of one ParallelFor fan-out (all at once on a cluster)
    fan_out = [t for t in tasks if "students-of" in str(t.get("parameterIterator", ""))
               or t["taskInfo"]["name"].startswith("students-of")]
    assert len(fan_out) == 1
    items = json.loads(fan_out[0]["parameterIterator"]["items"]["raw"])
    assert sorted(items) == sorted(v for v in cfg.variants if v.startswith("student"))
    # the analysed students are analysed inside the fan-out (a dsl.If on the training task's answer)
    assert {v for v in items if analysed(cfg, v) == "yes"} == {"student_kd", "student_kd_all"}
    assert "iteratorPolicy" not in fan_out[0]  # no parallelism limit on a cluster
    assert "robustness-gate-passed" in str(spec["components"])


def test_each_seed_prepares_validates_and_augments_its_own_data(compiled):
    """The data steps run inside the seeds loop and take the loop's seed: the seed replicates data
    sampling as well as training."""
    _, (spec, _) = compiled
    root = spec["root"]["dag"]["tasks"]
    study = spec["components"][root["exit-handler-1"]["componentRef"]["name"]]["dag"]["tasks"]
    assert not {"prepare-data", "validate-data", "augment-data"} & set(study)
    seeds_loop = spec["components"][study["for-loop-2"]["componentRef"]["name"]]["dag"]["tasks"]
    for name in ("prepare-data", "validate-data", "augment-data"):
        seed_input = seeds_loop[name]["inputs"]["parameters"]["seed"]
        assert seed_input["componentInputParameter"].startswith("pipelinechannel--seeds-loop-item"), name
    train = seeds_loop["train-model"]["inputs"]["artifacts"]["dataset"]["taskOutputArtifact"]
    assert train["producerTask"] == "augment-data"


def test_an_exit_handler_ends_the_study_run_whatever_happens(compiled):
    """The study runs inside a ``dsl.ExitHandler`` whose exit task ends the MLflow run (FINISHED or
    FAILED from the pipeline's final status) and returns the report; it and the task that starts the
    run are never taken from the cache on a cluster."""
    _, (spec, _) = compiled
    root = spec["root"]["dag"]["tasks"]
    handler = next(name for name in root if name.startswith("exit-handler"))
    end = root["end-study"]
    assert end["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    assert end["dependentTasks"] == [handler]
    assert not end["cachingOptions"].get("enableCache")
    assert "status" in spec["components"]["comp-end-study"]["inputDefinitions"]["parameters"]
    outputs = spec["root"]["dag"]["outputs"]["artifacts"]
    assert outputs["report"]["artifactSelectors"] == [{"outputArtifactKey": "report", "producerSubtask": "end-study"}]
    assert outputs["files"]["artifactSelectors"] == [{"outputArtifactKey": "files", "producerSubtask": "end-study"}]
    assert spec["root"]["outputDefinitions"]["artifacts"]["report"]["artifactType"]["schemaTitle"] == "system.HTML"
    guarded = spec["components"][root[handler]["componentRef"]["name"]]["dag"]["tasks"]
    assert {"start-study", "for-loop-2", "summarize-study"} <= set(guarded)
    assert not guarded["start-study"]["cachingOptions"].get("enableCache")
    seeds_loop = spec["components"][guarded["for-loop-2"]["componentRef"]["name"]]["dag"]["tasks"]
    assert seeds_loop["prepare-data"]["cachingOptions"]["enableCache"] is True


def test_training_tasks_request_gpus_on_the_cuda_image(compiled):
    _, (spec, platform) = compiled
    cfg = load_config("paper")
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for name, ex in spec["deploymentSpec"]["executors"].items():
        container = ex["container"]
        training = "train-model" in name or "train-student" in name
        accel = container.get("resources", {}).get("accelerator")
        if training:
            assert container["image"] == cfg.cluster.gpu_image
            assert accel["resourceType"] == "nvidia.com/gpu" and accel["resourceCount"] == "1"
            assert k8s[name]["tolerations"] and k8s[name]["nodeSelector"]
        else:
            assert container["image"] == cfg.cluster.image and accel is None
        secret = k8s[name]["secretAsEnv"][0]
        assert secret["secretName"] == cfg.cluster.mlflow_secret
        assert {e["envVar"] for e in secret["keyToEnv"]} >= {"MLFLOW_TRACKING_URI", "AWS_SECRET_ACCESS_KEY"}
        assert k8s[name]["pvcMount"][0]["mountPath"] == cfg.cluster.pvc_mount


def test_default_preset_compiles_without_gpu(tmp_path):
    path = tmp_path / "p.yaml"
    compile_pipeline(load_config("default"), str(path), platform=True)
    spec = next(yaml.safe_load_all(path.read_text()))
    assert all("accelerator" not in ex["container"].get("resources", {})
               for ex in spec["deploymentSpec"]["executors"].values())


def test_local_fan_out_trains_two_students_at_once_on_shared_cores(tmp_path):
    path = tmp_path / "local.yaml"
    compile_pipeline(load_config("default"), str(path), platform=False)
    spec = next(yaml.safe_load_all(path.read_text()))
    tasks = [t for comp in spec["components"].values() for t in comp.get("dag", {}).get("tasks", {}).values()]
    fan_out = [t for t in tasks if t["taskInfo"]["name"].startswith("students-of")]
    assert [t["iteratorPolicy"]["parallelismLimit"] for t in fan_out] == [2]
    students = [t for t in tasks if t["taskInfo"]["name"].startswith("train + evaluate a student")]
    assert students[0]["inputs"]["parameters"]["concurrent"]["runtimeValue"]["constant"] == 2


def test_student_groups_follow_the_selected_teachers():
    from debiaskd.pipeline.study_pipeline import student_groups

    groups = student_groups(load_config("default"))
    assert list(groups) == ["teacher_debiased"]
    order = [i["variant"] for i in groups["teacher_debiased"]]
    assert order[:3] == ["student_kd_all", "student_kd_iterative", "student_kd_aug"]  # longest first
    assert set(order[3:]) == {"student_erm", "student_debiased", "student_kd", "student_kd_debiased",
                              "student_kd_teacher_init"}
    alone = student_groups(load_config("smoke", overrides=["variants=[student_erm,student_debiased]"]))
    assert alone == {None: [{"variant": "student_erm", "analyze": "no"},
                            {"variant": "student_debiased", "analyze": "no"}]}
    no_analysis = student_groups(load_config("smoke", overrides=["variants=[student_kd]", "analysis.enabled=false"]))
    assert no_analysis == {"teacher_debiased": [{"variant": "student_kd", "analyze": "no"}]}


def test_cluster_tasks_retry_compute_and_never_cache_side_effects(compiled):
    """On a cluster a preempted training/analysis pod is retried with backoff; the tasks that create,
    register, promote or end MLflow state always run (a cached one would skip its side effect)."""
    _, (spec, _) = compiled
    cfg = load_config("paper")
    tasks = {}
    for comp in [spec["root"], *spec["components"].values()]:
        for name, task in comp.get("dag", {}).get("tasks", {}).items():
            tasks[name] = task
    for name, task in tasks.items():
        component = task["componentRef"]["name"].removeprefix("comp-").rstrip("-0123456789")
        if component in ("start-study", "summarize-study", "promote-champion", "end-study"):
            assert not task.get("cachingOptions", {}).get("enableCache"), name
        if component in ("prepare-data", "augment-data", "train-model", "train-student", "analyze-model",
                         "collect-evaluations"):
            policy = task["retryPolicy"]
            assert policy["maxRetryCount"] == cfg.cluster.retries and policy["backoffFactor"] == 2, name
            assert task["cachingOptions"]["enableCache"] is True, name
    assert {"train-model", "train-student", "summarize-study", "end-study"} <= {
        t["componentRef"]["name"].removeprefix("comp-").rstrip("-0123456789") for t in tasks.values()}


def _tasks(spec: dict) -> dict[str, dict]:
    return {name: task for comp in [spec["root"], *spec["components"].values()]
            for name, task in comp.get("dag", {}).get("tasks", {}).items()}


def _launch(task: dict) -> dict | None:
    value = task["inputs"]["parameters"].get("launch")
    return json.loads(value["runtimeValue"]["constant"]) if value else None


def test_the_paper_teachers_launch_trainjobs_with_the_configured_nodes_and_gpus(compiled):
    """Each teacher's training task carries its Kubeflow Trainer launch (nodes x GPUs per node, the
    CUDA image, the torch runtime) and its work folder on the shared volume; the students train in
    their own pods, on the shared volume too."""
    _, (spec, _) = compiled
    cfg = load_config("paper")
    tasks = _tasks(spec)
    teachers = [t for t in tasks.values() if t["taskInfo"]["name"].startswith("train + evaluate teacher")]
    assert len(teachers) == 2
    for task in teachers:
        launch = _launch(task)
        assert launch["work_root"] == f"{cfg.cluster.pvc_mount}/work"
        assert launch["trainjob"] == {
            "nodes": 2, "gpus_per_node": 2, "accelerator": "nvidia.com/gpu", "image": cfg.cluster.gpu_image,
            "runtime": "debiaskd-torch", "runtime_kind": "TrainingRuntime", "namespace": None, "cpu": "8",
            "memory": "32G", "poll_seconds": 15.0, "mlflow_secret": cfg.cluster.mlflow_secret,
            "mlflow_keys": ["MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"]}
    students = [t for t in tasks.values() if t["taskInfo"]["name"].startswith("train + evaluate a student")]
    assert [_launch(t) for t in students] == [{"work_root": f"{cfg.cluster.pvc_mount}/work", "trainjob": None}]


def test_nodes_and_gpus_come_from_the_config(tmp_path):
    path = tmp_path / "p.yaml"
    cfg = load_config("paper", overrides=["cluster.teacher_launch.nodes=8", "cluster.teacher_launch.gpus_per_node=4",
                                          "cluster.student_launch.gpus_per_node=2", "cluster.namespace=team-a",
                                          "cluster.trainer_runtime=torch-distributed",
                                          "cluster.trainer_runtime_kind=ClusterTrainingRuntime"])
    compile_pipeline(cfg, str(path), platform=True)
    tasks = _tasks(next(yaml.safe_load_all(path.read_text())))
    launches = {t["taskInfo"]["name"]: _launch(t)["trainjob"] for t in tasks.values()
                if t["taskInfo"]["name"].startswith("train + evaluate")}
    teacher = launches["train + evaluate teacher_erm"]
    assert (teacher["nodes"], teacher["gpus_per_node"], teacher["namespace"]) == (8, 4, "team-a")
    assert (teacher["runtime"], teacher["runtime_kind"]) == ("torch-distributed", "ClusterTrainingRuntime")
    student = launches["train + evaluate a student of teacher_debiased"]
    assert (student["nodes"], student["gpus_per_node"]) == (1, 2)  # 2 GPUs on one node: a TrainJob too


def test_the_local_runner_gets_no_launch(tmp_path):
    path = tmp_path / "local.yaml"
    compile_pipeline(load_config("paper"), str(path), platform=False)
    tasks = _tasks(next(yaml.safe_load_all(path.read_text())))
    training = [t for t in tasks.values() if t["taskInfo"]["name"].startswith("train + evaluate")]
    assert training and all(_launch(t) is None for t in training)
