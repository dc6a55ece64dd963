"""Choosing a recipe on challenge_dev (benchmarks/select_recipe.py): the reporting split is never read."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "select_recipe.py"


@pytest.fixture(scope="module")
def select():
    spec = importlib.util.spec_from_file_location("select_recipe", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_rule_takes_the_best_dev_score_among_competent_recipes(select):
    rows = []
    for seed, bump in ((0, 0.0), (1, 0.02), (2, 0.01)):
        rows += [
            {"recipe": "erm", "seed": seed, "id": 0.85, "dev": 0.55 + bump, "dev_auc": 0.6, "dev_reliance": 0.5},
            # the best on dev, but it gave up too much in-distribution accuracy: not eligible
            {"recipe": "conf_reg_features", "seed": seed, "id": 0.70, "dev": 0.70, "dev_auc": 0.7,
             "dev_reliance": 0.0},
            {"recipe": "poe_features_t1", "seed": seed, "id": 0.83, "dev": 0.60 + bump, "dev_auc": 0.65,
             "dev_reliance": 0.3},
            {"recipe": "poe_hypothesis_t2", "seed": seed, "id": 0.86, "dev": 0.58 + bump, "dev_auc": 0.62,
             "dev_reliance": 0.4},
        ]
    decision = select.choose(rows, id_tolerance=0.05)
    assert decision["eligible"] == ["poe_features_t1", "poe_hypothesis_t2"]
    assert decision["chosen"] == "poe_features_t1"
    assert decision["chosen_overrides"]["debias.bias_model"] == "features"
    entry = decision["table"]["poe_features_t1"]
    assert entry["dev_minus_erm"] == pytest.approx(0.05) and entry["ci_low"] == pytest.approx(0.05)


def test_a_selection_run_never_sees_the_reporting_challenge(select, tmp_path, monkeypatch):
    """Every split the selection trains or scores on comes through ``selection_splits``, which drops
    ``challenge``; the run still trains (the pipeline's own training call) and scores on challenge_dev."""
    from debiaskd.core.config import load_config

    splits = select.build_seed_data(load_config("smoke"), 1, tmp_path / "data")
    assert "challenge" not in splits and {"train", "validation", "test", "challenge_dev"} <= set(splits)
    seen: list[set[str]] = []
    real_score = select.score

    def spy(cfg, variant, given, seed, out, reference):
        seen.append(set(given))
        return real_score(cfg, variant, given, seed, out, reference)

    monkeypatch.setattr(select, "score", spy)
    out = tmp_path / "select.json"
    assert select.main(["--preset", "smoke", "--seeds", "0", "1", "--recipes", "poe_hypothesis_t2",
                        "conf_reg_features", "--out", str(tmp_path / "runs"), "--json", str(out)]) == 0
    assert seen and all("challenge" not in s and "challenge_dev" in s for s in seen)
    result = json.loads(out.read_text())
    assert {r["recipe"] for r in result["rows"]} == {"erm", "poe_hypothesis_t2", "conf_reg_features"}
    assert result["chosen"] in ("poe_hypothesis_t2", "conf_reg_features", None)
    assert "challenge_dev" in result["rule"]
