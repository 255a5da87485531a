"""Stage 3: inference models (paddle.jit.save), parity checks, ONNX, predictors and the OCR pipeline."""
from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle
