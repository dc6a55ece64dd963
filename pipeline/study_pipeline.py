"""The study as a Kubeflow pipeline: wiring only (which component feeds which).

validate → augment → teachers → students (every variant, ``dsl.ParallelFor`` over seeds; each
training task evaluates its model) → analysis → collect → summary + registration → ``dsl.If`` gate → promotion.
Cluster settings (images, GPU requests, node selectors, tolerations, the MLflow secret,
the cache volume) are applied by :func:`apply_platform` at compile time.
"""


import json
from typing import Any, List  # noqa: UP035 (kfp needs typing.List for list parameters)

from kfp import dsl

from debiaskd.components import make_components
from debiaskd.config import StudyConfig
from debiaskd.steps import analysis_pairs
from debiaskd.study import variant_specs

MLFLOW_SECRET_KEYS = (
    "MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_S3_ENDPOINT_URL",
)


def pipeline_name(cfg: StudyConfig) -> str:
    return f"debiaskd-{cfg.task}-study"


def apply_platform(task: Any, cfg: StudyConfig, training: bool) -> None:
    """Kubernetes settings for one task (ignored, with kfp's warning, by the local runner)."""
    from kfp import kubernetes

    c = cfg.cluster
    task.set_cpu_request(c.cpu_request).set_memory_request(c.memory_request).set_memory_limit(c.memory_limit)
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


def build_pipeline(cfg: StudyConfig, platform: bool = False):
    """The study pipeline for ``cfg`` (``platform=True`` adds the cluster settings)."""
    comps = make_components(cfg.cluster.image, cfg.cluster.gpu_image if cfg.cluster.gpu_per_training_task else None)
    specs = variant_specs(cfg)
    pairs = analysis_pairs(cfg) if cfg.analysis.enabled else []
    # one line of JSON (a YAML subset): kfp copies defaults into a comment header of the IR file,
    # where a multi-line string would break the YAML
    config_yaml = json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":"))

    def setup(task, name: str, training: bool = False):
        task.set_display_name(name)
        if platform:
            apply_platform(task, cfg, training)
        return task

    @dsl.pipeline(name=pipeline_name(cfg), description="Does debiasing survive knowledge distillation? "
                  "Teachers, every student variant, bias-stratified evaluation, analysis and a robustness gate.")
    def study(config: str = config_yaml, tracking_uri: str = "", run_name: str = "study",
              seeds: List[int] = list(cfg.seeds)) -> dsl.HTML:  # noqa: B006, UP006 (kfp reads both)
        start = setup(comps.start_study(config=config, tracking_uri=tracking_uri, run_name=run_name),
                      "start MLflow study run")
        prep = setup(comps.prepare_data(config=config), "prepare data")
        valid = setup(comps.validate_data(config=config, dataset=prep.outputs["dataset"], tracking_uri=tracking_uri,
                                          study=start.outputs["study"]), "validate data (Great Expectations)")
        aug = setup(comps.augment_data(config=config, dataset=prep.outputs["dataset"]).after(valid),
                    "bias model + bias-aware augmentation")
        data = aug.outputs["augmented"]
        with dsl.ParallelFor(seeds, parallelism=0 if platform else 1, name="seeds") as seed:
            models: dict[str, Any] = {}
            done = []
            for name, spec in specs.items():
                if spec.teacher:
                    task = comps.distill_student(config=config, variant=name, seed=seed, dataset=data,
                                                 teacher=models[spec.teacher].outputs["model"],
                                                 tracking_uri=tracking_uri, study=start.outputs["study"])
                else:
                    task = comps.train_model(config=config, variant=name, seed=seed, dataset=data,
                                             tracking_uri=tracking_uri, study=start.outputs["study"])
                models[name] = setup(task, f"train + evaluate {name}", training=True)
                done.append(task)
            for model, ref in pairs:
                an = comps.analyze_model(config=config, model=models[model].outputs["model"],
                                         reference=models[ref].outputs["model"], dataset=data,
                                         tracking_uri=tracking_uri, study=start.outputs["study"])
                done.append(setup(an, f"analyze {model} vs {ref}"))
            collect = setup(comps.collect_evaluations(config=config, seed=seed, tracking_uri=tracking_uri,
                                                      study=start.outputs["study"]).after(*done),
                            "collect evaluations")
        summary = setup(comps.summarize_study(config=config, evaluations=dsl.Collected(collect.outputs["evaluations"]),
                                              tracking_uri=tracking_uri, study=start.outputs["study"]),
                        "summary, registration and gate")
        with dsl.If(summary.outputs["Output"] == "pass", name="robustness-gate-passed"):
            setup(comps.promote_champion(config=config, tracking_uri=tracking_uri, study=start.outputs["study"]),
                  "promote champion")
        return summary.outputs["report"]

    return study


def compile_pipeline(cfg: StudyConfig, path: str, platform: bool = True) -> str:
    """Compile the pipeline to Kubeflow IR YAML."""
    from kfp import compiler

    compiler.Compiler().compile(build_pipeline(cfg, platform=platform), package_path=str(path))
    return str(path)
