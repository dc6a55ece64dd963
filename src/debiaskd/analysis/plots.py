"""Figures for the analysis and the report (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _plt():
    # matplotlib: slow (~1 s) and only needed to draw; the backend is forced to Agg before pyplot loads
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # after use("Agg"): pyplot picks its backend on import

    return plt


def _save(fig: Any, out_png: str | Path) -> Path:
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    _plt().close(fig)
    return out


def _matrix(values: Any) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in values], dtype=np.float64)


def _heat(ax: Any, matrix: np.ndarray, title: str, vmin: float | None = None, vmax: float | None = None,
          cmap: str = "viridis", xlabel: str = "head", ylabel: str = "layer") -> Any:
    im = ax.imshow(matrix, aspect="auto", cmap=cmap, vmin=vmin, vmax=vmax, origin="lower")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if matrix.shape[0] <= 24:
        ax.set_yticks(range(matrix.shape[0]))
    if matrix.shape[1] <= 24:
        ax.set_xticks(range(matrix.shape[1]))
    return im


def plot_attention_heatmap(profiles: Mapping[str, Any], out_png: str | Path, title: str = "overlap attention share",
                           key: str = "overlap_share") -> Path:
    """Layer × head heat maps of ``key`` (overlap share or entropy), one panel per subset (aligned / anti-bias)."""
    plt = _plt()
    panels = [(name, _matrix(p[key])) for name, p in profiles.items() if p and p.get(key) is not None]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(4.2 * max(1, len(panels)), 3.4), squeeze=False)
    finite = [m[np.isfinite(m)] for _, m in panels]
    vmax = max((float(f.max()) for f in finite if f.size), default=1.0)
    for ax, (name, matrix) in zip(axes[0], panels, strict=False):
        im = _heat(ax, matrix, f"{title}: {name}", 0.0, vmax)
        fig.colorbar(im, ax=ax, fraction=0.046)
    return _save(fig, out_png)


def plot_head_importance(importance: Mapping[str, Any], out_png: str | Path, title: str = "head ablation",
                         top: int = 20) -> Path:
    """Bars of the drop in gold log-prob (and accuracy) for the most important heads."""
    plt = _plt()
    acc = np.asarray(importance["accuracy_drop"], dtype=np.float64)
    lp = np.asarray(importance["logprob_drop"], dtype=np.float64)
    cells = [(la, h) for la in range(acc.shape[0]) for h in range(acc.shape[1]) if np.isfinite(acc[la, h])]
    cells.sort(key=lambda c: (-acc[c], -lp[c]))
    cells = cells[:top]
    labels = [f"L{la}H{h}" for la, h in cells]
    x = np.arange(len(cells))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(cells) + 2), 3.2))
    ax.bar(x - 0.2, [acc[c] for c in cells], 0.4, label="accuracy drop")
    ax.bar(x + 0.2, [lp[c] for c in cells], 0.4, label="gold log-prob drop")
    ax.axhline(0.0, color="black", lw=0.6)
    ax.set_xticks(x, labels, rotation=60, fontsize=7)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, out_png)


def plot_probes(reports: Mapping[str, Mapping[str, Any]], out_png: str | Path, title: str = "linear probes") -> Path:
    """Probe accuracy by layer, one panel per target, one line per model (dashed: majority rate)."""
    plt = _plt()
    targets = sorted({t for r in reports.values() for t in r["accuracy"]})
    fig, axes = plt.subplots(1, max(1, len(targets)), figsize=(3.6 * max(1, len(targets)), 3.0), squeeze=False)
    for ax, target in zip(axes[0], targets, strict=False):
        for name, report in reports.items():
            acc = report["accuracy"].get(target)
            if acc is None:
                continue
            ys = [np.nan if v is None else v for v in acc]
            line = ax.plot(report["layers"], ys, marker="o", label=name)[0]
            majority = report["majority"].get(target)
            if majority is not None:
                ax.axhline(majority, ls="--", lw=0.8, color=line.get_color())
        ax.set_title(f"{title}: {target}", fontsize=9)
        ax.set_xlabel("layer (0 = embeddings)")
        ax.set_ylim(0.0, 1.05)
        ax.legend(fontsize=7)
    return _save(fig, out_png)


def plot_teacher_student(similarity: Mapping[str, Any], teacher_overlap: Any, student_overlap: Any,
                         out_png: str | Path) -> Path:
    """Panel: teacher and student overlap share per head, and the student × teacher head similarity."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    t, s = _matrix(teacher_overlap), _matrix(student_overlap)
    vmax = float(np.nanmax(np.concatenate([t.ravel(), s.ravel()]))) if np.isfinite(t).any() else 1.0
    fig.colorbar(_heat(axes[0], t, "teacher overlap share (anti-bias)", 0.0, vmax), ax=axes[0], fraction=0.046)
    fig.colorbar(_heat(axes[1], s, "student overlap share (anti-bias)", 0.0, vmax), ax=axes[1], fraction=0.046)
    sim = np.asarray(similarity["similarity"], dtype=np.float64)
    im = _heat(axes[2], sim, "head similarity (1 − JS)", 0.0, 1.0, cmap="magma", xlabel="teacher head",
               ylabel="student head")
    if sim.shape[1] > 24:
        axes[2].set_xticks([])
    fig.colorbar(im, ax=axes[2], fraction=0.046)
    return _save(fig, out_png)


def plot_channel_importance(importance: Mapping[str, Any], out_png: str | Path, top: int = 20) -> Path:
    plt = _plt()
    rows = importance["top_channels"][:top]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.3 * len(rows) + 2), 3.0))
    ax.bar(range(len(rows)), [r["accuracy_drop"] for r in rows])
    ax.set_xticks(range(len(rows)), [str(r["channel"]) for r in rows], fontsize=7)
    ax.set_xlabel("feature channel")
    ax.set_title("channel ablation: anti-bias accuracy drop", fontsize=9)
    return _save(fig, out_png)


def _group_value(entry: Any) -> float:
    if isinstance(entry, Mapping):
        entry = entry.get("accuracy")
    return np.nan if entry is None else float(entry)


def plot_group_accuracies(summary_variants: Mapping[str, Mapping[str, Any]], out_png: str | Path,
                          groups: Sequence[str] | None = None, title: str = "challenge accuracy by group") -> Path:
    """Grouped bars: variants × challenge groups (from each variant's ``by_group``)."""
    plt = _plt()
    groups = list(groups or sorted({g for v in summary_variants.values() for g in (v.get("by_group") or {})}))
    names = list(summary_variants)
    width = 0.8 / max(1, len(names))
    x = np.arange(len(groups))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(groups) + 3), 3.8))
    for i, name in enumerate(names):
        by_group = summary_variants[name].get("by_group") or {}
        ax.bar(x + (i - (len(names) - 1) / 2) * width, [_group_value(by_group.get(g)) for g in groups], width,
               label=name)
    ax.set_xticks(x, groups, rotation=30, ha="right", fontsize=7)
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside, never over bars
    return _save(fig, out_png)


RETENTION_CAP = 2.5


def plot_retention(transfer: Mapping[str, Mapping[str, Any]], out_png: str | Path) -> Path:
    """Per student: overall robustness retention and per-group retention (dots); 1 = teacher level."""
    plt = _plt()
    names = list(transfer)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.8 * len(names) + 2), 3.6))
    for i, name in enumerate(names):
        entry = transfer[name]
        overall = entry.get("robustness_retention")
        ax.bar(i, np.nan if overall is None else overall, 0.6, color="tab:blue", alpha=0.7)
        per_group = [v for v in (entry.get("by_group_retention") or {}).values() if v is not None]
        shown = [min(v, RETENTION_CAP) for v in per_group]  # a teacher near 0% makes ratios explode
        clipped = [v > RETENTION_CAP for v in per_group]
        ax.scatter([i] * len(shown), shown, s=10, color="black", zorder=3)
        ax.scatter([i for c in clipped if c], [RETENTION_CAP for c in clipped if c], s=30, marker="^",
                   color="tab:orange", zorder=4)
    ax.axhline(1.0, color="tab:red", ls="--", lw=0.8)
    ax.set_ylim(0, RETENTION_CAP * 1.05)
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("student / teacher challenge accuracy")
    ax.set_title(f"robustness retention (bars: overall, dots: per group; ▲ above {RETENTION_CAP:g})", fontsize=9)
    return _save(fig, out_png)


def _patch_panel(ax: Any, summary: Mapping[str, Any], vmax: float, title: str) -> Any:
    """One model's patching map: heads (layer × head) then the MLP and the three residual segments."""
    heads = _matrix(summary["head"]["mean"]) if "head" in summary else np.zeros((0, 0))
    n_layers = heads.shape[0] or len((summary.get("mlp") or {}).get("mean") or [])
    extra = []
    labels = [f"H{h}" for h in range(heads.shape[1])]
    if "mlp" in summary:
        extra.append(np.asarray(summary["mlp"]["mean"], dtype=np.float64)[:, None])
        labels.append("mlp")
    if "resid" in summary:
        extra.append(_matrix(summary["resid"]["mean"]))
        labels += ["res:cls", "res:prem", "res:hyp"]
    matrix = np.concatenate([heads, *extra], axis=1) if extra else heads
    im = ax.imshow(matrix, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax, origin="lower")
    ax.set_title(title, fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
    ax.set_yticks(range(n_layers))
    ax.set_ylabel("layer")
    if heads.shape[1]:
        ax.axvline(heads.shape[1] - 0.5, color="black", lw=0.8)
    lows = [_matrix(summary["head"]["ci_low"])] if "head" in summary else []
    highs = [_matrix(summary["head"]["ci_high"])] if "head" in summary else []
    if "mlp" in summary:
        lows.append(np.asarray(summary["mlp"]["ci_low"], dtype=np.float64)[:, None])
        highs.append(np.asarray(summary["mlp"]["ci_high"], dtype=np.float64)[:, None])
    if "resid" in summary:
        lows.append(_matrix(summary["resid"]["ci_low"]))
        highs.append(_matrix(summary["resid"]["ci_high"]))
    if lows:
        low, high = np.concatenate(lows, axis=1), np.concatenate(highs, axis=1)
        for (r, c), lo in np.ndenumerate(low):
            if np.isfinite(lo) and (lo > 0 or high[r, c] < 0):  # the interval excludes 0
                ax.text(c, r, "*", ha="center", va="center", fontsize=7)
    return im


def plot_patching(summaries: Mapping[str, Mapping[str, Any]], out_png: str | Path,
                  names: Mapping[str, str] | None = None) -> Path:
    """Activation-patching maps, one panel per model: the mean change in the twin's logit difference
    (non-entailment − entailment) when a component takes the anti-bias pair's activation; * marks a
    component whose bootstrap interval excludes 0."""
    plt = _plt()
    items = [(role, s) for role, s in summaries.items() if s and ("head" in s or "mlp" in s)]
    fig, axes = plt.subplots(1, max(1, len(items)), figsize=(4.6 * max(1, len(items)), 3.6), squeeze=False)
    values = [np.abs(_matrix(s[k]["mean"]) if k != "mlp" else np.asarray(s[k]["mean"], dtype=np.float64))
              for _, s in items for k in ("head", "mlp", "resid") if k in s]
    vmax = max((float(np.nanmax(v)) for v in values if np.isfinite(v).any()), default=1.0) or 1.0
    im = None
    for ax, (role, s) in zip(axes[0], items, strict=False):
        gap = (s.get("gap") or {}).get("mean")
        title = f"{(names or {}).get(role, role)}: patching (gap {gap:+.2f}, n={s.get('n_pairs')})" \
            if gap is not None else str((names or {}).get(role, role))
        im = _patch_panel(ax, s, vmax, title)
    if im is not None:
        fig.colorbar(im, ax=list(axes[0]), fraction=0.03, label="Δ logit diff.")
    out = Path(out_png)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return out


def plot_mechanism(components: Sequence[str], series: Mapping[str, Sequence[Mapping[str, Any]]], out_png: str | Path,
                   title: str = "activation patching: top components (intervals over seeds and pairs)") -> Path:
    """Grouped bars with interval whiskers: each model's patching effect on each named component."""
    plt = _plt()
    x = np.arange(len(components))
    width = 0.8 / max(1, len(series))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.6 * len(components) + 2.5), 3.4))
    for i, (name, entries) in enumerate(series.items()):
        means = np.array([np.nan if e.get("mean") is None else e["mean"] for e in entries], dtype=np.float64)
        lo = np.array([np.nan if e.get("ci_low") is None else e["ci_low"] for e in entries], dtype=np.float64)
        hi = np.array([np.nan if e.get("ci_high") is None else e["ci_high"] for e in entries], dtype=np.float64)
        err = np.vstack([np.where(np.isfinite(lo), means - lo, 0.0), np.where(np.isfinite(hi), hi - means, 0.0)])
        ax.bar(x + (i - (len(series) - 1) / 2) * width, means, width, yerr=err, capsize=2,
               label=name)  # no bar where the model has no counterpart component (NaN)
    ax.axhline(0.0, color="black", lw=0.6)
    ax.set_xticks(x, list(components), rotation=60, fontsize=7)
    ax.set_ylabel("Δ logit diff. (non-ent − ent)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, out_png)
