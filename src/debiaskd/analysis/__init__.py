"""Mechanism analysis: attention patterns, head ablation, linear probes and their plots
(:func:`debiaskd.analysis.run.analyze` runs them all on one model and its reference).

Everything reads models through forward hooks or ``output_attentions``; no model code is edited.
"""
