"""MLflow: runs, the model registry and its aliases, logged models and their requirements."""
