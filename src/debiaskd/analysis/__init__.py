"""Mechanism analysis: attention patterns, head ablation, linear probes and their plots.

Everything reads models through forward hooks or ``output_attentions``; no model code is edited.
"""

from __future__ import annotations

__all__ = ["analyze"]


def analyze(*args, **kwargs):
    """See :func:`debiaskd.analysis.run.analyze` (imported lazily: matplotlib and sklearn are slow to load)."""
    from debiaskd.analysis.run import analyze as _analyze

    return _analyze(*args, **kwargs)
