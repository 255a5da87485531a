"""Models-from-code entry point of the registered pyfunc: MLflow copies this file into every logged model and
runs it at load time.

Why not a pickled instance: a pickle of :class:`registry.pyfunc_model.OCRPyfuncModel` is code execution on
load and breaks when the class moves; this file only imports the class from the project code bundled with
the model (``code_paths``) and hands MLflow an instance.
"""
from __future__ import annotations

import mlflow.models

from registry.pyfunc_model import OCRPyfuncModel

__all__: list[str] = []

mlflow.models.set_model(OCRPyfuncModel())
