"""Bias-stratified evaluation: batched inference and the metrics of one model on one split."""
