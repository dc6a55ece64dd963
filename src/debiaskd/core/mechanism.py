"""The mechanism findings over seeds: activation-patching effects with hierarchical intervals.

Pure (numpy only): reads the per-pair patching effects each analysis wrote
(:func:`debiaskd.analysis.patching.per_pair`), one analysis per variant and seed, and gives every
component's mean effect with a hierarchical bootstrap interval (seeds resampled, then pairs within
each seed: :func:`debiaskd.core.metrics.hierarchical_bootstrap_ci_ragged`), the top components of
each model, the paired difference between the two teachers, and whether the students recover the
debiased teacher's top components at the student layers copied from them (the layer map of the
teacher-weight initialisation).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from debiaskd.core.metrics import hierarchical_bootstrap_ci_ragged

#: the residual-stream segments a patch covers
SEGMENTS = ("cls", "premise", "hypothesis")
TEACHERS = ("teacher_debiased", "teacher_erm")
_SEED = re.compile(r"-s(\d+)$")


def component_names(result: Mapping[str, Any]) -> list[tuple[str, str, tuple[int, ...]]]:
    """``(name, kind, index)`` of every component of a patching result (per-pair arrays ``head``
    ``(L, H, N)``, ``mlp`` ``(L, N)``, ``resid`` ``(L, 3, N)``): ``L3H2``, ``L3.mlp``, ``L3.resid.cls``."""
    names = []
    for kind in ("head", "mlp", "resid"):
        if kind not in result:
            continue
        arr = np.asarray(result[kind], dtype=np.float64)
        for index in np.ndindex(*arr.shape[:-1]):
            if not np.isfinite(arr[index]).all():
                continue
            if kind == "head":
                names.append((f"L{index[0]}H{index[1]}", kind, index))
            elif kind == "mlp":
                names.append((f"L{index[0]}.mlp", kind, index))
            else:
                names.append((f"L{index[0]}.resid.{SEGMENTS[index[1]]}", kind, index))
    return names


def parse_component(name: str) -> tuple[str, int, int | None]:
    """``"L3H2"`` → ``("head", 3, 2)``, ``"L3.mlp"`` → ``("mlp", 3, None)``."""
    m = re.fullmatch(r"L(\d+)H(\d+)", name)
    if m:
        return "head", int(m.group(1)), int(m.group(2))
    m = re.fullmatch(r"L(\d+)\.mlp", name)
    if m:
        return "mlp", int(m.group(1)), None
    raise ValueError(f"not a head or MLP component: {name!r}")


def _seed_of(name: str) -> int | None:
    m = _SEED.search(name)
    return int(m.group(1)) if m else None


def collect(analyses: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Per-pair patching effects by variant and seed, from ``{folder name: analysis.json}``
    (folders named ``<variant>-s<seed>``; a variant patched in several analyses of one seed counts once)."""
    maps: dict[str, dict[int, dict[str, Any]]] = {}
    transplants: dict[str, dict[int, dict[str, Any]]] = {}
    for folder, data in sorted(analyses.items()):
        patching = data.get("patching") or {}
        seed = _seed_of(folder)
        seed = int(patching.get("seed", 0)) if seed is None else seed
        names = data.get("model_names") or {}
        for role, entry in (patching.get("models") or {}).items():
            variant = str(entry.get("name") or names.get(role) or role)
            if entry.get("per_pair"):
                maps.setdefault(variant, {}).setdefault(seed, entry["per_pair"])
        moved = patching.get("transplant")
        if moved and moved.get("layer_map"):
            transplants.setdefault(str(names.get("model", folder)), {})[seed] = moved
    return {"maps": maps, "transplants": transplants}


def _interval(per_seed: Sequence[np.ndarray], n_boot: int, confidence: float, seed: int = 0) -> dict[str, Any]:
    per_seed = [np.asarray(a, dtype=np.float64) for a in per_seed if len(a)]
    out = hierarchical_bootstrap_ci_ragged(per_seed, [np.zeros_like(a) for a in per_seed], n_boot, confidence, seed)
    return {"mean": out["mean"], "ci_low": out["ci_low"], "ci_high": out["ci_high"], "n_seeds": out["n_seeds"],
            "n_pairs": int(sum(len(a) for a in per_seed))}


def _component_values(per_pair: Mapping[str, Any], kind: str, index: tuple[int, ...]) -> np.ndarray | None:
    arr = np.asarray(per_pair.get(kind, []), dtype=np.float64)
    try:
        values = arr[index]
    except IndexError:
        return None
    return values if values.ndim == 1 and np.isfinite(values).all() else None


def variant_effects(by_seed: Mapping[int, Mapping[str, Any]], n_boot: int = 1000, confidence: float = 0.95,
                    top: int = 5) -> dict[str, Any]:
    """Every component's mean effect over seeds and pairs with its hierarchical interval, the gap
    (the anti-bias pair's logit difference minus its twin's) and the ``top`` heads and MLPs by mean."""
    seeds = sorted(by_seed)
    gaps = [np.asarray(by_seed[s]["ld_source"], dtype=np.float64) - np.asarray(by_seed[s]["ld_target"])
            for s in seeds]
    out: dict[str, Any] = {"seeds": seeds, "gap": _interval(gaps, n_boot, confidence), "components": {}}
    for name, kind, index in component_names(by_seed[seeds[0]]):
        values = [_component_values(by_seed[s], kind, index) for s in seeds]
        if any(v is None for v in values):
            continue
        iv = _interval(values, n_boot, confidence)
        iv["kind"] = kind
        iv["share_of_gap"] = iv["mean"] / out["gap"]["mean"] if out["gap"]["mean"] else None
        out["components"][name] = iv
    ranked = sorted(((n, c) for n, c in out["components"].items() if c["kind"] != "resid"),
                    key=lambda item: -item[1]["mean"])
    out["top"] = [n for n, _ in ranked[:top]]
    return out


def _student_site(component: str, layer_map: Sequence[int]) -> str | None:
    """The student component at the student layer copied from the teacher component's layer, if any."""
    kind, layer, head = parse_component(component)
    if layer not in layer_map:
        return None
    s_layer = list(layer_map).index(layer)
    return f"L{s_layer}H{head}" if kind == "head" else f"L{s_layer}.mlp"


def mechanism_findings(analyses: Mapping[str, Mapping[str, Any]], n_boot: int = 1000, confidence: float = 0.95,
                       top: int = 5) -> dict[str, Any]:
    """The study's mechanism summary from its analyses (``{folder name: analysis.json}``).

    ``variants``: :func:`variant_effects` of every patched model; ``teachers``: for the top
    components of either teacher, ``teacher_debiased − teacher_erm`` paired on the same pairs
    (hierarchical interval); ``recovery``: for each student with a layer map, each of
    ``teacher_debiased``'s top components, the student's effect at the component copied from it
    (None where no student layer was copied from that teacher layer) and, where the heads' shapes
    allow, the effect of transplanting the teacher's head into it. Empty when nothing was patched.
    """
    got = collect(analyses)
    maps = got["maps"]
    if not maps:
        return {}
    out: dict[str, Any] = {"variants": {v: variant_effects(s, n_boot, confidence, top) for v, s in maps.items()}}
    if all(t in maps for t in TEACHERS):
        deb, erm = maps["teacher_debiased"], maps["teacher_erm"]
        seeds = sorted(set(deb) & set(erm))
        wanted = list(dict.fromkeys(out["variants"]["teacher_debiased"]["top"] + out["variants"]["teacher_erm"]["top"]))
        rows = []
        for name in wanted:
            kind, layer, head = parse_component(name)
            index = (layer, head) if kind == "head" else (layer,)
            a = [_component_values(deb[s], kind, index) for s in seeds]
            b = [_component_values(erm[s], kind, index) for s in seeds]
            if any(v is None for v in a + b):
                continue
            diff = hierarchical_bootstrap_ci_ragged(a, b, n_boot, confidence)
            rows.append({"component": name, "teacher_debiased": out["variants"]["teacher_debiased"]["components"][name],
                         "teacher_erm": out["variants"]["teacher_erm"]["components"][name],
                         "difference": {k: diff[k] for k in ("mean", "ci_low", "ci_high", "n_seeds")}})
        out["teachers"] = rows
    recovery: dict[str, Any] = {}
    teacher = out["variants"].get("teacher_debiased")
    for student, by_seed in got["transplants"].items():
        if teacher is None or student not in out["variants"] or student in TEACHERS:
            continue
        first = by_seed[sorted(by_seed)[0]]
        layer_map = [int(x) for x in first["layer_map"]]
        rows = []
        for name in teacher["top"]:
            site = _student_site(name, layer_map)
            row: dict[str, Any] = {"teacher_component": name, "teacher": teacher["components"][name],
                                   "student_component": site, "student": None, "transplant": None}
            if site is not None:
                row["student"] = out["variants"][student]["components"].get(site)
                kind, s_layer, head = parse_component(site)
                if kind == "head" and all(by_seed[s].get("per_pair") for s in by_seed):
                    values = [_component_values(by_seed[s]["per_pair"], "head", (s_layer, head))
                              for s in sorted(by_seed)]
                    if all(v is not None for v in values):
                        row["transplant"] = _interval(values, n_boot, confidence)
            rows.append(row)
        recovery[student] = {"layer_map": layer_map, "components": rows}
    out["recovery"] = recovery
    return out


def _excludes_zero(iv: Mapping[str, Any] | None) -> bool:
    return bool(iv) and iv.get("ci_low") is not None and (iv["ci_low"] > 0 or iv["ci_high"] < 0)


def mechanism_metrics(findings: Mapping[str, Any]) -> dict[str, float]:
    """MLflow metrics ``mechanism/...``: each model's gap and top components (mean and interval), the
    teachers' paired differences, and each student's effect at the components copied from the teacher's top."""
    metrics: dict[str, float] = {}

    def put(prefix: str, iv: Mapping[str, Any] | None) -> None:
        for key, suffix in (("mean", "effect"), ("ci_low", "ci_low"), ("ci_high", "ci_high")):
            if iv and isinstance(iv.get(key), int | float):
                metrics[f"{prefix}/{suffix}"] = float(iv[key])

    for variant, entry in (findings.get("variants") or {}).items():
        put(f"mechanism/{variant}/gap", entry["gap"])
        for name in entry["top"]:
            put(f"mechanism/{variant}/{name}", entry["components"][name])
    for row in findings.get("teachers") or []:
        put(f"mechanism/teacher_debiased_minus_erm/{row['component']}", row["difference"])
    for student, entry in (findings.get("recovery") or {}).items():
        for row in entry["components"]:
            put(f"mechanism/{student}/recovers/{row['teacher_component']}", row["student"])
            put(f"mechanism/{student}/transplant/{row['teacher_component']}", row["transplant"])
    return metrics


def _num(x: float) -> str:
    return f"{x:+.3f}" if x == 0 or abs(x) >= 1e-3 else f"{x:+.1e}"


def _fmt(iv: Mapping[str, Any] | None) -> str:
    if not iv or iv.get("mean") is None:
        return "–"
    if iv.get("ci_low") is None:
        return _num(iv["mean"])
    star = "*" if _excludes_zero(iv) else ""
    return f"{_num(iv['mean'])} [{_num(iv['ci_low'])}, {_num(iv['ci_high'])}]{star}"


def mechanism_lines(findings: Mapping[str, Any], confidence: float = 0.95) -> list[str]:
    """The report's section on activation patching (markdown lines)."""
    if not findings:
        return []
    conf = round(100 * confidence)
    lines = ["", "## Mechanism: activation patching on minimal pairs", "",
             "Each anti-bias overlap pair (not entailed, every hypothesis word in the premise) is paired with its "
             "bias-aligned twin (premise, premise); one component's activation of the anti-bias run is patched into "
             "the twin's run and the change in the twin's logit difference (non-entailment − entailment) is the "
             "component's effect (positive: it carries the anti-bias answer). *Gap*: the anti-bias pair's logit "
             f"difference minus its twin's. Means over seeds and pairs, {conf}% hierarchical bootstrap interval "
             "(seeds, then pairs); * = the interval excludes 0.", ""]
    rows = []
    for variant, entry in findings["variants"].items():
        top = "; ".join(f"{n} {_fmt(entry['components'][n])}" for n in entry["top"][:3])
        rows.append([f"`{variant}`", str(len(entry["seeds"])), str(entry["gap"]["n_pairs"]), _fmt(entry["gap"]), top])
    lines += ["| model | seeds | pairs | gap | top components (effect [CI]) |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if findings.get("teachers"):
        lines += ["", f"`teacher_debiased` − `teacher_erm` at either teacher's top components (paired, {conf}% "
                  "hierarchical interval):", ""]
        for row in findings["teachers"]:
            lines.append(f"- {row['component']}: debiased {_fmt(row['teacher_debiased'])}, ERM "
                         f"{_fmt(row['teacher_erm'])}, difference {_fmt(row['difference'])}")
    for student, entry in (findings.get("recovery") or {}).items():
        lines += ["", f"`{student}` at the components copied from `teacher_debiased`'s top ones (layer map "
                  f"{entry['layer_map']}); *transplant*: the teacher's head patched into the student's:", ""]
        for row in entry["components"]:
            if row["student_component"] is None:
                lines.append(f"- {row['teacher_component']} ({_fmt(row['teacher'])}): no student layer was copied "
                             "from its layer — the pathway has no counterpart")
                continue
            lines.append(f"- {row['teacher_component']} ({_fmt(row['teacher'])}) → {row['student_component']}: "
                         f"student {_fmt(row['student'])}, transplant {_fmt(row['transplant'])}")
    return lines
