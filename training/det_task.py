"""The detector task: DB fine-tuning from PP-OCRv4 (or evaluation with ``mode=eval``)."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from training.cli import UserError
from training.runner import TaskParts, print_result, run_training

__all__ = ["run", "build_det_model"]

log = logging.getLogger(__name__)


def build_det_model(cfg: DictConfig):
    """Model with its starting weights: the FP32 pretrained source, or — with ``quant=qat_int8`` — the FP32
    parent wrapped for quantization-aware training. Returns (model, load report, QAT session or None)."""
    from training.models import PretrainedError, build_model, load_pretrained
    from training.quant import prepare_qat
    from training.runner import run_dir_of

    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    try:
        model = build_model(model_cfg)
        session = prepare_qat(model, OmegaConf.to_container(cfg.quant, resolve=True), model_cfg=model_cfg,
                              resume=cfg.trainer.get("resume"), run_dir=run_dir_of(cfg))
        report = session.report if session else load_pretrained(model, model_cfg.get("pretrained"), model_cfg)
    except (PretrainedError, ValueError) as exc:
        raise UserError(f"model: {exc}") from None
    log.info(report.summary())
    return model, report, session


def _evaluator(cfg: DictConfig, samples):
    from training.evaluation import DetEvaluator

    return DetEvaluator(samples, OmegaConf.to_container(cfg.postprocess, resolve=True),
                        cfg.eval_resize.limit_side_len, cfg.eval_resize.limit_type)


def run(cfg: DictConfig) -> dict[str, Any]:
    from training.data import load_split
    from training.trainer import seed_everything

    seed_everything(int(cfg.seed))
    model, report, qat = build_det_model(cfg)
    eval_data = load_split("eval", cfg.data.eval, task="det", cache_dir=cfg.paths.cache, on_error=cfg.data.on_error)
    log.info(eval_data.describe())
    evaluator = _evaluator(cfg, eval_data.samples)
    if cfg.mode == "eval":
        model.eval()
        metrics = evaluator.evaluate(model).compute()
        result = {**metrics, "postprocess": OmegaConf.to_container(cfg.postprocess), "eval_digest": eval_data.digest["digest"],
                  "weights": report.source}
        print_result(result)
        return result
    if cfg.mode != "train":
        raise UserError(f"config error: mode must be train or eval, got {cfg.mode!r}")
    from datasets.loaders import DetTrainDataset, build_loader
    from training.losses import DetLoss
    from training.trainer.distributed import rank, world_size

    train_data = load_split("train", cfg.data.train, task="det", cache_dir=cfg.paths.cache, on_error=cfg.data.on_error)
    log.info(train_data.describe())
    dataset = DetTrainDataset(train_data.samples, OmegaConf.to_container(cfg.aug, resolve=True), seed=int(cfg.seed))
    loader = build_loader(dataset, int(cfg.data.batch_size), num_workers=int(cfg.data.num_workers), shuffle=True,
                          seed=int(cfg.seed), drop_last=len(dataset) > int(cfg.data.batch_size),
                          rank=rank(), world_size=world_size())
    loss = DetLoss()
    fields = DetTrainDataset.FIELDS

    def loss_fn(outputs, batch):
        return loss(outputs, dict(zip(fields, batch)))

    def after_fit(model, tracker, summary):
        _log_pictures(model, tracker, evaluator, cfg)
        if qat:
            _int8_report("det", cfg, qat, summary, eval_data, tracker,
                         {"post_params": OmegaConf.to_container(cfg.postprocess, resolve=True),
                          "limit_side_len": int(cfg.eval_resize.limit_side_len),
                          "limit_type": str(cfg.eval_resize.limit_type)})

    parts = TaskParts(model=model, loss_fn=loss_fn, train_loader=loader, eval_fn=evaluator, main_metric="hmean",
                      train_data=train_data, eval_data=eval_data,
                      extra_state={"task": "det", "postprocess": OmegaConf.to_container(cfg.postprocess),
                                   "eval_resize": OmegaConf.to_container(cfg.eval_resize),
                                   "pretrained": report.source},
                      tags={"task": "det", "model.arch": cfg.model.arch, "pretrained": report.source,
                            "pretrained.fresh_tensors": len(report.fresh), **(qat.tracking_params() if qat else {})},
                      after_fit=after_fit)
    if qat:
        parts.extra_state.update(qat.checkpoint_extra())
    summary = run_training(cfg, parts, "ocr-det")
    result = {"task": "det", **{k: summary.get(k) for k in ("status", "best_metric", "best_step", "steps",
                                                             "train_time_s", "samples_per_s", "run_dir",
                                                             "best_checkpoint", "tracking_run_id")},
              "final": summary.get("final_metrics"), **({"registry": summary["registry"]} if "registry" in summary else {})}
    print_result(result)
    return result


def _int8_report(task: str, cfg: DictConfig, qat, summary, eval_data, tracker, export_kwargs=None) -> None:
    """QAT runs: export the INT8 model and its FP32 parent, evaluate both through the serving code on the eval
    split (metrics, delta, latency at batch 1 and 8, sizes) and log the comparison to the run."""
    from training.quant_eval import qat_report
    from training.runner import run_dir_of

    checkpoint = summary.get("best_checkpoint") or summary.get("latest_checkpoint")
    try:
        qat_report(task, checkpoint, qat.block, f"{eval_data.format}:{eval_data.path}", run_dir_of(cfg) / "int8",
                   tracker=tracker, export_kwargs=export_kwargs)
    except Exception as exc:  # noqa: BLE001 -- the trained QAT checkpoint is complete either way
        log.warning("INT8 evaluation of record failed (checkpoint %s is complete): %s", checkpoint, exc)


def _log_pictures(model, tracker, evaluator, cfg: DictConfig, limit: int = 4) -> None:
    """A few eval images with predicted (red) and true (green) polygons, as MLflow image artifacts."""
    from datasets.imageio import read_image
    from training.evaluation import det_predict
    from training.visualize import draw_detections

    model.eval()
    for i, sample in enumerate(evaluator.samples[:limit]):
        image = read_image(sample.image_path)
        preds = det_predict(model, image, evaluator.post, evaluator.limit_side_len, evaluator.limit_type)
        canvas = draw_detections(image, preds, [inst.points for inst in sample.instances],
                                 [inst.ignore for inst in sample.instances])
        tracker.log_image(np.ascontiguousarray(canvas[:, :, ::-1]), f"eval_images/{i:02d}_{sample.image_path.stem}.png")
