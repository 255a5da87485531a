"""Stage 4: the MLflow model registry: versions with lineage, gated promotion, rollback, audit, pyfunc."""
from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle
