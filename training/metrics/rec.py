"""Text-recognition accuracy and normalised edit distance, safe for Chinese.

Usage::

    metric = RecMetric(NormalizeConfig(fold_width=True, spaces="ignore"))
    metric.update(["增值税发票", "ABC"], ["增值税发票", "ABD"], keys=["a.jpg", "b.jpg"])
    metric.compute()   # {"acc", "norm_edit_dis", "num", "per_length", "normalization"}
    metric.worst(5)    # the five worst lines, for an MLflow artifact

Why it exists: PaddleOCR's ``RecMetric(is_filter=True)`` keeps only ``[0-9a-z]`` and so scores every
Chinese line as an empty string; other scripts strip spaces or case silently, and then two runs' accuracies
are not comparable. Here normalisation never removes a character class, it only (optionally) folds width,
handles spaces and folds case, and the options travel with every result in ``"normalization"``.

Definitions, after normalising prediction and truth the same way:
* ``acc`` — exact-match rate;
* ``norm_edit_dis`` — 1 − mean over lines of Levenshtein(pred, truth) / max(len(pred), len(truth))
  (rapidfuzz ``Levenshtein.normalized_distance``; two empty strings have distance 0);
* ``per_length`` — accuracy per bucket of normalised truth length in characters: ``1-4``, ``5-8``,
  ``9-16``, ``17-32``, ``33+`` (always present, ``acc`` is ``None`` for an empty bucket) and ``0`` (only
  when some truth normalises to an empty string).

Data-parallel: :meth:`state` is a float vector of sums (``all_reduce(SUM)`` it); :meth:`merge` of a
``RecMetric`` also merges the per-line records that :meth:`worst` uses, a state vector does not.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from rapidfuzz.distance import Levenshtein

__all__ = ["NormalizeConfig", "RecMetric", "normalize_text", "LENGTH_BUCKETS", "length_bucket"]

#: (name, min length, max length inclusive); "0" exists for truths that normalise to an empty string
LENGTH_BUCKETS: tuple[tuple[str, int, float], ...] = (
    ("0", 0, 0),
    ("1-4", 1, 4),
    ("5-8", 5, 8),
    ("9-16", 9, 16),
    ("17-32", 17, 32),
    ("33+", 33, float("inf")),
)


def _width_table() -> dict[int, str]:
    """Unicode's own width foldings (the ``<wide>`` and ``<narrow>`` compatibility decompositions that
    NFKC applies), and nothing else NFKC does: full-width ASCII → ASCII (ＡＢＣ１２３，→ ABC123,), the
    ideographic space → space, ￥ → ¥, half-width katakana / hangul / CJK punctuation → their normal forms
    (｡ → 。). Plain NFKC would also rewrite e.g. ① → 1 or ㎏ → kg, changing what the model must read."""
    table: dict[int, str] = {}
    for code in list(range(0x3000, 0x3001)) + list(range(0xFF00, 0xFFF0)):
        decomposition = unicodedata.decomposition(chr(code))
        tag, _, rest = decomposition.partition(" ")
        if tag in ("<wide>", "<narrow>") and rest:
            table[code] = "".join(chr(int(part, 16)) for part in rest.split())
    return table


_WIDTH_TABLE = _width_table()
_COMBINING_KANA_MARKS = ("\u3099", "\u309a")


@dataclass(frozen=True)
class NormalizeConfig:
    """How predictions and truths are normalised before comparison; recorded with every metric.

    * ``fold_width`` (default on): Unicode width folding (see :func:`normalize_text`); full-width and
      half-width forms of the same character are the same reading, and labels mix them freely.
    * ``spaces``: ``"ignore"`` (default; removes all whitespace — PaddleOCR's default ``ignore_space``, so
      numbers compare with its reports; Chinese labels space inconsistently), ``"collapse"`` (runs of
      whitespace → one space, trimmed) or ``"keep"``.
    * ``casefold`` (default off): case-insensitive comparison; off because case is part of the reading.
    """

    fold_width: bool = True
    spaces: Literal["ignore", "collapse", "keep"] = "ignore"
    casefold: bool = False

    def __post_init__(self) -> None:
        if self.spaces not in ("ignore", "collapse", "keep"):
            raise ValueError(f"spaces must be 'ignore', 'collapse' or 'keep', got {self.spaces!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> NormalizeConfig:
        """Build from a config mapping (e.g. a Hydra node); unknown keys are an error, not ignored."""
        return cls(**dict(data or {}))


def normalize_text(text: str, config: NormalizeConfig) -> str:
    """Apply ``config`` to ``text``. Never drops a character other than whitespace under ``spaces``."""
    if config.fold_width:
        text = text.translate(_WIDTH_TABLE)
        if any(mark in text for mark in _COMBINING_KANA_MARKS):  # ｶﾞ → カ + U+3099 → ガ
            text = unicodedata.normalize("NFC", text)
    if config.spaces == "ignore":
        text = "".join(text.split())
    elif config.spaces == "collapse":
        text = " ".join(text.split())
    if config.casefold:
        text = text.casefold()
    return text


def length_bucket(length: int) -> str:
    """Name of the length bucket holding a truth of ``length`` characters."""
    for name, low, high in LENGTH_BUCKETS:
        if low <= length <= high:
            return name
    raise ValueError(f"negative length {length}")


_BUCKET_INDEX = {name: i for i, (name, _, _) in enumerate(LENGTH_BUCKETS)}


class RecMetric:
    """Accumulates recognition results; see the module docstring for the definitions."""

    def __init__(self, normalize: NormalizeConfig | dict[str, Any] | None = None) -> None:
        if normalize is None:
            normalize = NormalizeConfig()
        elif not isinstance(normalize, NormalizeConfig):
            normalize = NormalizeConfig.from_dict(normalize)
        self.normalize = normalize
        self.reset()

    def reset(self) -> None:
        """Forget all accumulated lines."""
        self.num = 0
        self.correct = 0
        self.sum_norm_dist = 0.0
        self.bucket_num = np.zeros(len(LENGTH_BUCKETS), dtype=np.int64)
        self.bucket_correct = np.zeros(len(LENGTH_BUCKETS), dtype=np.int64)
        self.records: list[dict[str, Any]] = []

    def update(
        self,
        preds: Sequence[str | tuple[str, float]],
        truths: Sequence[str],
        keys: Sequence[Any] | None = None,
    ) -> None:
        """Add a batch. ``preds`` are strings or ``(text, score)`` pairs as returned by
        :func:`training.postprocess.ctc_greedy_decode`; ``keys`` (e.g. image paths) label the lines in
        :meth:`worst`."""
        if len(preds) != len(truths):
            raise ValueError(f"{len(preds)} predictions but {len(truths)} truths")
        if keys is not None and len(keys) != len(truths):
            raise ValueError(f"{len(keys)} keys but {len(truths)} truths")
        for i, (pred, truth) in enumerate(zip(preds, truths)):
            score = None
            if not isinstance(pred, str):
                pred, score = pred[0], float(pred[1])
            norm_pred = normalize_text(pred, self.normalize)
            norm_truth = normalize_text(truth, self.normalize)
            distance = Levenshtein.distance(norm_pred, norm_truth)
            norm_dist = Levenshtein.normalized_distance(norm_pred, norm_truth)
            hit = norm_pred == norm_truth
            bucket = _BUCKET_INDEX[length_bucket(len(norm_truth))]
            self.num += 1
            self.correct += int(hit)
            self.sum_norm_dist += norm_dist
            self.bucket_num[bucket] += 1
            self.bucket_correct[bucket] += int(hit)
            self.records.append(
                {
                    "key": None if keys is None else keys[i],
                    "truth": truth,
                    "pred": pred,
                    "score": score,
                    "edit_distance": distance,
                    "norm_edit_distance": norm_dist,
                }
            )

    def compute(self) -> dict[str, Any]:
        """Accuracy, 1 − normalised edit distance, counts, per-length accuracy and the normalisation used.

        With no lines at all, ``acc`` and ``norm_edit_dis`` are 0.0 (nothing was recognised)."""
        per_length: dict[str, dict[str, Any]] = {}
        for i, (name, _, _) in enumerate(LENGTH_BUCKETS):
            n = int(self.bucket_num[i])
            if name == "0" and n == 0:
                continue
            per_length[name] = {"num": n, "acc": (int(self.bucket_correct[i]) / n) if n else None}
        return {
            "acc": self.correct / self.num if self.num else 0.0,
            "norm_edit_dis": 1.0 - self.sum_norm_dist / self.num if self.num else 0.0,
            "num": self.num,
            "per_length": per_length,
            "normalization": asdict(self.normalize),
        }

    def worst(self, k: int = 10) -> list[dict[str, Any]]:
        """The ``k`` wrong lines with the largest normalised edit distance (then raw distance), worst first.

        Each is ``{"key", "truth", "pred", "score", "edit_distance", "norm_edit_distance"}`` with the
        un-normalised texts, as a reader of the artifact wants to see them. Correct lines never appear."""
        wrong = [r for r in self.records if r["edit_distance"] > 0]
        wrong.sort(key=lambda r: (r["norm_edit_distance"], r["edit_distance"]), reverse=True)
        return wrong[: max(0, k)]

    def state(self) -> np.ndarray:
        """Sums as float64: ``[num, correct, sum_norm_dist, bucket_num…, bucket_correct…]`` — sum it across
        ranks and :meth:`merge` it into a fresh metric."""
        return np.concatenate(
            [
                np.array([self.num, self.correct, self.sum_norm_dist], dtype=np.float64),
                self.bucket_num.astype(np.float64),
                self.bucket_correct.astype(np.float64),
            ]
        )

    def merge(self, other: RecMetric | Sequence[float] | np.ndarray) -> RecMetric:
        """Add another metric (its records too) or a :meth:`state` vector; returns ``self``.

        Merging metrics normalised differently is refused: their numbers do not add up."""
        if isinstance(other, RecMetric):
            if other.normalize != self.normalize:
                raise ValueError(f"cannot merge metrics with different normalisation: {self.normalize} vs {other.normalize}")
            self.records.extend(other.records)
            vec = other.state()
        else:
            vec = np.asarray(other, dtype=np.float64).reshape(-1)
        n_buckets = len(LENGTH_BUCKETS)
        if vec.shape != (3 + 2 * n_buckets,):
            raise ValueError(f"a RecMetric state has {3 + 2 * n_buckets} values, got shape {vec.shape}")
        self.num += int(round(vec[0]))
        self.correct += int(round(vec[1]))
        self.sum_norm_dist += float(vec[2])
        self.bucket_num += np.rint(vec[3 : 3 + n_buckets]).astype(np.int64)
        self.bucket_correct += np.rint(vec[3 + n_buckets :]).astype(np.int64)
        return self
