"""The recogniser task: PP-OCRv4 rec (SVTR neck + CTC) fine-tuning with charset safety, or ``mode=eval``,
as a :class:`Task`."""
from __future__ import annotations

import logging
from functools import cached_property
from typing import Any, Callable, Mapping

from omegaconf import DictConfig, OmegaConf

from training.cli import UserError
from training.task import BuiltModel, Task

__all__ = ["RecTask", "charset_from_cfg", "warn_short_schedule"]

log = logging.getLogger(__name__)


def charset_from_cfg(model_cfg: DictConfig | dict):
    """The configured charset: the dict file (default ppocr_keys_v1) + space flag + extra characters."""
    from datasets.charset import Charset, CharsetError

    from training.models.pretrained import PretrainedError, named_charset

    cs_cfg = dict(model_cfg.get("charset") or {})
    try:
        named = named_charset(cs_cfg.get("dict_path"), bool(cs_cfg.get("use_space_char", True)))
        if named is not None:  # the dict shipped with named weights: ppocrv5_mobile
            charset = named
        elif cs_cfg.get("dict_path"):
            charset = Charset.from_file(cs_cfg["dict_path"], bool(cs_cfg.get("use_space_char", True)))
        else:
            charset = Charset.default()
            if not cs_cfg.get("use_space_char", True):
                charset = Charset(tuple(c for c in charset.chars if c != " "), False, charset.source)
    except (CharsetError, PretrainedError) as exc:
        raise UserError(f"model.charset: {exc}") from None
    if cs_cfg.get("extra_chars"):
        charset = charset.extend(str(cs_cfg["extra_chars"]))
    return charset


def warn_short_schedule(cfg: DictConfig) -> None:
    """New CTC rows start as the average class and only learn at full lr: a schedule that is mostly warm-up
    learned nothing new in our measurement (100 warm-up steps of 120), 20 of 300 learned them (README)."""
    steps, warmup = cfg.trainer.get("max_steps"), int(cfg.optim.get("warmup_steps") or 0)
    if steps and warmup > 0.25 * int(steps):
        log.warning("the charset was extended but optim.warmup_steps=%d is %d%% of trainer.max_steps=%d: the new "
                    "rows learn at full lr; +experiment=extend_charset uses 20 of 300", warmup,
                    round(100 * warmup / int(steps)), int(steps))


class RecTask(Task):
    name = "rec"
    main_metric = "acc"
    experiment = "ocr-rec"

    @cached_property
    def charset(self):
        return charset_from_cfg(self.cfg.model)

    @property
    def _input(self) -> tuple[int, int, int]:
        inp = self.cfg.model.input
        return int(inp.height), int(inp.min_width), int(inp.max_width)

    @property
    def _normalize(self) -> dict:
        return OmegaConf.to_container(self.cfg.metric, resolve=True)  # type: ignore[return-value]

    def build_model(self) -> BuiltModel:
        """FP32 pretrained weights (head extended for new characters when allowed), or the FP32 parent wrapped
        for QAT with ``quant=qat_int8``."""
        from training.models import PretrainedError, build_model, load_pretrained
        from training.quant import prepare_qat
        from training.runner import run_dir_of

        cfg, charset = self.cfg, self.charset
        model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
        model_cfg["num_classes"] = charset.num_classes
        try:
            model = build_model(model_cfg)
            session = prepare_qat(model, OmegaConf.to_container(cfg.quant, resolve=True), model_cfg=model_cfg,
                                  charset=charset, resume=cfg.trainer.get("resume"), run_dir=run_dir_of(cfg))
            report = session.report if session else load_pretrained(model, model_cfg.get("pretrained"), model_cfg,
                                                                    charset)
        except (PretrainedError, ValueError) as exc:
            raise UserError(f"model: {exc}") from None
        log.info(report.summary())
        if report.head == "extended" and cfg.mode == "train":
            warn_short_schedule(cfg)
        return BuiltModel(model, report, session)

    def load_split(self, split: str) -> Any:
        from training.data import load_split

        cfg = self.cfg
        return load_split(split, cfg.data[split], task="rec", cache_dir=cfg.paths.cache, on_error=cfg.data.on_error,
                          charset=self.charset, rec_width=self._input[2])

    def evaluator(self, eval_data: Any) -> Any:
        from training.evaluation import RecEvaluator

        height, min_width, _ = self._input
        # serving's batch rule (batch 6, padded to the widest line, no cap) so eval matches export.evaluate
        return RecEvaluator(eval_data.samples, self.charset, self._normalize, height, min_width, None)

    def train_loader(self, train_data: Any) -> Any:
        from datasets.loaders import RecDataset, build_loader
        from training.trainer.distributed import rank, world_size

        cfg = self.cfg
        height, min_width, max_width = self._input
        dataset = RecDataset(train_data.samples, self.charset, height=height, max_width=max_width,
                             aug=OmegaConf.to_container(cfg.aug, resolve=True), seed=int(cfg.seed),
                             max_text_len=max_width // 8, on_error=cfg.data.on_error, min_width=min_width)
        if dataset.skipped:
            log.warning("data.train: %d line(s) dropped by the CTC label check (first: %s)", len(dataset.skipped),
                        dataset.skipped[0][1])
        return build_loader(dataset, int(cfg.data.batch_size), num_workers=int(cfg.data.num_workers), shuffle=True,
                            seed=int(cfg.seed), rank=rank(), world_size=world_size())

    def loss_fn(self) -> Callable[[Any, Any], Any]:
        from training.losses import CTCRecLoss

        loss = CTCRecLoss()

        def loss_fn(outputs, batch):
            return loss(outputs, {"image": batch[0], "label": batch[1], "length": batch[2]})

        return loss_fn

    def tags(self, built: BuiltModel) -> dict[str, Any]:
        return {"model.arch": self.cfg.model.arch, "pretrained": built.report.source,
                "charset.sha256": self.charset.sha256, "charset.size": len(self.charset),
                "head_init": built.report.head}

    def extra_state(self, built: BuiltModel) -> dict[str, Any]:
        height, min_width, max_width = self._input
        return {"charset": self.charset.to_dict(),
                "input": {"height": height, "min_width": min_width, "max_width": max_width},
                "metric_normalization": self._normalize, "pretrained": built.report.source,
                "head_init": built.report.head}

    def eval_result(self, metrics: Mapping[str, Any], eval_data: Any, built: BuiltModel) -> dict[str, Any]:
        return {**metrics, "eval_digest": eval_data.digest["digest"], "weights": built.report.source,
                "charset_sha256": self.charset.sha256}

    def pictures(self, model: Any, tracker: Any, evaluator: Any) -> None:
        """The ten worst eval lines with their predictions, as ``eval_report.json`` and as a picture
        (``eval_images/worst_lines.png``: line image, truth, prediction)."""
        from training.evaluation import rec_line_image
        from training.visualize import draw_worst_lines

        model.eval()
        evaluator.evaluate(model)
        if evaluator.last_metric is not None:
            worst = evaluator.last_metric.worst(10)
            tracker.log_dict({"worst": worst, "metrics": evaluator.last_metric.compute()}, "eval_report.json")
            by_key = {(str(s.image_path), s.text): s for s in evaluator.samples}
            lines = [(rec_line_image(by_key[r["key"], r["truth"]]), r["truth"], r["pred"]) for r in worst
                     if (r["key"], r["truth"]) in by_key]
            if lines:
                tracker.log_image(draw_worst_lines(lines), "eval_images/worst_lines.png")
