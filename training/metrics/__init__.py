"""Evaluation metrics shared by training-time eval and the evaluation of exported models (``export/``).

Pure numpy / shapely / rapidfuzz, no Paddle import, and reducible across data-parallel ranks through
small numeric ``state()`` vectors."""
from training.metrics.det_icdar import DetMetric, image_match, to_polygon
from training.metrics.rec import LENGTH_BUCKETS, NormalizeConfig, RecMetric, length_bucket, normalize_text

__all__ = [
    "DetMetric",
    "image_match",
    "to_polygon",
    "RecMetric",
    "NormalizeConfig",
    "normalize_text",
    "length_bucket",
    "LENGTH_BUCKETS",
]
