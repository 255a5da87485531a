"""Stage 2: models, losses, metrics, the trainer and QAT. Entry points: ``python -m training.det|rec``."""
from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle
