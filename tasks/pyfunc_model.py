"""The MLflow pyfunc of fitted targets, logged as "models from code": MLflow runs this file, so
nothing is pickled; the weights are the safetensors inside the model's `targets` artifact (a
folder `peft_core.model_set.save_model_set` wrote: one bundle per target, its sources inside).

Input: a DataFrame of the targets' input fields, plus a `model` (or `task`) column when the model
holds several targets; output: one record per row, as `peft_core.inference.predict` returns.
Only MLflow and peft_core are imported: a server needs nothing else of the project.
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class FittedTargets(PythonModel):
    def load_context(self, context) -> None:
        from peft_core.model_set import FittedModelSet
        from peft_core.model_set_files import model_set_targets

        self.models = FittedModelSet(model_set_targets(context.artifacts["targets"]))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[dict]:
        return self.models.predict(model_input.to_dict(orient="records"))


mlflow.models.set_model(FittedTargets())
