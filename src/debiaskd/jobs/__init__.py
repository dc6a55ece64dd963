"""One job per pipeline step: what the kfp components (and the in-process runner) call."""
