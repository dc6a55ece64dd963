"""``debiaskd analyze``: attention patterns, head ablation and probes of a model (and its teacher).

:func:`analyze` writes ``analysis.json`` and PNG plots into ``out_dir`` and returns the JSON
dict (its ``plots`` entry lists the PNG paths). ``model`` is the model under study (a
student, say) and ``reference`` the model it is compared with (its teacher).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from debiaskd.analysis import plots
from debiaskd.analysis.attention import (
    PairBatch,
    attention_profile,
    encode_batch,
    forward_internals,
    head_similarity,
)
from debiaskd.analysis.circuits import channel_importance, counterparts, head_importance, top_heads
from debiaskd.analysis.patching import (
    effect_intervals,
    encode_pairs,
    minimal_pairs,
    patching_map,
    path_patch,
    per_pair,
    summarize,
    transplant_map,
)
from debiaskd.analysis.probes import nli_probes, vision_probes
from debiaskd.core.config import StudyConfig
from debiaskd.core.metrics import gold_indices, is_two_way
from debiaskd.data.schema import NO_HEURISTIC, TWO_WAY_LABELS, ImageSplit
from debiaskd.evaluation.evaluate import _json_safe, sample_split
from debiaskd.tasks import task_of
from debiaskd.training.models import LoadedModel, evenly_spaced_layers, load_model

ANALYSIS_FILE = "analysis.json"
TOP_K = 5


def _load(model: LoadedModel | str | Path) -> LoadedModel:
    loaded = model if isinstance(model, LoadedModel) else load_model(model, attn_implementation="eager")
    loaded.model.to("cpu").eval()
    return loaded


def _name(loaded: LoadedModel, fallback: str) -> str:
    return str(loaded.meta.get("variant") or loaded.meta.get("name") or fallback)


def _subsets(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Bias-aligned rows vs anti-bias rows (the shortcut gives the wrong answer)."""
    if "bias_aligned" in frame.columns:
        aligned = frame["bias_aligned"].fillna(False).astype(bool).to_numpy()
    else:
        aligned = (frame["label"].astype(str) == "entailment").to_numpy()
    biased = np.ones(len(frame), dtype=bool)
    if "heuristic" in frame.columns:
        biased = frame["heuristic"].astype(str).to_numpy() != NO_HEURISTIC
    return {"aligned": aligned & biased, "anti_bias": ~aligned & biased}


def _mean(matrix: Any) -> float | None:
    if matrix is None:
        return None
    arr = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=np.float64)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else None


def _nli_model_report(loaded: LoadedModel, frame: pd.DataFrame, cfg: StudyConfig, seed: int
                      ) -> tuple[dict[str, Any], PairBatch, Any]:
    batch = encode_batch(loaded.tokenizer, frame, cfg.nli_model.max_length)
    internals = forward_internals(loaded.model, batch)
    subsets = _subsets(frame)
    report: dict[str, Any] = {
        "name": loaded.meta.get("variant"),
        "layers": len(internals.attentions),
        "heads": int(internals.attentions[0].shape[1]) if internals.attentions else 0,
    }
    subsets_all = {**subsets, "all": np.ones(len(frame), dtype=bool)}
    report["attention"] = {
        k: attention_profile(internals.attentions, batch, torch.as_tensor(v)) for k, v in subsets_all.items()
    }
    two_way = is_two_way(frame["label"].tolist())
    names = list(TWO_WAY_LABELS) if two_way else loaded.label_names
    if cfg.analysis.ablation:
        rows = subsets["anti_bias"] if subsets["anti_bias"].any() else np.ones(len(frame), dtype=bool)
        gold = gold_indices(frame["label"][rows].tolist(), names, two_way=two_way)
        importance = head_importance(loaded.model, batch.select(torch.as_tensor(rows)), gold, loaded.label_names,
                                     two_way=two_way)
        importance["subset"] = "anti_bias" if subsets["anti_bias"].any() else "all"
        report["head_importance"] = importance
        report["top_heads"] = top_heads(importance, TOP_K)
    if cfg.analysis.probes:
        report["probes"] = nli_probes(internals.hidden_states, batch.attention_mask, frame, seed=seed)
    return report, batch, internals


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    att = report.get("attention", {})
    out = {
        "mean_overlap_share_aligned": _mean((att.get("aligned") or {}).get("overlap_share")),
        "mean_overlap_share_anti_bias": _mean((att.get("anti_bias") or {}).get("overlap_share")),
        "uniform_overlap_share": (att.get("all") or {}).get("uniform_overlap_share"),
    }
    shares = (att.get("all") or {}).get("overlap_share")
    if shares is not None:
        arr = np.array([[np.nan if v is None else v for v in row] for row in shares], dtype=np.float64)
        if np.isfinite(arr).any():
            layer, head = np.unravel_index(np.nanargmax(arr), arr.shape)
            out["max_overlap_head"] = f"L{layer}H{head}"
            out["max_overlap_share"] = float(arr[layer, head])
    if report.get("top_heads"):
        top = report["top_heads"][0]
        out["most_important_head"] = top["head"]
        out["max_head_accuracy_drop"] = top["accuracy_drop"]
        out["max_head_logprob_drop"] = top["logprob_drop"]
    return out


def _best_layers(probes: dict[str, Any] | None) -> dict[str, int | None]:
    out: dict[str, int | None] = {}
    for target, accs in (probes or {}).get("accuracy", {}).items():
        vals = [(-1.0 if a is None else a) for a in accs]
        out[target] = int(np.argmax(vals)) if vals and max(vals) >= 0 else None
    return out


def _digest(result: dict[str, Any]) -> dict[str, Any]:
    """Top-level headline numbers of the model under study (what the report shows)."""
    model = result["models"]["model"]
    summary = model.get("summary", {})
    out: dict[str, Any] = {
        "overlap_attention_aligned": summary.get("mean_overlap_share_aligned"),
        "overlap_attention_anti_bias": summary.get("mean_overlap_share_anti_bias"),
        "mean_overlap_attention": _mean(((model.get("attention") or {}).get("all") or {}).get("overlap_share")),
        "top_heads": [h["head"] for h in model.get("top_heads") or []],
        "probe_best_layer": _best_layers(model.get("probes")),
    }
    if "counterparts" in result:
        out["student_counterparts"] = result["counterparts"]
    return out


def analyze_nli(models: dict[str, LoadedModel], frame: pd.DataFrame, out: Path, cfg: StudyConfig, seed: int
                 ) -> dict[str, Any]:
    result: dict[str, Any] = {"task": "nli", "n_examples": len(frame),
                              "subsets": {k: int(v.sum()) for k, v in _subsets(frame).items()}, "models": {}}
    batches, internals, pngs = {}, {}, []
    for role, loaded in models.items():
        report, batches[role], internals[role] = _nli_model_report(loaded, frame, cfg, seed)
        report["summary"] = _summary(report)
        result["models"][role] = report
        pngs.append(plots.plot_attention_heatmap(
            {k: report["attention"][k] for k in ("aligned", "anti_bias")}, out / f"{role}_overlap_attention.png",
            title=f"{role} overlap share"))
        pngs.append(plots.plot_attention_heatmap(
            {k: report["attention"][k] for k in ("aligned", "anti_bias")}, out / f"{role}_attention_entropy.png",
            title=f"{role} entropy", key="entropy"))
        if "head_importance" in report:
            pngs.append(plots.plot_head_importance(report["head_importance"], out / f"{role}_head_importance.png",
                                                   title=f"{role}: head ablation on anti-bias examples"))
    probe_reports = {role: r["probes"] for role, r in result["models"].items() if "probes" in r}
    if probe_reports:
        pngs.append(plots.plot_probes(probe_reports, out / "probes.png"))
    if "reference" in models:
        same_inputs = torch.equal(batches["model"].inputs["input_ids"], batches["reference"].inputs["input_ids"])
        if same_inputs:
            sim = head_similarity(internals["reference"].attentions, internals["model"].attentions,
                                  batches["model"].attention_mask)
            result["head_similarity"] = sim
            ref_top = result["models"]["reference"].get("top_heads") or []
            result["counterparts"] = counterparts(ref_top, sim)
            anti = "anti_bias" if result["subsets"]["anti_bias"] else "all"
            pngs.append(plots.plot_teacher_student(
                sim, result["models"]["reference"]["attention"][anti]["overlap_share"],
                result["models"]["model"]["attention"][anti]["overlap_share"], out / "teacher_vs_student.png"))
        else:
            result["head_similarity"] = None
            result["head_similarity_skipped"] = "the two models tokenise the inputs differently"
    result["plots"] = [str(p) for p in pngs]
    return result


def analyze_vision(models: dict[str, LoadedModel], data: ImageSplit, out: Path, cfg: StudyConfig, seed: int
                    ) -> dict[str, Any]:
    frame = data.frame
    subsets = _subsets(frame)
    anti = subsets["anti_bias"] if subsets["anti_bias"].any() else np.ones(len(frame), dtype=bool)
    result: dict[str, Any] = {"task": "vision", "n_examples": len(frame),
                              "subsets": {k: int(v.sum()) for k, v in subsets.items()}, "models": {}}
    pngs, probe_reports = [], {}
    for role, loaded in models.items():
        names = [str(n) for n in (loaded.meta.get("label_names") or data.class_names)]
        report: dict[str, Any] = {"name": loaded.meta.get("variant")}
        if cfg.analysis.probes:
            report["probes"] = probe_reports[role] = vision_probes(loaded.model, data.images, frame, seed)
        if cfg.analysis.ablation and hasattr(loaded.model, "head"):
            gold = gold_indices(frame["label"][anti].tolist(), names)
            report["channel_importance"] = channel_importance(loaded.model, data.images[anti], gold, top=10)
            pngs.append(plots.plot_channel_importance(report["channel_importance"],
                                                      out / f"{role}_channel_importance.png"))
        result["models"][role] = report
    if probe_reports:
        pngs.append(plots.plot_probes(probe_reports, out / "probes.png", title="colour / label probes"))
    result["plots"] = [str(p) for p in pngs]
    return result


def _layer_map(model: LoadedModel, reference: LoadedModel, cfg: StudyConfig) -> list[int] | None:
    """The teacher layer each student layer was (or would be) copied from at teacher-weight initialisation."""
    n_s = getattr(model.model.config, "num_hidden_layers", None)
    n_t = getattr(reference.model.config, "num_hidden_layers", None)
    if not n_s or not n_t or n_s >= n_t:  # a model as deep as its reference is no student of it
        return None
    chosen = model.meta.get("layer_map") or cfg.distill.init_layers
    if chosen and len(chosen) == n_s and max(chosen) < n_t:
        return [int(x) for x in chosen]
    return evenly_spaced_layers(int(n_t), int(n_s))


def _path_pairs(top: list[dict[str, Any]], k: int = 3) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Sender → receiver head pairs among the ``k`` top heads (the receiver in a later layer)."""
    heads = [(int(c["component"][1:].split("H")[0]), int(c["component"].split("H")[1]))
             for c in top if c["kind"] == "head"][:k]
    return [(a, b) for a in heads for b in heads if b[0] > a[0]]


def patching_report(models: dict[str, LoadedModel], frame: pd.DataFrame, out: Path, cfg: StudyConfig, seed: int,
                    patch_reference: bool = True) -> tuple[dict[str, Any], list[Path]]:
    """Activation patching of every model on ``cfg.analysis.patching_pairs`` minimal pairs of ``frame``.

    Per role: the summary (means and bootstrap intervals of every component, the top components),
    the per-pair effects (for intervals over seeds in the report), path patching between the top
    heads, and the seconds it took (the reference only when ``patch_reference``); with a reference,
    the transplant of the reference's heads into the model through the layer map, where the heads'
    shapes allow."""
    pairs = minimal_pairs(frame, cfg.analysis.patching_pairs, seed)
    result: dict[str, Any] = {"n_pairs": len(pairs), "seed": seed,
                              "subcases": pairs["subcase"].astype(str).value_counts().sort_index().to_dict()
                              if "subcase" in pairs.columns else {}, "models": {}}
    if len(pairs) < 2:
        result["skipped"] = "fewer than two anti-bias overlap pairs with a derivable twin"
        return result, []
    n_boot, conf = max(cfg.eval.bootstrap, 200), cfg.eval.confidence
    encoded = {}
    for role, loaded in models.items():
        started = time.perf_counter()
        source, target = encoded[role] = encode_pairs(loaded.tokenizer, pairs, cfg.nli_model.max_length)
        if role == "reference" and not patch_reference:
            continue
        raw = patching_map(loaded.model, source, target, loaded.label_names, batch_size=cfg.eval.batch_size)
        summary = summarize(raw, n_boot, conf)
        paths = []
        for sender, receiver in _path_pairs(summary["top"]):
            eff = path_patch(loaded.model, source, target, loaded.label_names, sender, receiver,
                             batch_size=cfg.eval.batch_size)
            iv = effect_intervals(eff[None, :], n_boot, conf)
            paths.append({"sender": "L{}H{}".format(*sender), "receiver": "L{}H{}".format(*receiver),
                          **{k: float(v[0]) for k, v in iv.items()}})
        result["models"][role] = {"name": loaded.meta.get("variant"), "summary": summary, "path": paths,
                                  "per_pair": per_pair(raw), "seconds": time.perf_counter() - started}
    if "reference" in models:
        same = torch.equal(encoded["model"][0].inputs["input_ids"], encoded["reference"][0].inputs["input_ids"])
        layer_map = _layer_map(models["model"], models["reference"], cfg)
        moved = None
        if same and layer_map is not None:
            started = time.perf_counter()
            moved = transplant_map(models["reference"].model, models["model"].model, layer_map, *encoded["model"],
                                   models["model"].label_names, batch_size=cfg.eval.batch_size)
        if moved is not None:
            iv = effect_intervals(moved["head"], n_boot, conf)
            result["transplant"] = {"layer_map": layer_map, **{k: v.tolist() for k, v in iv.items()},
                                    "per_pair": per_pair({"head": moved["head"]}),
                                    "seconds": time.perf_counter() - started}
        elif layer_map is not None:
            result["transplant"] = {"layer_map": layer_map, "skipped": "the heads differ in number or width"}
    pngs = [plots.plot_patching({role: r["summary"] for role, r in result["models"].items()},
                                out / "patching.png", names=_roles(models))]
    return result, pngs


def _roles(models: dict[str, LoadedModel]) -> dict[str, str]:
    return {role: _name(m, role) for role, m in models.items()}


def analyze(
    model: LoadedModel | str | Path,
    data: pd.DataFrame | ImageSplit,
    out_dir: str | Path,
    cfg: StudyConfig,
    reference: LoadedModel | str | Path | None = None,
    seed: int = 0,
    patch_reference: bool = True,
) -> dict[str, Any]:
    """Analyse ``model`` (and ``reference``, its teacher) on ``cfg.analysis.n_examples`` rows of ``data``.

    The rows are a seeded sample stratified by group. With ``cfg.analysis.patching`` (NLI), also
    activation patching on ``cfg.analysis.patching_pairs`` minimal pairs drawn from the whole of
    ``data`` (:func:`patching_report`; the reference is patched too unless ``patch_reference`` is
    false). Writes ``analysis.json`` and the PNGs into ``out_dir``; returns the JSON dict.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    models = {"model": _load(model)}
    if reference is not None:
        models["reference"] = _load(reference)
    sample = sample_split(data, cfg.analysis.n_examples, seed)
    torch.manual_seed(seed)
    task = task_of(sample).name
    result = BY_TASK[task](models, sample, out, cfg, seed)
    patch = PATCHING_BY_TASK.get(task)
    if patch is not None and cfg.analysis.patching:
        torch.manual_seed(seed)
        result["patching"], pngs = patch(models, data.reset_index(drop=True), out, cfg, seed, patch_reference)
        result["plots"] = [*result.get("plots", []), *(str(p) for p in pngs)]
    result["model_names"] = _roles(models)
    result.update(_digest(result))
    result = _json_safe(result)
    (out / ANALYSIS_FILE).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return result


def _analyze_pairs(models: dict[str, LoadedModel], sample: pd.DataFrame, out: Path, cfg: StudyConfig,
                   seed: int) -> dict[str, Any]:
    return analyze_nli(models, sample.reset_index(drop=True), out, cfg, seed)


#: the analysis of each task, by task name (a registry: a new task adds its analysis here)
BY_TASK = {"nli": _analyze_pairs, "vision": analyze_vision}
#: activation patching, for the tasks whose challenge gives minimal pairs and whose models have heads to patch
PATCHING_BY_TASK = {"nli": patching_report}
