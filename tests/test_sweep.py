"""`debiaskd sweep`: the distillability matrix's axes, cells and keys, its pipeline, and the smoke preset's
matrix end to end through kfp.local (cells, their MLflow runs, the report, and reuse when an axis grows)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from debiaskd.cli import main
from debiaskd.core.config import load_config
from debiaskd.core.errors import DebiaskdError
from debiaskd.core.study import variant_specs
from debiaskd.core.sweep import cells, content_key
from debiaskd.tracking import service as tracking


def sweep_config(preset: str = "smoke", *overrides: str, task: str | None = None):
    return load_config(preset, overrides=[*overrides, "matrix.enabled=true"], task=task)


# ----------------------------------------------------------------------------- axes and cells
def test_the_matrix_is_every_combination_with_one_teacher_per_method():
    cfg = sweep_config("matrix")
    specs = variant_specs(cfg)
    grid = cells(cfg)
    assert len(grid) == 3 * 3 * 2  # methods × distillation objectives × student depths
    teachers = {n: s for n, s in specs.items() if s.role == "teacher"}
    # one per debiasing method, plus the ERM reference confidence regularisation reads
    assert set(teachers) == {"teacher.product_of_experts", "teacher.reweight", "teacher.conf_reg", "teacher.erm"}
    assert teachers["teacher.conf_reg"].reference == "teacher.erm"
    for cell in grid:
        spec = specs[cell.name]
        assert spec.role == "student" and spec.teacher == f"teacher.{cell.method}"
        assert dict(spec.axes) == cell.axes() and spec.student_layers == cell.layers
    assert all("+" not in name for name in specs)  # names become MLflow metric keys


def test_a_cell_trains_with_its_own_objective_and_size():
    from debiaskd.training.recipe import Recipe

    cfg = sweep_config("matrix")
    specs = variant_specs(cfg)
    recipe = Recipe.build(specs["cell.reweight.logits_attention.L2.none"], cfg)
    assert [c.name for c in recipe.distill] == ["logit_kd", "attention_kl"]
    assert recipe.model.section.student_layers == 2 and recipe.rounds.student_layers == 2
    assert [c.name for c in Recipe.build(specs["cell.reweight.logits.L1.none"], cfg).distill] == ["logit_kd"]
    # outside a sweep nothing changes
    plain = load_config("matrix")
    assert not plain.matrix.enabled and "student_kd" in variant_specs(plain)


def test_vision_matrix_uses_the_vision_methods_and_width():
    cfg = sweep_config("smoke", "matrix.debias=null", "matrix.student_width=[4, 8]", task="vision")
    assert {c.method for c in cells(cfg)} == {"group_dro", "reweight"}
    assert {c.width for c in cells(cfg)} == {4, 8}


@pytest.mark.parametrize("override, words", [
    ("matrix.distill=[logits, distil_everything]", "matrix.distill"),
    ("matrix.debias=[group_dro]", "matrix.debias"),  # a vision-only method on the NLI task
    ("matrix.interventions=[magic]", "matrix.interventions"),
    ("matrix.student_layers=[1, 1]", "appears twice"),
])
def test_an_unknown_axis_value_is_refused(override, words):
    with pytest.raises(DebiaskdError) as info:
        cells(sweep_config("smoke", override))
    assert words in str(info.value)


def test_bad_axes_exit_2_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["sweep", "--preset", "smoke", "--out", str(out), "--set", "matrix.distill=[bogus]"]) == 2
    assert main(["sweep", "--preset", "smoke", "--out", str(out), "--set", "matrix.distill=[]"]) == 2  # empty axis
    assert main(["sweep", "--preset", "smoke", "--task", "vision", "--out", str(out),
                 "--set", "matrix.student_layers=[2]"]) == 2
    err = capsys.readouterr().err
    assert "matrix.distill" in err and "bogus" in err and "Traceback" not in err
    assert not out.exists()


def test_run_refuses_a_matrix_config(tmp_path):
    assert main(["run", "--preset", "smoke", "--out", str(tmp_path / "x"), "--set", "matrix.enabled=true"]) == 2


def test_adding_an_axis_value_keeps_every_existing_key():
    before = sweep_config("smoke")
    after = sweep_config("smoke", "matrix.distill=[logits, logits+hidden]", "matrix.student_layers=[null, 2]")
    s_before, s_after = variant_specs(before), variant_specs(after)

    def key(cfg, specs, name):
        spec = specs[name]
        up = {n: specs[n].to_dict() for n in (spec.teacher, spec.reference) if n}
        return content_key(cfg, spec.to_dict(), 0, "datahash", up)

    for name in s_before:
        assert key(before, s_before, name) == key(after, s_after, name), name
    changed = before.model_copy(update={"student_train": before.student_train.model_copy(update={"lr": 1e-2})})
    cell = next(n for n in s_before if n.startswith("cell."))
    assert key(changed, s_before, cell) != key(before, s_before, cell)  # what is trained changed: a new key


# ----------------------------------------------------------------------------- the pipeline
def test_the_sweep_pipeline_fans_out_the_cells_per_teacher(tmp_path):
    from debiaskd.pipeline.sweep_pipeline import compile_sweep

    cfg = sweep_config("matrix")
    docs = list(yaml.safe_load_all(Path(compile_sweep(cfg, str(tmp_path / "sweep.yaml"))).read_text()))
    text = json.dumps(docs)  # the pipeline spec, then the platform spec (secrets, volumes)
    assert "for-loop" in text
    for method in ("product-of-experts", "reweight", "conf-reg"):
        assert f"cells-of-teacher-{method}" in text
    assert text.count('"train-model') >= 4  # one training task per teacher, none per cell
    assert "sweep-store" in text  # the store on the shared volume
    assert "best-cell-passed-the-gate" in text  # dsl.If the best robust cell passes: its promotion


def test_compile_sweep_writes_the_sweep_pipeline(tmp_path):
    out = tmp_path / "sweep.yaml"
    assert main(["compile", "--sweep", "--preset", "smoke", "--out", str(out)]) == 0
    assert "debiaskd-nli-sweep" in out.read_text()


# ----------------------------------------------------------------------------- end to end
def _sweep(out: Path, uri: str, *overrides: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "debiaskd", "sweep", "--preset", "smoke", "--out", str(out),
            "--tracking-uri", uri]
    for item in overrides:
        args += ["--set", item]
    return subprocess.run(args, capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
def test_smoke_sweep_end_to_end_and_adding_an_axis_value_trains_only_the_new_cells(tmp_path):
    out = tmp_path / "sweep"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    first = _sweep(out, uri)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-5000:]
    sweep = json.loads((out / "sweep.json").read_text())
    cfg = sweep_config("smoke")
    names = [c.name for c in cells(cfg)]
    assert list(sweep["cells"]) == names and len(names) == 2
    for name, entry in sweep["cells"].items():
        assert entry["n_seeds"] == 1 and entry["retention"]["mean"] is not None, name
        assert set(entry) >= {"in_distribution_accuracy", "challenge_auc", "heuristic_reliance", "gate_passed"}
    assert set(sweep["cheapest_passing"]) == {"product_of_experts", "reweight"} and not sweep["reused_cells"]
    report = (out / "report.md").read_text()
    assert "matrix_retention.png" in report and all(n in report for n in names)
    assert (out / "matrix_retention.png").stat().st_size > 5000
    stored = {p.name for p in (out / "store").iterdir() if not p.name.startswith(".")}
    assert len(stored) == 4  # two teachers, two cells

    # MLflow: one parent run for the sweep (report logged to it), one nested run per model, axes as params
    c = tracking.client(uri)
    assert cfg.experiment_name == "debiaskd-nli-sweep"  # sweeps are compared among themselves
    exp = c.get_experiment_by_name(cfg.experiment_name)
    assert exp.tags.get("mlflow.experimentKind") == "custom_model_development"
    parents = c.search_runs([exp.experiment_id], "tags.`debiaskd.kind` = 'study'")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert {a.path for a in c.list_artifacts(parent.info.run_id, "report")} >= {
        "report/sweep.json", "report/report.md", "report/matrix_retention.png"}
    assert f"{names[0]}/retention" in parent.data.metrics
    children = c.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    by_name = {r.info.run_name: r for r in children}
    assert set(by_name) == {f"{n}-s0" for n in variant_specs(cfg)}
    cell_run = by_name[f"{names[0]}-s0"]
    assert {"axis.debias", "axis.distill", "axis.student_layers", "axis.student_width",
            "axis.intervention"} <= set(cell_run.data.params)
    assert "retention" in cell_run.data.metrics

    # one more value on the distillation axis: only the two new cells train
    second = _sweep(out, uri, "matrix.distill=[logits, logits+hidden]")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-5000:]
    grown = json.loads((out / "sweep.json").read_text())
    assert len(grown["cells"]) == 4
    assert sorted(grown["reused_cells"]) == sorted(names)  # the old cells: reused, not retrained
    stored_after = {p.name for p in (out / "store").iterdir() if not p.name.startswith(".")}
    assert stored <= stored_after and len(stored_after - stored) == 2  # the two new cells, no new teacher
    parents = c.search_runs([exp.experiment_id], "tags.`debiaskd.kind` = 'study'",
                            order_by=["attributes.start_time DESC"])
    assert len(parents) == 2  # one parent run per sweep
    children = c.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parents[0].info.run_id}'")
    reused = {r.info.run_name for r in children if r.data.metrics.get("reused") == 1.0}
    assert reused == {f"{n}-s0" for n in (*names, "teacher.product_of_experts", "teacher.reweight")}
    assert len(children) == 6
    warm_log = (out / "warm.log").read_text()
    assert "failed" not in warm_log


# ----------------------------------------------------------------------------- report and the gate
def _ev(variant: str, seed: int, id_acc: float, ch: float, **extra) -> dict:
    return {"variant": variant, "seed": seed, "in_distribution_accuracy": id_acc, "challenge_accuracy": ch,
            "worst_group_accuracy": ch - 0.1, "challenge_auc": 0.6, "heuristic_reliance": 0.2,
            "in_distribution_majority_rate": 0.34, "in_distribution_kappa": 0.5, "run_id": f"r-{variant}-{seed}",
            "model_uri": f"models:/{variant}-{seed}", "data_hash": "h", **extra}


def test_the_report_finds_the_cheapest_passing_student_and_the_interventions_a_failing_cell_needs(tmp_path):
    from debiaskd.jobs.sweep import register_best
    from debiaskd.reporting.sweep import build_sweep, write_sweep_report

    cfg = sweep_config("default", "matrix.debias=[product_of_experts]", "matrix.distill=[logits]",
                       "matrix.student_layers=[1, 2]", "matrix.interventions=[none, aug]", "seeds=[0, 1]")
    evals = []
    for seed in (0, 1):
        evals.append(_ev("teacher.product_of_experts", seed, 0.8, 0.6))
        evals.append(_ev("cell.product_of_experts.logits.L1.none", seed, 0.75, 0.40))  # retention 0.67: fails
        evals.append(_ev("cell.product_of_experts.logits.L1.aug", seed, 0.75, 0.57 + seed * 0.01))
        evals.append(_ev("cell.product_of_experts.logits.L2.none", seed, 0.78, 0.59))
        evals.append(_ev("cell.product_of_experts.logits.L2.aug", seed, 0.78, 0.62))
    sweep = build_sweep(cfg, evals)
    cells_ = sweep["cells"]
    assert not cells_["cell.product_of_experts.logits.L1.none"]["gate_passed"]
    assert "retention" in cells_["cell.product_of_experts.logits.L1.none"]["gate_failed_checks"]
    retention = cells_["cell.product_of_experts.logits.L1.aug"]["retention"]
    assert retention["n"] == 2 and retention["ci_low"] < retention["mean"] < retention["ci_high"]
    # the one-layer student with augmentation is cheaper than any two-layer one
    assert sweep["cheapest_passing"] == {"product_of_experts": "cell.product_of_experts.logits.L1.aug"}
    assert sweep["best_robust"] == "cell.product_of_experts.logits.L2.aug"
    needed = {r["cell"]: r for r in sweep["interventions_needed"]}
    assert needed["cell.product_of_experts.logits.L1.none"]["passing"] == ["aug"]
    png = write_sweep_report(sweep, tmp_path)
    assert png.stat().st_size > 5000 and "[" in (tmp_path / "report.md").read_text()  # intervals over seeds

    class Recorder:  # the tracker calls register_best makes
        study_run_id = "parent"

        def __init__(self):
            self.calls = []

        def register(self, uri, name, tags):
            self.calls.append(("register", uri, name, tags))
            return "1"

        def set_alias(self, name, alias, version):
            self.calls.append(("alias", name, alias, version))

        def promote(self, name, version, gate, dry_run=False):
            from debiaskd.core.gate import GateDecision

            assert dry_run
            return GateDecision(True, ["ok"])

    rec = Recorder()
    registered = register_best(cfg, sweep, evals, rec)
    assert registered["variant"] == "cell.product_of_experts.logits.L2.aug" and registered["gate"]["passed"]
    _, uri, name, tags = rec.calls[0]
    assert uri == "models:/cell.product_of_experts.logits.L2.aug-0" and name == "debiaskd-nli-student"
    assert tags["teacher.challenge_accuracy"] == 0.6 and tags["axis.intervention"] == "aug"
    assert any(k.startswith("gate.threshold.") for k in tags)
    assert rec.calls[1] == ("alias", "debiaskd-nli-student", "challenger", "1")
