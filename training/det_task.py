"""The detector task: DB fine-tuning from PP-OCRv4 (or evaluation with ``mode=eval``), as a :class:`Task`."""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

import numpy as np
from omegaconf import OmegaConf

from training.cli import UserError
from training.task import BuiltModel, Task

__all__ = ["DetTask"]

log = logging.getLogger(__name__)


class DetTask(Task):
    name = "det"
    main_metric = "hmean"
    experiment = "ocr-det"

    def build_model(self) -> BuiltModel:
        """FP32 pretrained weights, or — with ``quant=qat_int8`` — the FP32 parent wrapped for QAT."""
        from training.models import PretrainedError, build_model, load_pretrained
        from training.quant import prepare_qat
        from training.runner import run_dir_of

        cfg = self.cfg
        model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
        try:
            model = build_model(model_cfg)
            session = prepare_qat(model, OmegaConf.to_container(cfg.quant, resolve=True), model_cfg=model_cfg,
                                  resume=cfg.trainer.get("resume"), run_dir=run_dir_of(cfg))
            report = session.report if session else load_pretrained(model, model_cfg.get("pretrained"), model_cfg)
        except (PretrainedError, ValueError) as exc:
            raise UserError(f"model: {exc}") from None
        log.info(report.summary())
        return BuiltModel(model, report, session)

    def load_split(self, split: str) -> Any:
        from training.data import load_split

        cfg = self.cfg
        return load_split(split, cfg.data[split], task="det", cache_dir=cfg.paths.cache, on_error=cfg.data.on_error)

    def evaluator(self, eval_data: Any) -> Any:
        from training.evaluation import DetEvaluator

        cfg = self.cfg
        return DetEvaluator(eval_data.samples, OmegaConf.to_container(cfg.postprocess, resolve=True),
                            cfg.eval_resize.limit_side_len, cfg.eval_resize.limit_type,
                            cfg.eval_resize.get("max_side_limit"), cfg.eval_resize.get("max_upscale"))

    def train_loader(self, train_data: Any) -> Any:
        from datasets.loaders import DetTrainDataset, build_loader
        from training.trainer.distributed import rank, world_size

        cfg = self.cfg
        dataset = DetTrainDataset(train_data.samples, OmegaConf.to_container(cfg.aug, resolve=True), seed=int(cfg.seed))
        batch = int(cfg.data.batch_size)
        return build_loader(dataset, batch, num_workers=int(cfg.data.num_workers), shuffle=True, seed=int(cfg.seed),
                            drop_last=len(dataset) > batch, rank=rank(), world_size=world_size())

    def loss_fn(self) -> Callable[[Any, Any], Any]:
        from datasets.loaders import DetTrainDataset
        from training.losses import DetLoss

        loss, fields = DetLoss(), DetTrainDataset.FIELDS

        def loss_fn(outputs, batch):
            return loss(outputs, dict(zip(fields, batch)))

        return loss_fn

    def tags(self, built: BuiltModel) -> dict[str, Any]:
        return {"model.arch": self.cfg.model.arch, "pretrained": built.report.source,
                "pretrained.fresh_tensors": len(built.report.fresh)}

    def extra_state(self, built: BuiltModel) -> dict[str, Any]:
        return {"postprocess": OmegaConf.to_container(self.cfg.postprocess),
                "eval_resize": OmegaConf.to_container(self.cfg.eval_resize), "pretrained": built.report.source}

    def eval_result(self, metrics: Mapping[str, Any], eval_data: Any, built: BuiltModel) -> dict[str, Any]:
        return {**metrics, "postprocess": OmegaConf.to_container(self.cfg.postprocess),
                "eval_digest": eval_data.digest["digest"], "weights": built.report.source}

    def serving(self) -> dict[str, Any]:
        """The run's DB post-process and resize policy go into both exports' ``inference.yml``."""
        cfg = self.cfg
        return {"post_params": OmegaConf.to_container(cfg.postprocess, resolve=True),
                "limit_side_len": int(cfg.eval_resize.limit_side_len), "limit_type": str(cfg.eval_resize.limit_type),
                "max_side_limit": cfg.eval_resize.get("max_side_limit"),
                "max_upscale": cfg.eval_resize.get("max_upscale")}

    def pictures(self, model: Any, tracker: Any, evaluator: Any, limit: int = 4) -> None:
        """A few eval images with predicted (red) and true (green) polygons, as MLflow image artifacts."""
        from datasets.imageio import read_image
        from training.evaluation import det_predict
        from training.visualize import draw_detections

        model.eval()
        for i, sample in enumerate(evaluator.samples[:limit]):
            image = read_image(sample.image_path)
            preds = det_predict(model, image, evaluator.post, evaluator.limit_side_len, evaluator.limit_type,
                                evaluator.max_side_limit, evaluator.max_upscale)
            canvas = draw_detections(image, preds, [inst.points for inst in sample.instances],
                                     [inst.ignore for inst in sample.instances])
            tracker.log_image(np.ascontiguousarray(canvas[:, :, ::-1]),
                              f"eval_images/{i:02d}_{sample.image_path.stem}.png")
