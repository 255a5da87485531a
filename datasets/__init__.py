"""Stage 1: annotation readers, validation, synthetic data, augmentation and targets.

Importing any part of the project first runs :mod:`datasets.runtime` (the zlib/Paddle start-up fix)."""
from datasets import runtime as _runtime  # noqa: F401  -- must run before paddle is imported
