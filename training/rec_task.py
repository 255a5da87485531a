"""The recogniser task: PP-OCRv4 rec (SVTR neck + CTC) fine-tuning with charset safety, or ``mode=eval``."""
from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig, OmegaConf

from training.cli import UserError
from training.runner import TaskParts, charset_from_cfg, print_result, run_training

__all__ = ["run", "build_rec_model"]

log = logging.getLogger(__name__)


def build_rec_model(cfg: DictConfig, charset):
    """Model with its starting weights (FP32 pretrained, or the FP32 parent wrapped for QAT with
    ``quant=qat_int8``). Returns (model, load report, QAT session or None)."""
    from training.models import PretrainedError, build_model, load_pretrained
    from training.quant import prepare_qat
    from training.runner import run_dir_of

    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    model_cfg["num_classes"] = charset.num_classes
    try:
        model = build_model(model_cfg)
        session = prepare_qat(model, OmegaConf.to_container(cfg.quant, resolve=True), model_cfg=model_cfg,
                              charset=charset, resume=cfg.trainer.get("resume"), run_dir=run_dir_of(cfg))
        report = session.report if session else load_pretrained(model, model_cfg.get("pretrained"), model_cfg, charset)
    except (PretrainedError, ValueError) as exc:
        raise UserError(f"model: {exc}") from None
    log.info(report.summary())
    return model, report, session


def _warn_short_schedule(cfg: DictConfig) -> None:
    """New CTC rows start as the average class and only learn at full lr: a schedule that is mostly warm-up
    learned nothing new in our measurement (100 warm-up steps of 120), 20 of 300 learned them (README)."""
    steps, warmup = cfg.trainer.get("max_steps"), int(cfg.optim.get("warmup_steps") or 0)
    if steps and warmup > 0.25 * int(steps):
        log.warning("the charset was extended but optim.warmup_steps=%d is %d%% of trainer.max_steps=%d: the new "
                    "rows learn at full lr; +experiment=extend_charset uses 20 of 300", warmup,
                    round(100 * warmup / int(steps)), int(steps))


def _input(cfg: DictConfig) -> tuple[int, int, int]:
    inp = cfg.model.input
    return int(inp.height), int(inp.min_width), int(inp.max_width)


def run(cfg: DictConfig) -> dict[str, Any]:
    from training.data import load_split
    from training.evaluation import RecEvaluator
    from training.trainer import seed_everything

    seed_everything(int(cfg.seed))
    charset = charset_from_cfg(cfg.model)
    height, min_width, max_width = _input(cfg)
    model, report, qat = build_rec_model(cfg, charset)
    eval_data = load_split("eval", cfg.data.eval, task="rec", cache_dir=cfg.paths.cache, on_error=cfg.data.on_error,
                           charset=charset, rec_width=max_width)
    log.info(eval_data.describe())
    normalize = OmegaConf.to_container(cfg.metric, resolve=True)
    # serving's batch rule (batch 6, padded to the widest line, no cap) so eval matches export.evaluate
    evaluator = RecEvaluator(eval_data.samples, charset, normalize, height, min_width, None)
    charset_info = {"charset": charset.to_dict()}
    if cfg.mode == "eval":
        model.eval()
        metric = evaluator.evaluate(model)
        result = {**metric.compute(), "eval_digest": eval_data.digest["digest"], "weights": report.source,
                  "charset_sha256": charset.sha256}
        print_result(result)
        return result
    if cfg.mode != "train":
        raise UserError(f"config error: mode must be train or eval, got {cfg.mode!r}")
    if report.head == "extended":
        _warn_short_schedule(cfg)
    from datasets.loaders import RecDataset, build_loader
    from training.losses import CTCRecLoss
    from training.trainer.distributed import rank, world_size

    train_data = load_split("train", cfg.data.train, task="rec", cache_dir=cfg.paths.cache, on_error=cfg.data.on_error,
                            charset=charset, rec_width=max_width)
    log.info(train_data.describe())
    dataset = RecDataset(train_data.samples, charset, height=height, max_width=max_width,
                         aug=OmegaConf.to_container(cfg.aug, resolve=True), seed=int(cfg.seed),
                         max_text_len=max_width // 8, on_error=cfg.data.on_error, min_width=min_width)
    if dataset.skipped:
        log.warning("data.train: %d line(s) dropped by the CTC label check (first: %s)", len(dataset.skipped),
                    dataset.skipped[0][1])
    loader = build_loader(dataset, int(cfg.data.batch_size), num_workers=int(cfg.data.num_workers), shuffle=True,
                          seed=int(cfg.seed), rank=rank(), world_size=world_size())
    loss = CTCRecLoss()

    def loss_fn(outputs, batch):
        images, labels, lengths = batch[0], batch[1], batch[2]
        return loss(outputs, {"image": images, "label": labels, "length": lengths})

    def after_fit(model, tracker, summary):
        model.eval()
        evaluator.evaluate(model)
        if evaluator.last_metric is not None:
            tracker.log_dict({"worst": evaluator.last_metric.worst(10),
                              "metrics": evaluator.last_metric.compute()}, "eval_report.json")
        if qat:
            from training.det_task import _int8_report

            _int8_report("rec", cfg, qat, summary, eval_data, tracker)

    parts = TaskParts(model=model, loss_fn=loss_fn, train_loader=loader, eval_fn=evaluator, main_metric="acc",
                      train_data=train_data, eval_data=eval_data,
                      extra_state={"task": "rec", **charset_info, "input": {"height": height, "min_width": min_width,
                                                                            "max_width": max_width},
                                   "metric_normalization": normalize, "pretrained": report.source,
                                   "head_init": report.head},
                      tags={"task": "rec", "model.arch": cfg.model.arch, "pretrained": report.source,
                            "charset.sha256": charset.sha256, "charset.size": len(charset), "head_init": report.head,
                            **(qat.tracking_params() if qat else {})},
                      after_fit=after_fit)
    if qat:
        parts.extra_state.update(qat.checkpoint_extra())
    summary = run_training(cfg, parts, "ocr-rec")
    result = {"task": "rec", **{k: summary.get(k) for k in ("status", "best_metric", "best_step", "steps",
                                                             "train_time_s", "samples_per_s", "run_dir",
                                                             "best_checkpoint", "tracking_run_id")},
              "final": summary.get("final_metrics"), **({"registry": summary["registry"]} if "registry" in summary else {})}
    print_result(result)
    return result
