"""The study as a Kubeflow pipeline: wiring only (which component feeds which).

per seed (``dsl.ParallelFor``; each seed draws its own data): prepare → validate → augment → teachers →
a ``dsl.ParallelFor`` fan-out over the students (two at a time under the local runner; each training
task evaluates its model, and the analysed students are analysed inside the fan-out) → collect →
summary + registration → ``dsl.If`` gate → promotion.
Cluster settings (images, GPU requests, node selectors, tolerations, the MLflow secret,
the cache volume) are applied by :func:`apply_platform` at compile time.
"""


import json
from typing import Any, List, NamedTuple  # noqa: UP035 (kfp needs typing.List for list parameters)

from kfp import compiler, dsl, kubernetes

from debiaskd.components import make_components
from debiaskd.core.config import StudyConfig
from debiaskd.core.study import analysis_pairs, variant_specs
from debiaskd.jobs.cluster_train import ClusterLaunch

MLFLOW_SECRET_KEYS = (
    "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL",
)


def pipeline_name(cfg: StudyConfig) -> str:
    return f"debiaskd-{cfg.task}-study"


#: components whose tasks change the world outside their outputs (MLflow runs, the registry, aliases):
#: on a cluster they always run, never taken from kfp's cache
SIDE_EFFECTS = ("start_study", "summarize_study", "promote_champion", "end_study")
#: components whose tasks only compute (prepare, augment, train, evaluate, analyse, read back): retried with
#: backoff when their pod fails (a training task resumes from its checkpoints on the shared volume)
RETRIED = ("prepare_data", "augment_data", "train_model", "train_student", "analyze_model", "collect_evaluations")


def launch_json(cfg: StudyConfig, role: str) -> str:
    """The ``launch`` input of a training task of ``role`` on a cluster (one line of JSON): its work folder
    on the shared volume and, for more than one node or GPU, its Kubeflow Trainer TrainJob (nodes, GPUs
    per node, image, runtime); see :class:`debiaskd.jobs.cluster_train.ClusterLaunch`."""
    return ClusterLaunch.of_config(cfg, role).model_dump_json()


def apply_platform(task: Any, cfg: StudyConfig, training: bool) -> None:
    """Kubernetes settings for one task (ignored, with kfp's warning, by the local runner)."""
    c = cfg.cluster
    task.set_cpu_request(c.cpu_request).set_memory_request(c.memory_request).set_memory_limit(c.memory_limit)
    component = task.component_spec.name.replace("-", "_")
    if component in SIDE_EFFECTS:
        task.set_caching_options(False)
    if component in RETRIED and c.retries:
        task.set_retry(num_retries=c.retries, backoff_duration=c.retry_backoff, backoff_factor=2.0)
    kubernetes.use_secret_as_env(task, secret_name=c.mlflow_secret,
                                 secret_key_to_env={k: k for k in MLFLOW_SECRET_KEYS})
    kubernetes.mount_pvc(task, pvc_name=c.pvc_name, mount_path=c.pvc_mount)
    if training and c.gpu_per_training_task > 0:
        task.set_accelerator_type(c.gpu_accelerator).set_accelerator_limit(c.gpu_per_training_task)
        for key, value in c.node_selector.items():
            kubernetes.add_node_selector(task, label_key=key, label_value=value)
        for tol in c.tolerations:
            kubernetes.add_toleration(task, key=tol.get("key"), operator=tol.get("operator", "Equal"),
                                      value=tol.get("value"), effect=tol.get("effect"))


def task_setup(cfg: StudyConfig, platform: bool):
    """The two wiring helpers every pipeline uses: ``setup(task, name, training)`` names a task and, for a
    cluster, applies the platform settings; ``launch(role)`` is a training task's launch input on a cluster
    (shared storage, TrainJobs), nothing locally."""

    def setup(task, name: str, training: bool = False):
        task.set_display_name(name)
        if platform:
            apply_platform(task, cfg, training)
        return task

    def launch(role: str) -> dict[str, str]:
        return {"launch": launch_json(cfg, role)} if platform else {}

    return setup, launch


def seed_data(comps: Any, setup: Any, config: Any, seed: Any, tracking_uri: Any, study: Any) -> Any:
    """One seed's data: prepare → validate (Great Expectations) → bias model and augmentation; the
    augmented dataset every training task of the seed reads."""
    prep = setup(comps.prepare_data(config=config, seed=seed), "prepare data")
    valid = setup(comps.validate_data(config=config, seed=seed, dataset=prep.outputs["dataset"],
                                      tracking_uri=tracking_uri, study=study),
                  "validate data (Great Expectations)")
    aug = setup(comps.augment_data(config=config, seed=seed, dataset=prep.outputs["dataset"]).after(valid),
                "bias model + bias-aware augmentation")
    return aug.outputs["augmented"]


def student_groups(cfg: StudyConfig) -> dict[str | None, list[dict[str, str]]]:
    """The students of each teacher, as the fan-out's items: ``{"variant", "analyze": "yes"|"no"}``.

    A student without KD joins the fan-out of the debiased teacher (or the first teacher) when
    the study has one: it only waits for it; with no teacher at all it is keyed ``None``.
    Students analysed against their teacher (:func:`debiaskd.core.study.analysis_pairs`) say so; the
    longest to train come first.
    """
    specs = variant_specs(cfg)
    teachers = [n for n, s in specs.items() if s.role == "teacher"]
    fallback = "teacher_debiased" if "teacher_debiased" in teachers else (teachers[0] if teachers else None)
    analysed = set(analysis_pairs(cfg)) if cfg.analysis.enabled else set()
    groups: dict[str | None, list[dict[str, str]]] = {}
    for name, spec in specs.items():
        if spec.role == "teacher":
            continue
        anchor = spec.teacher or fallback
        groups.setdefault(anchor, []).append(
            {"variant": name, "analyze": "yes" if (name, anchor) in analysed else "no"})
    for items in groups.values():  # longest first, so the fan-out does not end on one long student alone
        items.sort(key=lambda item: -_relative_cost(specs[item["variant"]]))
    unplaced = [m for m, r in analysed if m not in teachers and (m, r) not in
                {(i["variant"], a) for a, items in groups.items() for i in items if i["analyze"] == "yes"}]
    if unplaced:
        raise ValueError(f"analysis pairs {unplaced} do not compare a student with its own teacher")
    return groups


def _relative_cost(spec) -> float:
    """Rough training cost of a student: its rounds, times 1.3 on the augmented split."""
    return (spec.rounds if spec.uses_kd else 1) * (1.3 if spec.augment else 1.0)


def build_pipeline(cfg: StudyConfig, platform: bool = False):
    """The study pipeline for ``cfg`` (``platform=True`` adds the cluster settings)."""
    comps = make_components(cfg.cluster.image, cfg.cluster.gpu_image if cfg.cluster.gpu_per_training_task else None)
    specs = variant_specs(cfg)
    pairs = analysis_pairs(cfg) if cfg.analysis.enabled else []
    # one line of JSON (a YAML subset): kfp copies defaults into a comment header of the IR file,
    # where a multi-line string would break the YAML
    config_yaml = json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":"))
    concurrent = 1 if platform else cfg.student_parallelism  # students sharing one machine's cores

    setup, launch = task_setup(cfg, platform)

    def wire_study(config, tracking_uri, seeds, study) -> None:
        """per seed: prepare, validate, augment, teachers, students, analyses → summary → gate → promotion."""
        with dsl.ParallelFor(seeds, parallelism=0 if platform else 1, name="seeds") as seed:
            # each seed draws its own data (StudyConfig.for_seed), so the seed replicates data sampling too
            data = seed_data(comps, setup, config, seed, tracking_uri, study)
            teachers: dict[str, Any] = {}
            done = []
            def reference(spec) -> dict[str, Any]:  # the model an objective reads logits of (conf_reg)
                return {"reference": teachers[spec.reference].outputs["model"]} if spec.reference else {}

            for name, spec in specs.items():
                if spec.role == "teacher":
                    task = comps.train_model(config=config, variant=name, seed=seed, dataset=data,
                                             tracking_uri=tracking_uri, study=study, **reference(spec),
                                             **launch("teacher"))
                    teachers[name] = setup(task, f"train + evaluate {name}", training=True)
                    done.append(task)
            for anchor, items in student_groups(cfg).items():
                if anchor is None:  # no teacher in the study: students trained on labels alone
                    for item in items:
                        task = comps.train_model(config=config, variant=item["variant"], seed=seed, dataset=data,
                                                 tracking_uri=tracking_uri, study=study,
                                                 **reference(specs[item["variant"]]), **launch("student"))
                        done.append(setup(task, f"train + evaluate {item['variant']}", training=True))
                    continue
                # the fan-out: every student of this teacher, `student_parallelism` at a time locally
                # (the items are plain names: kfp's compiler mis-wires a loop item's fields inside an
                # ExitHandler, so the task reads from the config whether its student is analysed)
                with dsl.ParallelFor([i["variant"] for i in items],
                                     parallelism=0 if platform else cfg.student_parallelism,
                                     name=f"students-of-{anchor}") as variant:
                    # every item of the fan-out gets the reference when one of its students needs it
                    needs = next((specs[i["variant"]] for i in items if specs[i["variant"]].reference), None)
                    student = comps.train_student(config=config, variant=variant,
                                                  concurrent=concurrent, dataset=data,
                                                  **(reference(needs) if needs else {}),
                                                  teacher=teachers[anchor].outputs["model"],
                                                  tracking_uri=tracking_uri, study=study, **launch("student"))
                    setup(student, f"train + evaluate a student of {anchor}", training=True)
                    with dsl.If(student.outputs["Output"] == "yes", name=f"analysed-against-{anchor}"):
                        an = comps.analyze_model(config=config, concurrent=concurrent,
                                                 model=student.outputs["model"],
                                                 reference=teachers[anchor].outputs["model"], dataset=data,
                                                 tracking_uri=tracking_uri, study=study)
                        setup(an, f"analyze the student vs {anchor}")
                done.append(student)
            for model, ref in pairs:
                if model in teachers:
                    an = comps.analyze_model(config=config, concurrent=1, model=teachers[model].outputs["model"],
                                             reference=teachers[ref].outputs["model"], dataset=data,
                                             tracking_uri=tracking_uri, study=study)
                    done.append(setup(an, f"analyze {model} vs {ref}"))
            collect = setup(comps.collect_evaluations(config=config, seed=seed, tracking_uri=tracking_uri,
                                                      study=study).after(*done),
                            "collect evaluations")
        summary = setup(comps.summarize_study(config=config, evaluations=dsl.Collected(collect.outputs["evaluations"]),
                                              tracking_uri=tracking_uri, study=study),
                        "summary, registration and gate")
        with dsl.If(summary.outputs["Output"] == "pass", name="robustness-gate-passed"):
            setup(comps.promote_champion(config=config, tracking_uri=tracking_uri, study=study),
                  "promote champion")

    class StudyOutputs(NamedTuple):
        report: dsl.HTML  # one self-contained page (the Kubeflow UI shows it)
        files: dsl.Artifact  # summary.json, report.md and the plots it references

    @dsl.pipeline(name=pipeline_name(cfg), description="Does debiasing survive knowledge distillation? "
                  "Teachers, every student variant, bias-stratified evaluation, analysis and a robustness gate.")
    def study(config: str = config_yaml, tracking_uri: str = "", run_name: str = "study", study_key: str = "",
              seeds: List[int] = list(cfg.seeds)) -> StudyOutputs:  # noqa: B006, UP006 (kfp reads both)
        # The exit task ends the study's MLflow run FINISHED or FAILED whatever happens inside the
        # handler, and returns the report. It finds that run by its study key, since an exit task takes
        # no input from the tasks it guards: the caller's key, else the kfp job's id.
        end = setup(comps.end_study(config=config, tracking_uri=tracking_uri, study_key=study_key,
                                    job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER), "end MLflow study run")
        end.set_caching_options(False)
        with dsl.ExitHandler(end, name="study"):
            start = setup(comps.start_study(config=config, tracking_uri=tracking_uri, run_name=run_name,
                                            study_key=study_key, job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER),
                          "start MLflow study run")
            wire_study(config, tracking_uri, seeds, start.outputs["study"])
        return StudyOutputs(report=end.outputs["report"], files=end.outputs["files"])

    return study


def compile_pipeline(cfg: StudyConfig, path: str, platform: bool = True) -> str:
    """Compile the pipeline to Kubeflow IR YAML."""
    compiler.Compiler().compile(build_pipeline(cfg, platform=platform), package_path=str(path))
    return str(path)
