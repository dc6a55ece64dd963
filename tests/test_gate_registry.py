"""A gate that cannot be fooled, end to end on a real `mlflow server`: versions registered with their
evidence and thresholds, promoted (or refused, exit 3) by `debiaskd promote`, the champion unchanged."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from debiaskd.cli import main
from debiaskd.core.config import GateConfig, load_config
from debiaskd.core.gate import GATE_KEYS, evaluate_gate, threshold_tags
from debiaskd.jobs.promote import PromoteJob
from debiaskd.jobs.report import register_candidates
from debiaskd.tracking import service as tracking
from debiaskd.tracking.tracker import Tracker
from debiaskd.training.models import build_nli_teacher, save_model

TEACHER = {"in_distribution_accuracy": 0.80, "challenge_accuracy": 0.60, "worst_group_accuracy": 0.40,
           "challenge_auc": 0.70, "heuristic_reliance": 0.30, "in_distribution_majority_rate": 0.34,
           "in_distribution_kappa": 0.70}
GOOD = {"in_distribution_accuracy": 0.79, "challenge_accuracy": 0.60, "worst_group_accuracy": 0.40,
        "challenge_auc": 0.70, "heuristic_reliance": 0.25, "in_distribution_majority_rate": 0.34,
        "in_distribution_kappa": 0.65}
SMOKE_GATE = load_config("smoke").gate


@pytest.fixture(scope="module")
def logged(mlflow_server, tmp_path_factory):
    """One logged model (and its run) that every version below registers, with different evidence."""
    uri = mlflow_server.uri
    cfg = load_config("smoke", overrides=["tracking.experiment=gate-registry"])
    model, tok = build_nli_teacher(cfg.nli_model, 0)
    path = tmp_path_factory.mktemp("model") / "m"
    save_model(model, path, {"task": "nli", "variant": "student_kd",
                             "label_names": ["entailment", "neutral", "contradiction"]}, tok)
    parent = tracking.start_study_run(uri, cfg, "study")
    runs = {seed: tracking.start_variant_run(uri, parent, "student_kd", seed, "student") for seed in (0, 1)}
    teacher_runs = {seed: tracking.start_variant_run(uri, parent, "teacher_debiased", seed, "teacher")
                    for seed in (0, 1)}
    model_uri = tracking.log_model(uri, runs[0], path)
    return {"uri": uri, "parent": parent, "runs": runs, "teacher_runs": teacher_runs, "model_uri": model_uri}


def _register(logged, name: str, metrics: dict, gate: GateConfig | None = GateConfig()) -> str:
    tags = {f"metric.{k}": metrics[k] for k in GATE_KEYS}
    tags.update({f"teacher.{k}": TEACHER[k] for k in GATE_KEYS})
    tags.update({"run_id": logged["runs"][0], "seed": "0"})
    if gate is not None:
        tags.update(threshold_tags(gate))
    return tracking.register_model(logged["uri"], logged["model_uri"], name, tags)


def _with_champion(logged, name: str) -> str:
    good = _register(logged, name, GOOD)
    assert main(["promote", "--model", name, "--version", good, "--tracking-uri", logged["uri"]]) == 0
    return good


def _champion(logged, name: str) -> str:
    return str(tracking.alias_version(logged["uri"], name, "champion").version)


def _tags(logged, name: str, version: str) -> dict[str, str]:
    return dict(tracking.client(logged["uri"]).get_model_version(name, version).tags)


def test_thresholds_are_stored_on_the_version(logged):
    name = "stored-thresholds"
    version = _register(logged, name, GOOD, GateConfig(min_retention=0.95))
    tags = _tags(logged, name, version)
    assert tags["gate.threshold.min_retention"] == "0.95"
    assert {f"gate.threshold.{k}" for k in GateConfig.model_fields} <= set(tags)


def test_constant_predictor_is_refused_even_with_smoke_thresholds(logged, capsys):
    name = "constant-student"
    champion = _with_champion(logged, name)
    # a two-class test split in balance: always "entailment" scores 0.5 = the majority rate, kappa 0;
    # its challenge numbers copy the teacher's, so retention and worst group pass
    constant = {**GOOD, "in_distribution_accuracy": 0.50, "in_distribution_majority_rate": 0.50,
                "in_distribution_kappa": 0.0}
    version = _register(logged, name, constant, SMOKE_GATE)
    assert main(["promote", "--model", name, "--version", version, "--tracking-uri", logged["uri"],
                 "--preset", "smoke"]) == 3
    assert "majority-class rate" in capsys.readouterr().err
    assert _champion(logged, name) == champion
    tags = _tags(logged, name, version)
    assert tags["gate.decision"] == "refused"
    assert tags["gate.check.above_majority"] == "false" and tags["gate.check.kappa"] == "false"
    assert tags["gate.check.retention"] == "true"


def test_over_corrector_is_refused(logged):
    name = "over-corrector"
    champion = _with_champion(logged, name)
    # non-entailment to every challenge pair: reliance -1, AUC 0.5; challenge accuracy keeps the teacher's
    over = {**GOOD, "challenge_accuracy": 0.60, "challenge_auc": 0.50, "heuristic_reliance": -1.0}
    version = _register(logged, name, over)
    assert main(["promote", "--model", name, "--version", version, "--tracking-uri", logged["uri"]]) == 3
    assert _champion(logged, name) == champion
    tags = _tags(logged, name, version)
    assert tags["gate.check.retention"] == "true"
    assert tags["gate.check.challenge_auc"] == "false" and tags["gate.check.not_over_corrected"] == "false"


def _entry(role: str, per_seed: dict[str, dict], run_ids: dict[int, str], model_uri: str) -> dict:
    seeds = sorted(int(s) for s in per_seed)
    mean = {k: sum(per_seed[str(s)][k] for s in seeds) / len(seeds) for k in GATE_KEYS}
    return {"role": role, "seeds": seeds, **mean, "by_group": {}, "mlflow_run_id": run_ids[seeds[0]],
            "model_uri": model_uri,
            "per_seed": {str(s): {**per_seed[str(s)], "by_group": {}, "mlflow_run_id": run_ids[s],
                                  "model_uri": model_uri} for s in seeds}}


def test_own_seed_evidence_decides_not_the_mean(logged):
    prefix = "own-seed"
    name = f"{prefix}-student"
    champion = _with_champion(logged, name)
    # seed 0's student (the registered weights) keeps half the teacher's challenge accuracy; seed 1's
    # does better than its teacher, so the mean over seeds passes
    student = {"0": {**GOOD, "challenge_accuracy": 0.30, "worst_group_accuracy": 0.20},
               "1": {**GOOD, "challenge_accuracy": 0.90, "worst_group_accuracy": 0.60}}
    teacher = {"0": dict(TEACHER), "1": dict(TEACHER)}
    summary = {
        "variants": {"teacher_debiased": _entry("teacher", teacher, logged["teacher_runs"], logged["model_uri"]),
                     "student_kd": _entry("student", student, logged["runs"], logged["model_uri"])},
        "candidate": "student_kd",
        "transfer": {"student_kd": {"robustness_retention": 1.0, "by_group_retention": {}}},
        "data_hash": "abc",
    }
    cfg = load_config("default", overrides=[f"tracking.model_prefix={prefix}",
                                            "gate.require_not_worse_than_champion=false"])
    # the old behaviour: the mean evidence passes the same gate
    mean = summary["variants"]["student_kd"]
    assert evaluate_gate(mean, summary["variants"]["teacher_debiased"], cfg.gate).passed
    reg = register_candidates(cfg, summary, Tracker(uri=logged["uri"], study_run_id=logged["parent"]))
    version = reg["student"]["version"]
    assert reg["student"]["seed"] == "0" and not reg["student"]["gate"]["passed"]
    tags = _tags(logged, name, version)
    assert tags["seed"] == "0" and tags["run_id"] == logged["runs"][0]
    assert float(tags["metric.challenge_accuracy"]) == 0.30 and float(tags["teacher.challenge_accuracy"]) == 0.60
    assert float(tags["mean.metric.challenge_accuracy"]) == pytest.approx(0.60)
    assert float(tags["retention"]) == pytest.approx(0.5)
    assert json.loads(tags["gate.threshold.require_not_worse_than_champion"]) is False
    assert str(tracking.alias_version(logged["uri"], name, "challenger").version) == version
    assert main(["promote", "--model", name, "--tracking-uri", logged["uri"]]) == 3  # the challenger
    assert _champion(logged, name) == champion
    # the pipeline's promote step refuses it too
    with pytest.raises(Exception) as refused:
        PromoteJob(config=cfg, tracker=Tracker(uri=logged["uri"])).run()
    assert type(refused.value).__name__ == "GateRefused"
    assert _champion(logged, name) == champion


def test_looser_promote_thresholds_do_not_loosen_stored_ones(logged, tmp_path):
    name = "looser-promote"
    champion = _with_champion(logged, name)
    # retention 0.5: passes the smoke thresholds, fails the default ones it was registered with
    weak = {**GOOD, "challenge_accuracy": 0.30, "worst_group_accuracy": 0.40}
    version = _register(logged, name, weak, GateConfig(require_not_worse_than_champion=False))
    assert evaluate_gate(weak, TEACHER, SMOKE_GATE).passed
    loose = tmp_path / "loose.yaml"
    loose.write_text(yaml.safe_dump({"gate": {"min_retention": 0.0, "min_worst_group_ratio": 0.0}}))
    base = ["promote", "--model", name, "--version", version, "--tracking-uri", logged["uri"]]
    assert main([*base, "--preset", "smoke"]) == 3
    assert main([*base, "--config", str(loose)]) == 3
    # the console script, as a user runs it
    proc = subprocess.run([sys.executable, "-m", "debiaskd", *base, "--preset", "smoke"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "min_retention" in proc.stdout + proc.stderr and "looser" in proc.stdout + proc.stderr
    assert _champion(logged, name) == champion
    tags = _tags(logged, name, version)
    assert tags["gate.check.retention"] == "false" and tags["gate.threshold.min_retention"] == "0.9"


def test_version_without_stored_thresholds_is_judged_by_at_least_the_defaults(logged):
    name = "unstored-thresholds"
    champion = _with_champion(logged, name)
    bare = _register(logged, name, {**GOOD, "challenge_accuracy": 0.30}, gate=None)
    assert main(["promote", "--model", name, "--version", bare, "--tracking-uri", logged["uri"],
                 "--preset", "smoke"]) == 3
    assert _champion(logged, name) == champion


def test_stricter_config_tightens(logged, tmp_path):
    name = "tighten-promote"
    champion = _with_champion(logged, name)
    version = _register(logged, name, GOOD)  # retention 1.0, as good as the champion
    strict = tmp_path / "strict.yaml"
    strict.write_text(yaml.safe_dump({"gate": {"min_retention": 1.05}}))
    assert main(["promote", "--model", name, "--version", version, "--tracking-uri", logged["uri"],
                 "--config", str(strict)]) == 3
    assert _champion(logged, name) == champion
    assert main(["promote", "--model", name, "--version", version, "--tracking-uri", logged["uri"]]) == 0
    assert _champion(logged, name) == version
