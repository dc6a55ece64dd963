"""The mechanism findings over seeds (core.mechanism): intervals, the teachers' difference, recovery."""

from __future__ import annotations

import numpy as np
import pytest

from debiaskd.core.mechanism import (
    component_names,
    mechanism_findings,
    mechanism_lines,
    mechanism_metrics,
    parse_component,
)


def per_pair(rng, layers: int, heads: int, n: int, strong: dict[tuple[int, int], float]) -> dict:
    head = rng.normal(0.0, 0.05, size=(layers, heads, n))
    for (layer, h), value in strong.items():
        head[layer, h] += value
    return {"ld_source": rng.normal(2.0, 0.1, n), "ld_target": rng.normal(-1.0, 0.1, n), "head": head.tolist(),
            "mlp": rng.normal(0.0, 0.05, size=(layers, n)).tolist(),
            "resid": rng.normal(0.0, 0.05, size=(layers, 3, n)).tolist()}


def analysis(model: str, pp: dict, reference: str | None = None, ref_pp: dict | None = None,
             layer_map: list[int] | None = None, transplant: dict | None = None) -> dict:
    models = {"model": {"name": model, "per_pair": pp}}
    if ref_pp is not None:
        models["reference"] = {"name": reference, "per_pair": ref_pp}
    out = {"model_names": {"model": model, "reference": reference}, "patching": {"models": models}}
    if layer_map is not None:
        out["patching"]["transplant"] = {"layer_map": layer_map, **({"per_pair": transplant} if transplant else {})}
    return out


def test_findings_over_seeds_rank_the_teachers_and_map_the_students():
    rng = np.random.default_rng(0)
    analyses = {}
    for seed in (0, 1, 2):
        deb = per_pair(rng, 6, 4, 40, {(5, 2): 1.0, (2, 1): 0.6})
        erm = per_pair(rng, 6, 4, 40, {(5, 2): 0.1})
        kd = per_pair(rng, 2, 4, 40, {(1, 2): 0.8})  # layer map [2, 5]: student L1 ← teacher L5
        moved = {"head": rng.normal(0.3, 0.05, size=(2, 4, 40)).tolist()}
        analyses[f"teacher_debiased-s{seed}"] = analysis("teacher_debiased", deb, "teacher_erm", erm)
        analyses[f"student_kd-s{seed}"] = analysis("student_kd", kd, "teacher_debiased", None, [2, 5], moved)
    f = mechanism_findings(analyses, n_boot=300)
    deb = f["variants"]["teacher_debiased"]
    assert deb["seeds"] == [0, 1, 2] and deb["gap"]["n_pairs"] == 120
    assert deb["top"][:2] == ["L5H2", "L2H1"]
    top = deb["components"]["L5H2"]
    assert top["ci_low"] > 0.8 and top["ci_high"] < 1.2 and top["share_of_gap"] == pytest.approx(1 / 3, abs=0.05)
    diff = {r["component"]: r["difference"] for r in f["teachers"]}
    assert diff["L5H2"]["ci_low"] > 0.5  # debiased − ERM, paired
    rows = {r["teacher_component"]: r for r in f["recovery"]["student_kd"]["components"]}
    assert rows["L5H2"]["student_component"] == "L1H2" and rows["L5H2"]["student"]["ci_low"] > 0.5
    assert rows["L5H2"]["transplant"]["mean"] == pytest.approx(0.3, abs=0.05)
    assert rows["L2H1"]["student_component"] == "L0H1"
    metrics = mechanism_metrics(f)
    assert "mechanism/teacher_debiased/L5H2/effect" in metrics and "mechanism/teacher_debiased/gap/ci_low" in metrics
    assert "mechanism/student_kd/recovers/L5H2/effect" in metrics
    assert "mechanism/teacher_debiased_minus_erm/L5H2/ci_high" in metrics
    text = "\n".join(mechanism_lines(f))
    assert "L5H2" in text and "student_kd" in text


def test_a_teacher_layer_without_a_copy_has_no_counterpart_and_nothing_patched_gives_nothing():
    rng = np.random.default_rng(1)
    analyses = {"teacher_debiased-s0": analysis("teacher_debiased", per_pair(rng, 6, 2, 10, {(3, 0): 1.0}),
                                                "teacher_erm", per_pair(rng, 6, 2, 10, {})),
                "student_kd-s0": analysis("student_kd", per_pair(rng, 2, 2, 10, {}), "teacher_debiased", None,
                                          [2, 5])}
    f = mechanism_findings(analyses, n_boot=100)
    row = next(r for r in f["recovery"]["student_kd"]["components"] if r["teacher_component"] == "L3H0")
    assert row["student_component"] is None and row["student"] is None
    assert mechanism_findings({"x-s0": {"model_names": {}}}) == {}
    assert mechanism_lines({}) == []


def test_component_names_and_parsing():
    result = {"head": np.zeros((2, 3, 4)), "mlp": np.zeros((2, 4)), "resid": np.zeros((2, 3, 4))}
    names = [n for n, _, _ in component_names(result)]
    assert names[:3] == ["L0H0", "L0H1", "L0H2"] and "L1.mlp" in names and "L1.resid.hypothesis" in names
    assert parse_component("L10H3") == ("head", 10, 3) and parse_component("L2.mlp") == ("mlp", 2, None)
    with pytest.raises(ValueError):
        parse_component("L1.resid.cls")
