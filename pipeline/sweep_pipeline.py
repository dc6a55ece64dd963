"""The distillability matrix as one Kubeflow pipeline (``debiaskd sweep``): wiring only.

per seed (``dsl.ParallelFor``): prepare → validate → augment → one teacher per debiasing method (the ERM
teacher too when a method reads it) → per teacher, a ``dsl.ParallelFor`` fan-out over its cells (every
combination of the other axes) → collect; then the matrix's report, logged to the sweep's parent MLflow run,
which registers the best robust cell (highest retention among the cells the gate passes) as the challenger;
``dsl.If`` it passes the gate, it is promoted to champion.

Every training task receives the sweep's ``store``: a model whose content key
(:func:`debiaskd.core.sweep.content_key`: the trained part of the config, its spec, seed, data and the specs
of the models it reads) is already there is reused rather than trained, so a sweep that adds a value to one
axis trains only the new cells (and no teacher it already has). kfp's own cache still serves a re-run of the
same sweep.
"""

import json
from typing import Any, List, NamedTuple  # noqa: UP035 (kfp needs typing.List for list parameters)

from kfp import compiler, dsl

from debiaskd.components import make_components
from debiaskd.core.config import StudyConfig
from debiaskd.core.study import variant_specs
from debiaskd.pipeline.study_pipeline import seed_data, task_setup


def sweep_pipeline_name(cfg: StudyConfig) -> str:
    return f"debiaskd-{cfg.task}-sweep"


def cells_of(cfg: StudyConfig) -> dict[str, list[str]]:
    """The cells of each teacher, as the fan-outs' items (plain names: kfp's compiler mis-wires a loop
    item's fields inside an ExitHandler)."""
    groups: dict[str, list[str]] = {}
    for name, spec in variant_specs(cfg).items():
        if spec.role == "student" and spec.teacher:
            groups.setdefault(spec.teacher, []).append(name)
    return groups


def default_store(cfg: StudyConfig, platform: bool) -> str:
    """Where finished models are kept by content key: on the cluster's shared volume; locally the runner
    passes ``DIR/store``."""
    return f"{cfg.cluster.pvc_mount}/{cfg.cluster.work_dir}/sweep-store" if platform else ""


def build_sweep_pipeline(cfg: StudyConfig, platform: bool = False):
    """The sweep pipeline for ``cfg`` (its ``matrix`` section enabled)."""
    if not cfg.matrix.enabled:
        cfg = cfg.model_copy(update={"matrix": cfg.matrix.model_copy(update={"enabled": True})})
    comps = make_components(cfg.cluster.image, cfg.cluster.gpu_image if cfg.cluster.gpu_per_training_task else None)
    specs = variant_specs(cfg)
    config_yaml = json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":"))
    concurrent = 1 if platform else cfg.student_parallelism

    setup, launch = task_setup(cfg, platform)

    def wire(config, tracking_uri, seeds, store, study) -> None:
        with dsl.ParallelFor(seeds, parallelism=0 if platform else 1, name="seeds") as seed:
            data = seed_data(comps, setup, config, seed, tracking_uri, study)
            teachers: dict[str, Any] = {}
            done = []
            for name, spec in specs.items():  # teachers first (the ERM reference before the one reading it)
                if spec.role != "teacher":
                    continue
                extra = {"reference": teachers[spec.reference].outputs["model"]} if spec.reference else {}
                task = comps.train_model(config=config, variant=name, seed=seed, dataset=data,
                                         tracking_uri=tracking_uri, study=study, store=store, **extra,
                                         **launch("teacher"))
                teachers[name] = setup(task, f"train + evaluate {name}", training=True)
                done.append(task)
            for teacher, names in cells_of(cfg).items():
                with dsl.ParallelFor(names, parallelism=0 if platform else cfg.student_parallelism,
                                     name=f"cells-of-{teacher.replace('.', '-').replace('_', '-')}") as cell:
                    student = comps.train_student(config=config, variant=cell, concurrent=concurrent, dataset=data,
                                                  teacher=teachers[teacher].outputs["model"],
                                                  tracking_uri=tracking_uri, study=study, store=store,
                                                  **launch("student"))
                    setup(student, f"train + evaluate a cell of {teacher}", training=True)
                done.append(student)
            collect = setup(comps.collect_evaluations(config=config, seed=seed, tracking_uri=tracking_uri,
                                                      study=study).after(*done), "collect evaluations")
            # it reads MLflow, not its inputs: never from the cache (a re-run after a failure has new runs)
            collect.set_caching_options(False)
        report = setup(comps.summarize_sweep(config=config, evaluations=dsl.Collected(collect.outputs["evaluations"]),
                                             tracking_uri=tracking_uri, study=study), "the matrix's report")
        report.set_caching_options(False)
        with dsl.If(report.outputs["Output"] == "pass", name="best-cell-passed-the-gate"):
            setup(comps.promote_champion(config=config, tracking_uri=tracking_uri, study=study),
                  "promote the best robust cell")

    class SweepOutputs(NamedTuple):
        report: dsl.HTML
        files: dsl.Artifact  # sweep.json, report.md and the heat map

    @dsl.pipeline(name=sweep_pipeline_name(cfg), description="The distillability matrix: which debiasing method "
                  "survives which distillation, at which student size; one teacher per method, the cells fanned out.")
    def sweep(config: str = config_yaml, tracking_uri: str = "", run_name: str = "sweep", study_key: str = "",
              store: str = default_store(cfg, platform),
              seeds: List[int] = list(cfg.seeds)) -> SweepOutputs:  # noqa: B006, UP006 (kfp reads both)
        end = setup(comps.end_study(config=config, tracking_uri=tracking_uri, study_key=study_key,
                                    job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER), "end MLflow sweep run")
        end.set_caching_options(False)
        with dsl.ExitHandler(end, name="sweep"):
            start = setup(comps.start_study(config=config, tracking_uri=tracking_uri, run_name=run_name,
                                            study_key=study_key, job_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER),
                          "start MLflow sweep run")
            wire(config, tracking_uri, seeds, store, start.outputs["study"])
        return SweepOutputs(report=end.outputs["report"], files=end.outputs["files"])

    return sweep


def compile_sweep(cfg: StudyConfig, path: str, platform: bool = True) -> str:
    compiler.Compiler().compile(build_sweep_pipeline(cfg, platform=platform), package_path=str(path))
    return str(path)
