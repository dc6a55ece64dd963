"""MLflow pyfunc wrapper of a debiaskd model folder (logged as models-from-code: no pickle).

``mlflow.pyfunc.load_model(uri).predict(DataFrame(premise=…, hypothesis=…))`` returns the
predicted label and its probability. The weights stay safetensors inside the artifacts.
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class DebiaskdPyfunc(PythonModel):
    def load_context(self, context) -> None:
        from debiaskd.models import load_model

        self.loaded = load_model(context.artifacts["model_dir"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        from debiaskd.inference import predict_proba

        probs = predict_proba(self.loaded, model_input)
        names = self.loaded.label_names
        best = probs.argmax(axis=1)
        return pd.DataFrame({"label": [names[i] for i in best], "confidence": probs.max(axis=1)})


mlflow.models.set_model(DebiaskdPyfunc())
