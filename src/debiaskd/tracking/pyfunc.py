"""MLflow pyfunc wrapper of a debiaskd model folder (logged as models-from-code: no pickle).

``mlflow.pyfunc.load_model(uri).predict(...)`` — and so ``mlflow models serve`` — takes a frame of
``premise``/``hypothesis`` pairs (NLI) or an array of uint8 images ``(N, 3, H, W)`` (vision) and returns
the predicted ``label``, its probability (``confidence``) and one ``p_<label>`` column per class.
The weights stay safetensors inside the artifacts.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from debiaskd.data.schema import ImageSplit
from debiaskd.evaluation.inference import predict_proba
from debiaskd.training.models import load_model


def probability_columns(label_names) -> list[str]:
    """The output columns holding each class's probability (``p_entailment``, ``p_3``)."""
    return [f"p_{name}" for name in label_names]


class DebiaskdPyfunc(PythonModel):
    def load_context(self, context) -> None:
        self.loaded = load_model(context.artifacts["model_dir"])

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        names = self.loaded.label_names
        if isinstance(model_input, np.ndarray):  # vision: uint8 images (N, 3, H, W)
            images = np.asarray(model_input, dtype=np.uint8)
            data = ImageSplit(images, pd.DataFrame({"image_id": [str(i) for i in range(len(images))]}),
                              tuple(names))
        else:
            data = model_input
        probs = predict_proba(self.loaded, data)
        best = probs.argmax(axis=1)
        out = pd.DataFrame({"label": [names[i] for i in best], "confidence": probs.max(axis=1)})
        for column, values in zip(probability_columns(names), probs.T, strict=True):
            out[column] = values
        return out


mlflow.models.set_model(DebiaskdPyfunc())
