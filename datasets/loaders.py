"""``paddle.io`` datasets, reproducible batch samplers and the DataLoader factory for det and rec training.

Why this shape:

* **Reproducible order and augmentation.** Every random choice for sample ``i`` in epoch ``e`` comes from
  ``numpy.random.default_rng([seed, e, i])`` and batch order from ``[seed, e]``, so the data a step sees does
  not depend on the number of workers, on which worker got the sample, or on whether the run was resumed
  (``set_epoch(loader, epoch, start_batch)`` skips the batches already trained on).
* **Distributed semantics.** The samplers shard batches over ``num_replicas`` ranks like Paddle's
  ``DistributedBatchSampler`` (every rank gets the same number of batches; the batch list is padded by
  repeating its head), with ``rank``/``num_replicas`` defaulting to ``paddle.distributed``'s.
* **Long lines are not squashed.** :class:`WidthBucketBatchSampler` groups lines of similar aspect ratio, and
  :class:`RecCollate` pads each batch only to its own widest line (multiple of 8, capped), never narrower
  than the label needs for CTC.

Usage::

    ds = DetTrainDataset(read_icdar2015("data/train"), aug_cfg=yaml.safe_load(open("conf/aug/det_default.yaml")))
    loader = build_loader(ds, batch_size=8, num_workers=2, shuffle=True, seed=0)
    for epoch in range(start_epoch, epochs):
        set_epoch(loader, epoch)
        for image, shrink_map, shrink_mask, threshold_map, threshold_mask in loader: ...

    rec = RecDataset(read_ppocr_rec("data/rec/label.txt"), Charset.default(), aug=build_rec_aug())
    loader = build_loader(rec, batch_size=64, num_workers=2, seed=0)   # bucketed + RecCollate automatically
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle
import paddle

from datasets.charset import Charset
from datasets.ctc_label import CTC_STRIDE, CTCLabelError, ctc_min_steps, encode_ctc, time_steps_for
from datasets.db_targets import make_db_targets
from datasets.det_aug import DetAugment, build_det_aug
from datasets.imageio import image_size, read_image
from datasets.rec_aug import RecAugment, build_rec_aug
from datasets.resize import det_resize_for_eval, normalize_det, rec_resize_norm, rec_width_for
from datasets.sample import DetSample, RecSample

__all__ = [
    "DetTrainDataset", "DetEvalDataset", "RecDataset", "SeededBatchSampler", "WidthBucketBatchSampler",
    "RecCollate", "det_eval_collate", "unpack_polygons", "build_loader", "set_epoch", "shared_memory_usable",
    "sample_rng",
]

log = logging.getLogger(__name__)


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator behind every random choice for one sample in one epoch."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


class _EpochMixin:
    """Datasets whose augmentation depends on the epoch. Workers receive a copy of the dataset when an
    iterator starts, so call :func:`set_epoch` *before* iterating (``persistent_workers`` stays off)."""

    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


# ---------------------------------------------------------------------------------------------- det
class DetTrainDataset(paddle.io.Dataset, _EpochMixin):
    """Augmented det training samples with DB targets.

    Item: ``(image, shrink_map, shrink_mask, threshold_map, threshold_mask)``; image 3×S×S float32 normalised
    as at inference (:func:`datasets.resize.normalize_det`), maps S×S float32 (S = the aug config's ``size``).
    ``aug_cfg``: a mapping for :func:`datasets.det_aug.build_det_aug` (None = its defaults;
    ``{"enabled": False}`` = only fit/pad to S) or a ready :class:`DetAugment`.

    Example::

        ds = DetTrainDataset(samples, {"size": 320}, seed=0)
        image, shrink_map, shrink_mask, threshold_map, threshold_mask = ds[0]
    """

    FIELDS = ("image", "shrink_map", "shrink_mask", "threshold_map", "threshold_mask")

    def __init__(self, samples: Sequence[DetSample], aug_cfg: Mapping[str, Any] | DetAugment | None = None, *,
                 size: int | None = None, seed: int = 0, shrink_ratio: float = 0.4, thresh_min: float = 0.3,
                 thresh_max: float = 0.7, min_text_size: float = 8.0,
                 reader: Callable[[Any], np.ndarray] = read_image):
        super().__init__()
        self.samples = list(samples)
        if isinstance(aug_cfg, DetAugment):
            if size is not None and size != aug_cfg.size:
                raise ValueError(f"size={size} conflicts with the given pipeline's size {aug_cfg.size}")
            self.aug = aug_cfg
        else:
            self.aug = build_det_aug(aug_cfg, **({"size": size} if size is not None else {}))
        self.size = self.aug.size
        self.seed = int(seed)
        self.target_args = dict(shrink_ratio=shrink_ratio, thresh_min=thresh_min, thresh_max=thresh_max,
                                min_text_size=min_text_size)
        self.reader = reader

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        sample = self.samples[index]
        image = self.reader(sample.image_path)
        rng = sample_rng(self.seed, self.epoch, index)
        out = self.aug(image, [i.points for i in sample.instances], [i.ignore for i in sample.instances], rng)
        targets = make_db_targets(out.polygons, out.ignores, out.image.shape[0], out.image.shape[1], **self.target_args)
        return (normalize_det(out.image), targets.shrink_map, targets.shrink_mask, targets.threshold_map,
                targets.threshold_mask)


class DetEvalDataset(paddle.io.Dataset):
    """Det evaluation samples through the serving resize policy (:func:`datasets.resize.det_resize_for_eval`).

    Item: ``(image 3×H×W float32, shape [src_h, src_w, ratio_h, ratio_w] float32, polygons P×K×2 float32,
    num_points P int32 (0 = padding row), ignores P int32, index int64)`` with polygons in *original* image
    pixels (what the metric compares against after the post-process maps boxes back). P ≥ 1 so no array is
    empty. Sizes vary: use batch size 1 or :func:`det_eval_collate`; :func:`unpack_polygons` or
    :meth:`ground_truth` gives back plain lists.

    Example::

        ds = DetEvalDataset(samples, limit_side_len=960, limit_type="max")
        loader = build_loader(ds, batch_size=1, shuffle=False)
    """

    def __init__(self, samples: Sequence[DetSample], limit_side_len: int = 960, limit_type: str = "max", *,
                 reader: Callable[[Any], np.ndarray] = read_image):
        super().__init__()
        self.samples = list(samples)
        self.limit_side_len = int(limit_side_len)
        self.limit_type = limit_type
        self.reader = reader
        self.collate_fn = det_eval_collate

    def __len__(self) -> int:
        return len(self.samples)

    def ground_truth(self, index: int) -> tuple[list[np.ndarray], list[bool]]:
        """Original polygons and ignore flags of sample ``index`` (no image read)."""
        instances = self.samples[index].instances
        return [np.asarray(i.points, np.float32) for i in instances], [bool(i.ignore) for i in instances]

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        sample = self.samples[index]
        image = self.reader(sample.image_path)
        resized, (ratio_h, ratio_w) = det_resize_for_eval(image, self.limit_side_len, self.limit_type)
        shape = np.array([image.shape[0], image.shape[1], ratio_h, ratio_w], np.float32)
        polys, ignores = self.ground_truth(index)
        k = max([4] + [len(p) for p in polys])
        packed = np.zeros((max(1, len(polys)), k, 2), np.float32)
        counts = np.zeros(len(packed), np.int32)
        flags = np.zeros(len(packed), np.int32)
        for row, (p, ig) in enumerate(zip(polys, ignores)):
            packed[row, : len(p)] = p
            counts[row] = len(p)
            flags[row] = int(ig)
        return normalize_det(resized), shape, packed, counts, flags, np.int64(index)


def det_eval_collate(batch: Sequence[tuple[np.ndarray, ...]]) -> list[np.ndarray]:
    """Stack eval items of different sizes: images zero-padded at the bottom/right to the batch's largest H, W
    (still multiples of 32), polygon arrays padded to the largest P and K."""
    images, shapes, polys, counts, flags, indices = zip(*batch)
    h, w = max(i.shape[1] for i in images), max(i.shape[2] for i in images)
    p, k = max(x.shape[0] for x in polys), max(x.shape[1] for x in polys)
    out_images = np.zeros((len(batch), 3, h, w), np.float32)
    out_polys = np.zeros((len(batch), p, k, 2), np.float32)
    out_counts = np.zeros((len(batch), p), np.int32)
    out_flags = np.zeros((len(batch), p), np.int32)
    for b in range(len(batch)):
        out_images[b, :, : images[b].shape[1], : images[b].shape[2]] = images[b]
        out_polys[b, : polys[b].shape[0], : polys[b].shape[1]] = polys[b]
        out_counts[b, : counts[b].shape[0]] = counts[b]
        out_flags[b, : flags[b].shape[0]] = flags[b]
    return [out_images, np.stack(shapes), out_polys, out_counts, out_flags, np.asarray(indices, np.int64)]


def unpack_polygons(polys: Any, counts: Any, flags: Any) -> tuple[list[np.ndarray], list[bool]]:
    """One sample's padded polygon arrays (numpy or Paddle tensors) → (list of N×2 arrays, ignore flags)."""
    polys, counts, flags = (np.asarray(x.numpy() if hasattr(x, "numpy") else x) for x in (polys, counts, flags))
    keep = [i for i in range(len(counts)) if counts[i] > 0]
    return [polys[i, : counts[i]].copy() for i in keep], [bool(flags[i]) for i in keep]


# ---------------------------------------------------------------------------------------------- rec
class RecDataset(paddle.io.Dataset, _EpochMixin):
    """Rec training/eval samples: a line image (or the region ``sample.points`` of an image, cut with
    :func:`datasets.crops.crop_polygon`, the same crop serving uses), augmented, resized to ``height``
    keeping its aspect ratio (capped at ``max_width``), and its CTC label.

    Item: ``(image 3×height×w float32 (w = the line's own width), label int64[max_text_len], length int64)``;
    batches are made by :class:`RecCollate` (padding to a common width), which :func:`build_loader` uses.

    Labels are checked at construction: characters outside ``charset``, more than ``max_text_len``
    characters, or more CTC steps than ``max_width // 8`` allows (repeats need a blank between them) raise
    :class:`~datasets.ctc_label.CTCLabelError` listing the first offenders, or with ``on_error="skip"`` are
    dropped and recorded in :attr:`skipped` (``(sample, reason)``).

    Example::

        ds = RecDataset(samples, Charset.default(), height=48, max_width=320, aug=build_rec_aug())
        image, label, length = ds[0]
    """

    def __init__(self, samples: Sequence[RecSample], charset: Charset, height: int = 48, max_width: int = 320,
                 aug: Mapping[str, Any] | RecAugment | None = None, *, max_text_len: int = 25, seed: int = 0,
                 on_error: str = "raise", min_width: int | None = None,
                 reader: Callable[[Any], np.ndarray] = read_image):
        super().__init__()
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if max_width % CTC_STRIDE:
            raise ValueError(f"max_width must be a multiple of {CTC_STRIDE}, got {max_width}")
        self.charset = charset
        self.height, self.max_width, self.max_text_len = int(height), int(max_width), int(max_text_len)
        self.seed = int(seed)
        self.reader = reader
        self.aug = aug if isinstance(aug, RecAugment) or aug is None else build_rec_aug(aug)
        self.skipped: list[tuple[RecSample, str]] = []
        steps = time_steps_for(self.max_width)
        kept, errors = [], []
        for sample in samples:
            try:
                label = encode_ctc(sample.text, charset, self.max_text_len, steps)
            except CTCLabelError as exc:
                errors.append((sample, str(exc)))
                continue
            kept.append((sample, label))
        if errors and on_error == "raise":
            shown = "\n".join(f"  {s.image_path}{f':{s.line}' if s.line else ''}: {m}" for s, m in errors[:10])
            raise CTCLabelError(f"{len(errors)} of {len(errors) + len(kept)} rec labels cannot be CTC targets "
                                f"(pass on_error='skip' to drop them):\n{shown}")
        if errors:
            log.warning("RecDataset: skipped %d of %d samples whose labels cannot be CTC targets",
                        len(errors), len(errors) + len(kept))
        self.skipped = errors
        self.samples = [s for s, _ in kept]
        self.labels = [lab for _, lab in kept]
        self._widths: list[int] | None = None
        self.collate_fn = RecCollate(self.max_width, self.height, min_width=min_width)

    def __len__(self) -> int:
        return len(self.samples)

    def _line_image(self, sample: RecSample) -> np.ndarray:
        image = self.reader(sample.image_path)
        if sample.points is not None:
            from datasets.crops import crop_polygon

            image = crop_polygon(image, sample.points)
        return image

    def widths(self) -> list[int]:
        """Each sample's resized width (before augmentation), from image headers or polygon geometry only;
        used by :class:`WidthBucketBatchSampler`. Cached."""
        if self._widths is None:
            widths = []
            for sample in self.samples:
                if sample.points is not None:
                    from datasets.crops import VERTICAL_RATIO, polygon_to_quad

                    q = polygon_to_quad(sample.points)
                    w = max(np.linalg.norm(q[0] - q[1]), np.linalg.norm(q[2] - q[3]))
                    h = max(np.linalg.norm(q[0] - q[3]), np.linalg.norm(q[1] - q[2]))
                    if w > 0 and h / w >= VERTICAL_RATIO:
                        w, h = h, w
                else:
                    w, h = image_size(sample.image_path)
                widths.append(min(self.max_width, max(1, math.ceil(self.height * float(w) / max(float(h), 1.0)))))
            self._widths = widths
        return self._widths

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, np.int64]:
        image = self._line_image(self.samples[index])
        if self.aug is not None:
            image = self.aug(image, sample_rng(self.seed, self.epoch, index))
        width = rec_width_for(image, self.height, self.max_width)
        label = self.labels[index]
        return rec_resize_norm(image, self.height, width), label.ids, np.int64(label.length)


class RecCollate:
    """Pad rec items to one width: the batch's widest line rounded up to a multiple of 8, at least what the
    longest label needs for CTC (8 px per step), at least ``min_width`` if set (serving pads to ≥ 320, see
    :func:`datasets.resize.rec_batch_width`; set it to train on exactly that), capped at ``max_width``.

    Returns ``[images N×3×H×W float32, labels N×L int64, lengths N int64, valid_ratios N float32]``."""

    def __init__(self, max_width: int = 320, height: int = 48, multiple: int = CTC_STRIDE, min_width: int | None = None):
        self.max_width, self.height, self.multiple, self.min_width = int(max_width), int(height), int(multiple), min_width

    def width_for(self, widths: Sequence[int], steps_needed: int = 0) -> int:
        width = max(max(widths), steps_needed * CTC_STRIDE, self.min_width or 0)
        width = int(math.ceil(width / self.multiple) * self.multiple)
        return min(width, self.max_width)

    def __call__(self, batch: Sequence[tuple[np.ndarray, np.ndarray, Any]]) -> list[np.ndarray]:
        images, labels, lengths = zip(*batch)
        need = max(ctc_min_steps(lab[: int(n)]) for lab, n in zip(labels, lengths))
        width = self.width_for([im.shape[2] for im in images], need)
        out = np.zeros((len(batch), 3, self.height, width), np.float32)
        ratios = np.zeros(len(batch), np.float32)
        for b, im in enumerate(images):
            w = min(im.shape[2], width)
            out[b, :, :, :w] = im[:, :, :w]
            ratios[b] = w / width
        return [out, np.stack(labels).astype(np.int64), np.asarray(lengths, np.int64), ratios]


# ---------------------------------------------------------------------------------------------- samplers
def _dist_defaults(rank: int | None, num_replicas: int | None) -> tuple[int, int]:
    if num_replicas is None:
        num_replicas = paddle.distributed.get_world_size()
    if rank is None:
        rank = paddle.distributed.get_rank()
    if not 0 <= rank < num_replicas:
        raise ValueError(f"rank {rank} is outside 0..{num_replicas - 1}")
    return int(rank), int(num_replicas)


class SeededBatchSampler:
    """Batches of sample indices, shuffled from ``(seed, epoch)`` and sharded over ranks.

    All ranks compute the same global batch list; it is padded (repeating its first batches) to a multiple
    of ``num_replicas`` and rank ``r`` takes batches ``r, r + R, …`` — the same batch count on every rank,
    as ``paddle.io.DistributedBatchSampler`` guarantees. ``batch_size`` is per rank."""

    def __init__(self, num_samples: int, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 rank: int | None = None, num_replicas: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.num_samples, self.batch_size = int(num_samples), int(batch_size)
        self.shuffle, self.seed, self.drop_last = bool(shuffle), int(seed), bool(drop_last)
        self.rank, self.num_replicas = _dist_defaults(rank, num_replicas)
        self.nranks, self.local_rank = self.num_replicas, self.rank  # DistributedBatchSampler's names
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order; ``start_batch`` skips this rank's first batches (mid-epoch resume)."""
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def skip(self, num_batches: int) -> None:
        """Skip this rank's first ``num_batches`` of the current epoch (the trainer's resume hook)."""
        if num_batches < 0:
            raise ValueError("num_batches must be >= 0")
        self.start_batch = int(num_batches)

    def _order(self, rng: np.random.Generator) -> list[list[int]]:
        order = rng.permutation(self.num_samples) if self.shuffle else np.arange(self.num_samples)
        return [order[i:i + self.batch_size].tolist() for i in range(0, self.num_samples, self.batch_size)]

    def global_batches(self) -> list[list[int]]:
        """This epoch's batches for all ranks (before sharding)."""
        batches = self._order(np.random.default_rng([self.seed, self.epoch]))
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        if batches and len(batches) % self.num_replicas:
            pad = self.num_replicas - len(batches) % self.num_replicas
            batches += [batches[i % len(batches)] for i in range(pad)]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        mine = self.global_batches()[self.rank::self.num_replicas]
        return iter(mine[self.start_batch:])

    def __len__(self) -> int:
        full = self.num_samples // self.batch_size if self.drop_last else math.ceil(self.num_samples / self.batch_size)
        return max(0, math.ceil(full / self.num_replicas) - self.start_batch)


class WidthBucketBatchSampler(SeededBatchSampler):
    """Batches of lines with similar widths (aspect ratios), so padding is small and long lines are not
    squashed into a short batch width.

    With ``shuffle``: the epoch's permutation is cut into pools of ``batch_size × pool_batches`` samples,
    each pool is sorted by width and cut into batches, and the batch order is shuffled — random batches,
    homogeneous widths. Without: one global sort by width (ties by index). Sharding as in
    :class:`SeededBatchSampler`."""

    def __init__(self, widths: Sequence[int], batch_size: int, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, rank: int | None = None, num_replicas: int | None = None,
                 pool_batches: int = 50):
        super().__init__(len(widths), batch_size, shuffle, seed, drop_last, rank, num_replicas)
        self.widths = np.asarray(widths, np.int64)
        self.pool_batches = max(1, int(pool_batches))

    def _order(self, rng: np.random.Generator) -> list[list[int]]:
        if not self.shuffle:
            order = np.lexsort((np.arange(self.num_samples), self.widths))
            return [order[i:i + self.batch_size].tolist() for i in range(0, self.num_samples, self.batch_size)]
        perm = rng.permutation(self.num_samples)
        pool = self.batch_size * self.pool_batches
        batches: list[list[int]] = []
        partial: list[int] = []
        for start in range(0, self.num_samples, pool):
            chunk = perm[start:start + pool]
            chunk = chunk[np.argsort(self.widths[chunk], kind="stable")]
            for i in range(0, len(chunk), self.batch_size):
                b = chunk[i:i + self.batch_size].tolist()
                if len(b) == self.batch_size:
                    batches.append(b)
                else:
                    partial.extend(b)
        order = rng.permutation(len(batches))
        batches = [batches[i] for i in order]
        if partial:
            batches.append(sorted(partial, key=lambda i: (self.widths[i], i)))
        return batches


# ---------------------------------------------------------------------------------------------- loader
def shared_memory_usable(min_free_mb: int = 256) -> bool:
    """Whether Paddle's worker→trainer shared-memory transport can work here: ``/dev/shm`` exists, is
    writable and has room (containers often mount a 64 MB one, where large det batches fail mid-epoch)."""
    path = "/dev/shm"
    try:
        stat = os.statvfs(path)
    except OSError:
        return False
    return os.access(path, os.W_OK) and stat.f_bavail * stat.f_frsize >= min_free_mb * 1024 * 1024


def _worker_init(seed: int) -> Callable[[int], None]:
    def init(worker_id: int) -> None:
        # Samples draw from sample_rng(); this only tames code that uses the global generators.
        np.random.seed((seed * 1009 + worker_id) % 2**32)
        import random

        random.seed(seed * 1009 + worker_id)
    return init


def build_loader(dataset: paddle.io.Dataset, batch_size: int, num_workers: int = 0, shuffle: bool = True,
                 seed: int = 0, *, drop_last: bool = False, batch_sampler: Any = None,
                 collate_fn: Callable | None = None, rank: int | None = None, world_size: int | None = None,
                 use_shared_memory: bool | None = None, epoch: int = 0, timeout: int = 0,
                 return_list: bool = True) -> paddle.io.DataLoader:
    """A ``paddle.io.DataLoader`` with reproducible order and worker processes.

    The batch sampler defaults to :class:`WidthBucketBatchSampler` for datasets with ``widths()`` (rec) and
    :class:`SeededBatchSampler` otherwise; the collate function to the dataset's ``collate_fn`` attribute if
    it has one (rec, det eval). ``use_shared_memory=None`` decides with :func:`shared_memory_usable`.
    Call :func:`set_epoch` before each epoch."""
    if batch_sampler is None:
        if hasattr(dataset, "widths"):
            batch_sampler = WidthBucketBatchSampler(dataset.widths(), batch_size, shuffle, seed, drop_last, rank, world_size)
        else:
            batch_sampler = SeededBatchSampler(len(dataset), batch_size, shuffle, seed, drop_last, rank, world_size)
    if hasattr(batch_sampler, "set_epoch"):
        batch_sampler.set_epoch(epoch)
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    if collate_fn is None:
        collate_fn = getattr(dataset, "collate_fn", None)
    if use_shared_memory is None:
        use_shared_memory = num_workers > 0 and shared_memory_usable()
    return paddle.io.DataLoader(
        dataset, batch_sampler=batch_sampler, num_workers=int(num_workers), collate_fn=collate_fn,
        use_shared_memory=bool(use_shared_memory), timeout=timeout, return_list=return_list,
        worker_init_fn=_worker_init(seed) if num_workers > 0 else None,
    )


def set_epoch(loader: paddle.io.DataLoader, epoch: int, start_batch: int = 0) -> None:
    """Point a loader from :func:`build_loader` at ``epoch`` (sampler order and augmentation); with
    ``start_batch`` the first batches of that epoch are skipped, so a resumed run continues where it stopped."""
    sampler = loader.batch_sampler
    if hasattr(sampler, "set_epoch"):
        try:
            sampler.set_epoch(epoch, start_batch)
        except TypeError:  # paddle's DistributedBatchSampler: set_epoch(epoch) only
            if start_batch:
                raise ValueError("start_batch needs a SeededBatchSampler/WidthBucketBatchSampler") from None
            sampler.set_epoch(epoch)
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(epoch)
