"""Training-time evaluation of dygraph models, through the serving pre/post-processing.

The resize policy (:mod:`datasets.resize`), DB post-process and CTC decode are the very functions the
exported pipeline uses, so the number a run reports is the number the deployed model gets (``export.evaluate``
measures it again on the exported files). Each data-parallel rank evaluates its own shard; the trainer sums
the metric states across ranks.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import paddle

from datasets.charset import Charset
from datasets.imageio import read_image
from datasets.resize import det_preprocess, rec_preprocess_batch
from datasets.sample import DetSample, RecSample
from training.metrics import DetMetric, RecMetric
from training.postprocess import DBPostProcess, ctc_greedy_decode, filter_det_boxes

__all__ = ["DetEvaluator", "RecEvaluator", "det_predict", "rec_predict", "rec_line_image"]


def det_predict(model, image: np.ndarray, post: DBPostProcess, limit_side_len: int, limit_type: str,
                max_side_limit: int | None = None, max_upscale: float | None = None):
    """Detections (points, score) of one BGR image, in its own pixel coordinates — the serving post-process,
    final box filter included. ``max_side_limit``: the long-side cap, ``max_upscale``: the enlargement bound
    (None = the policy's defaults)."""
    batch, (src_h, src_w, _, _) = det_preprocess(image, limit_side_len, limit_type, max_side_limit, max_upscale)
    with paddle.no_grad():
        prob = model(paddle.to_tensor(batch))["maps"].numpy()[0, 0]
    return filter_det_boxes(post(prob, (src_h, src_w)), src_h, src_w, post.box_type)


def rec_line_image(sample: RecSample) -> np.ndarray:
    """The line image of a rec sample (cut from its page with the serving crop when ``points`` is set)."""
    image = read_image(sample.image_path)
    if sample.points is not None:
        from datasets.crops import crop_polygon

        image = crop_polygon(image, sample.points)
    return image


def rec_predict(model, images: Sequence[np.ndarray], charset: Charset, height: int = 48, min_width: int = 320,
                max_width: int | None = None) -> list[tuple[str, float]]:
    batch = rec_preprocess_batch(list(images), height, min_width, max_width)
    with paddle.no_grad():
        probs = model(paddle.to_tensor(batch)).numpy()
    return ctc_greedy_decode(probs, charset)


def _shard(items: Sequence, rank: int, world: int) -> list:
    return list(items)[rank::world]


@dataclass
class _MetricResult:
    """The trainer's eval protocol: additive ``state()`` summed over ranks, then ``compute(state)``."""

    metric: Any
    extra: dict = field(default_factory=dict)

    def state(self) -> dict[str, np.ndarray]:
        return {"metric": np.asarray(self.metric.state())}

    def compute(self, state: Mapping[str, np.ndarray]) -> dict:
        merged = type(self.metric)(**self.extra) if self.extra else type(self.metric)()
        merged.merge(np.asarray(state["metric"]))
        out = merged.compute()
        return {k: v for k, v in out.items() if isinstance(v, (int, float))}


class DetEvaluator:
    """``eval_fn`` for the detector: ICDAR2015 protocol on ``samples``."""

    def __init__(self, samples: Sequence[DetSample], post_cfg: Mapping[str, Any], limit_side_len: int = 960,
                 limit_type: str = "max", max_side_limit: int | None = None, max_upscale: float | None = None):
        self.samples = list(samples)
        self.post = DBPostProcess(**dict(post_cfg))
        self.limit_side_len, self.limit_type = int(limit_side_len), limit_type
        self.max_side_limit = None if max_side_limit is None else int(max_side_limit)
        self.max_upscale = None if max_upscale is None else float(max_upscale)
        self.last_predictions: list[tuple[DetSample, list]] = []

    def evaluate(self, model, rank: int = 0, world: int = 1) -> DetMetric:
        metric = DetMetric()
        self.last_predictions = []
        for sample in _shard(self.samples, rank, world):
            preds = det_predict(model, read_image(sample.image_path), self.post, self.limit_side_len, self.limit_type,
                                self.max_side_limit, self.max_upscale)
            metric.update([p for p, _ in preds], [i.points for i in sample.instances], [i.ignore for i in sample.instances])
            self.last_predictions.append((sample, preds))
        return metric

    def __call__(self, model):
        from training.trainer.distributed import rank, world_size

        return _MetricResult(self.evaluate(model, rank(), world_size()))


class RecEvaluator:
    """``eval_fn`` for the recogniser: accuracy and 1 − normalised edit distance on ``samples``."""

    def __init__(self, samples: Sequence[RecSample], charset: Charset, normalize: Mapping[str, Any] | None = None,
                 height: int = 48, min_width: int = 320, max_width: int | None = None, batch_size: int = 6):
        self.samples = list(samples)
        self.charset = charset
        self.normalize = dict(normalize or {})
        self.height, self.min_width, self.max_width, self.batch_size = height, min_width, max_width, batch_size
        self._images: dict[int, np.ndarray] = {}
        self.last_metric: RecMetric | None = None

    def _image(self, index: int) -> np.ndarray:
        if index not in self._images:  # eval sets are small; cut crops once
            self._images[index] = rec_line_image(self.samples[index])
        return self._images[index]

    def evaluate(self, model, rank: int = 0, world: int = 1) -> RecMetric:
        metric = RecMetric(self.normalize or None)
        indices = _shard(range(len(self.samples)), rank, world)
        # sort by aspect ratio, like serving, so batches pad little
        indices.sort(key=lambda i: self._image(i).shape[1] / max(1, self._image(i).shape[0]))
        for start in range(0, len(indices), self.batch_size):
            chunk = indices[start:start + self.batch_size]
            preds = rec_predict(model, [self._image(i) for i in chunk], self.charset, self.height, self.min_width,
                                self.max_width)
            metric.update(preds, [self.samples[i].text for i in chunk], keys=[str(self.samples[i].image_path) for i in chunk])
        self.last_metric = metric
        return metric

    def __call__(self, model):
        from training.trainer.distributed import rank, world_size

        return _MetricResult(self.evaluate(model, rank(), world_size()), {"normalize": self.normalize or None})
