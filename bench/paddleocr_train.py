"""PaddleOCR 2.10's own ``tools/train.py`` (shipped in the ``unstructured-paddleocr`` wheel) on our synthetic data,
timed step by step: the ``paddleocr`` row of :mod:`bench.train_step`, the trainer users would otherwise run.

The script runs unmodified, as ``__main__``, with its own config parser, reader (``SimpleDataSet`` and its
transforms), model builder (PPLCNetV3 in PaddleOCR's multi-branch training form), loss, optimizer and loop
(``tools/program.py::train``). We only write the label files and the YAML config it reads, and wrap a few of its
building blocks so each step is split into the same phases as the other variants: the DataLoader iterator
(reader; a step runs from one batch request to the next), the model's and the loss's ``forward``,
``Tensor.backward`` and ``optimizer.step``. Its own per-step ``avg_batch_cost`` log lines (``print_batch_step: 1``)
are parsed as a cross-check of the wrapped timing.

    python -m bench.paddleocr_train --task det --size 320 --batch 2 --steps 1 --warmup 1

(as a command it renders its own synthetic data; the last stdout line is the JSON result).
"""
from __future__ import annotations

import datasets  # noqa: F401  -- project start-up (zlib before paddle, threads)

import argparse
import contextlib
import json
import logging
import os
import re
import runpy
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import yaml

from bench.common import peak_rss_mb
from bench.train_step import PHASES, StepClock, _TimedLoader

__all__ = ["tools_dir", "write_inputs", "paddleocr_config", "run_tools_train", "main"]

#: PaddleOCR's DB training transforms (its det configs minus CopyPaste), size filled in per case
_DET_TRANSFORMS = [
    {"DecodeImage": {"img_mode": "BGR", "channel_first": False}},
    {"DetLabelEncode": None},
    {"IaaAugment": {"augmenter_args": [{"type": "Fliplr", "args": {"p": 0.5}},
                                       {"type": "Affine", "args": {"rotate": [-10, 10]}},
                                       {"type": "Resize", "args": {"size": [0.5, 3]}}]}},
    {"EastRandomCropData": {"size": None, "max_tries": 50, "keep_ratio": True}},
    {"MakeBorderMap": {"shrink_ratio": 0.4, "thresh_min": 0.3, "thresh_max": 0.7}},
    {"MakeShrinkMap": {"shrink_ratio": 0.4, "min_text_size": 8}},
    {"NormalizeImage": {"scale": 1.0 / 255.0, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                        "order": "hwc"}},
    {"ToCHWImage": None},
    {"KeepKeys": {"keep_keys": ["image", "threshold_map", "threshold_mask", "shrink_map", "shrink_mask"]}},
]


def tools_dir() -> Path:
    """The wheel's folder holding ``tools/train.py`` and ``ppocr/`` (the script puts it on ``sys.path`` itself)."""
    import importlib.util

    spec = importlib.util.find_spec("unstructured_paddleocr")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("unstructured-paddleocr is not installed "
                                "(pip install --no-deps unstructured-paddleocr)")
    root = Path(list(spec.submodule_search_locations)[0])
    if not (root / "tools" / "train.py").is_file():
        raise FileNotFoundError(f"{root / 'tools' / 'train.py'} is missing: this unstructured-paddleocr wheel "
                                "does not ship PaddleOCR's tools/")
    return root


def write_inputs(spec: dict[str, Any], work: Path) -> tuple[Path, Path, int]:
    """PaddleOCR label file with exactly ``(warmup + steps) * batch`` samples (its loop runs one whole epoch).
    Returns the label file, the folder its image paths are relative to (PaddleOCR's ``data_dir``) and the count."""
    from datasets.ppocr_label import write_ppocr_det_label, write_ppocr_rec_label

    need = (spec["warmup"] + spec["steps"]) * spec["batch"]
    if spec["task"] == "det":
        from datasets.icdar2015 import read_icdar2015

        data_dir = Path(spec["det_root"])
        samples = read_icdar2015(data_dir)
        writer = write_ppocr_det_label
    else:
        from datasets.ppocr_label import read_ppocr_rec

        data_dir = Path(spec["rec_label"]).parent
        samples = [s for s in read_ppocr_rec(spec["rec_label"]) if 0 < len(s.text) <= spec["size"] // 8]
        writer = write_ppocr_rec_label
    if len(samples) < need:
        raise RuntimeError(f"{len(samples)} synthetic {spec['task']} samples, tools/train.py needs {need}")
    label = writer(samples[:need], work / f"{spec['task']}_label.txt", root=data_dir)
    return label, data_dir, need


def paddleocr_config(spec: dict[str, Any], label: Path, data_dir: Path, work: Path) -> dict[str, Any]:
    """A PaddleOCR config for PP-OCRv4 mobile det/rec as :mod:`training.models.zoo` builds it, with the bench's
    optimizer (AdamW, global-norm clip 10, cosine, lr 1e-4), batch, input size and workers; no eval, one epoch."""
    from datasets.charset import default_dict_path

    task, size = spec["task"], spec["size"]
    glob = {"use_gpu": False, "epoch_num": 1, "log_smooth_window": 20, "print_batch_step": 1,
            "save_model_dir": str(work / "out"), "save_epoch_step": 10**6, "eval_batch_step": 10**9,
            "cal_metric_during_train": task == "rec", "pretrained_model": None, "checkpoints": None,
            "use_visualdl": False, "seed": 0, "distributed": False}
    optimizer = {"name": "AdamW", "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8, "weight_decay": 1e-4,
                 "clip_norm_global": 10.0, "lr": {"name": "Cosine", "learning_rate": 1e-4, "warmup_epoch": 0}}
    loader = {"shuffle": True, "drop_last": True, "batch_size_per_card": spec["batch"],
              "num_workers": spec["workers"]}
    dataset = {"name": "SimpleDataSet", "data_dir": str(data_dir), "label_file_list": [str(label)], "ratio_list": [1.0]}
    if task == "det":
        transforms = json.loads(json.dumps(_DET_TRANSFORMS))
        transforms[3]["EastRandomCropData"]["size"] = [size, size]
        return {"Global": glob, "Optimizer": optimizer,
                "Architecture": {"model_type": "det", "algorithm": "DB", "Transform": None,
                                 "Backbone": {"name": "PPLCNetV3", "scale": 0.75, "det": True},
                                 "Neck": {"name": "RSEFPN", "out_channels": 96, "shortcut": True},
                                 "Head": {"name": "DBHead", "k": 50}},
                "Loss": {"name": "DBLoss", "balance_loss": True, "main_loss_type": "DiceLoss", "alpha": 5,
                         "beta": 10, "ohem_ratio": 3},
                "PostProcess": {"name": "DBPostProcess", "thresh": 0.3, "box_thresh": 0.6, "max_candidates": 1000,
                                "unclip_ratio": 1.5},
                "Metric": {"name": "DetMetric", "main_indicator": "hmean"},
                "Train": {"dataset": {**dataset, "transforms": transforms}, "loader": loader}, "Eval": None}
    glob.update({"character_dict_path": str(default_dict_path()), "use_space_char": True,
                 "max_text_length": size // 8})
    transforms = [{"DecodeImage": {"img_mode": "BGR", "channel_first": False}}, {"RecAug": None},
                  {"CTCLabelEncode": None}, {"RecResizeImg": {"image_shape": [3, 48, size]}},
                  {"KeepKeys": {"keep_keys": ["image", "label", "length"]}}]
    return {"Global": glob, "Optimizer": optimizer,
            "Architecture": {"model_type": "rec", "algorithm": "SVTR_LCNet", "Transform": None,
                             "Backbone": {"name": "PPLCNetV3", "scale": 0.95},
                             "Neck": {"name": "SequenceEncoder", "encoder_type": "svtr", "dims": 120, "depth": 2,
                                      "hidden_dims": 120, "kernel_size": [1, 3], "use_guide": False},
                             "Head": {"name": "CTCHead", "fc_decay": 1e-5}},
            "Loss": {"name": "CTCLoss"},
            "PostProcess": {"name": "CTCLabelDecode"},
            "Metric": {"name": "RecMetric", "main_indicator": "acc"},
            "Train": {"dataset": {**dataset, "transforms": transforms}, "loader": loader}, "Eval": None}


class _StepLoader(_TimedLoader):
    """Wraps PaddleOCR's DataLoader: a step starts when the loop asks for a batch and ends when it asks for the
    next one (so everything its loop body does — logging, train metric, lr step — is inside the step).
    Only the step boundary differs from :class:`bench.train_step._TimedLoader`, whose pass-through it keeps."""

    def __iter__(self) -> Iterator[Any]:
        inner = iter(self._loader)
        while True:
            self._clock.end()
            self._clock.begin()
            try:
                batch = self._clock.timed("reader", next)(inner)
            except StopIteration:
                self._clock.current = None
                return
            yield batch


@contextlib.contextmanager
def _timing_hooks(clock: StepClock, found: dict[str, Any]) -> Iterator[None]:
    """Wrap the builders ``tools/train.py`` imports (they are looked up on their modules when the script runs),
    and ``Tensor.backward``; restore everything afterwards."""
    import paddle

    import ppocr.data
    import ppocr.losses
    import ppocr.modeling.architectures
    import ppocr.optimizer

    def wrap_loader(build):
        def inner(*args, **kwargs):
            return _StepLoader(build(*args, **kwargs), clock)
        return inner

    def wrap_model(build):
        def inner(*args, **kwargs):
            model = build(*args, **kwargs)
            model.forward = clock.timed("forward", model.forward)
            found["num_params"] = int(sum(int(p.size) for p in model.parameters()))
            return model
        return inner

    def wrap_loss(build):
        def inner(*args, **kwargs):
            loss = build(*args, **kwargs)
            loss.forward = clock.timed("loss", loss.forward)
            return loss
        return inner

    def wrap_optimizer(build):
        def inner(*args, **kwargs):
            optimizer, lr = build(*args, **kwargs)
            optimizer.step = clock.timed("optimizer", optimizer.step)
            return optimizer, lr
        return inner

    patches = [(ppocr.data, "build_dataloader", wrap_loader), (ppocr.modeling.architectures, "build_model", wrap_model),
               (ppocr.losses, "build_loss", wrap_loss), (ppocr.optimizer, "build_optimizer", wrap_optimizer),
               (paddle.Tensor, "backward", lambda fn: clock.timed("backward", fn))]
    originals = [(module, name, getattr(module, name)) for module, name, _ in patches]
    for module, name, wrap in patches:
        setattr(module, name, wrap(getattr(module, name)))
    try:
        yield
    finally:
        for module, name, original in originals:
            setattr(module, name, original)


class _StepCostLog(logging.Handler):
    """Collects ``avg_batch_cost`` from PaddleOCR's per-step log lines (``print_batch_step: 1``): seconds per step
    as its own loop measures them. A handler rather than its ``train.log``, which it only writes when its logger
    was first created with that file."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.step_s: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = re.search(r"avg_batch_cost: ([0-9.]+) s", record.getMessage())
        if match:
            self.step_s.append(float(match.group(1)))


@contextlib.contextmanager
def _ppocr_logging_to_stderr(costs: _StepCostLog) -> Iterator[None]:
    """PaddleOCR's logger prints to stdout, which carries only our JSON: send it to stderr, and listen to it."""
    from ppocr.utils.logging import get_logger

    logger = get_logger()
    for handler in logger.handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream in (sys.stdout, sys.__stdout__):
            handler.setStream(sys.stderr)
    logger.addHandler(costs)
    try:
        yield
    finally:
        logger.removeHandler(costs)


def run_tools_train(spec: dict[str, Any]) -> dict[str, Any]:
    """Run ``tools/train.py`` in this process on ``spec`` (the bench child spec: task, size, batch, workers,
    warmup, steps, det_root | rec_label); returns the same JSON shape as :func:`bench.train_step.child_main`."""
    root = tools_dir()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    clock = StepClock()
    found: dict[str, Any] = {}
    costs = _StepCostLog()
    with tempfile.TemporaryDirectory(prefix="ppocr-train-") as tmp:
        work = Path(tmp)
        label, data_dir, num_samples = write_inputs(spec, work)
        config_file = work / "config.yml"
        config_file.write_text(yaml.safe_dump(paddleocr_config(spec, label, data_dir, work), sort_keys=False))
        argv = sys.argv
        sys.argv = [str(root / "tools" / "train.py"), "-c", str(config_file)]
        try:
            with contextlib.redirect_stdout(sys.stderr), _ppocr_logging_to_stderr(costs), _timing_hooks(clock, found):
                runpy.run_path(str(root / "tools" / "train.py"), run_name="__main__")
        finally:
            sys.argv = argv
    timed = clock.steps[spec["warmup"]:]
    if len(clock.steps) != spec["warmup"] + spec["steps"]:
        raise RuntimeError(f"tools/train.py ran {len(clock.steps)} steps, expected {spec['warmup'] + spec['steps']}")
    return {
        "num_params": found.get("num_params"),
        "steps": [{k: round(v, 4) for k, v in step.items()} for step in timed],
        "warmup_step_s": [round(s["total"], 3) for s in clock.steps[:spec["warmup"]]],
        "peak_rss_mb": peak_rss_mb(),
        "paddleocr_logged_step_s": costs.step_s[spec["warmup"]:],
        "paddleocr_samples": num_samples,
        "cpu_tuning": os.environ.get("OCR_CPU_TUNING"),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "timing": "wrapped loop (reader/forward/loss/backward/optimizer hooks); avg_batch_cost from its log "
                  "as a cross-check",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.paddleocr_train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("det", "rec"), required=True)
    parser.add_argument("--size", type=int, required=True, help="det: square crop side; rec: width at height 48")
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)
    spec = {"task": args.task, "size": args.size, "batch": args.batch, "steps": args.steps, "warmup": args.warmup,
            "workers": args.workers}
    with tempfile.TemporaryDirectory(prefix="ppocr-data-") as tmp:
        from datasets.synth import generate_det_dataset, generate_rec_dataset

        need = (args.warmup + args.steps) * args.batch
        if args.task == "det":
            spec["det_root"] = str(generate_det_dataset(Path(tmp) / "det", need, "icdar2015", seed=0,
                                                        image_size=(2 * args.size, 2 * args.size * 9 // 16)))
        else:
            spec["rec_label"] = str(generate_rec_dataset(Path(tmp) / "rec", int(need * 1.25) + 8, seed=0))
        result = run_tools_train(spec)
    phases = {p: round(sum(s[p] for s in result["steps"]) / len(result["steps"]), 4) for p in PHASES}
    print(json.dumps({**result, "mean_phases_s": phases}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
