"""``python -m export.int8.sensitivity det|rec --checkpoint SRC --data FORMAT:PATH [--budget X]``: which layers
lose the most when quantized, measured one at a time, and the ``quant.skip`` list that keeps a loss budget.

Why: the skip list of ``conf/quant/qat_int8.yaml`` (``@first_conv @ctc_fc @backbone_se``) was chosen by
hand for PP-OCRv4. A measured ranking tells, for any model and data, which layers to keep FP32 and what each
costs. Every quantizable layer (conv/linear) is wrapped with PaddleSlim's fake quantization exactly as QAT/PTQ
do (same config, affine folding), the activation observers are calibrated once on the data, and then the
quantizers are switched on **one layer at a time** (all others FP32) and the model's output is compared with
the FP32 output on the same images:

* det: mean |Δ| of the DB probability map (``loss``) and the fraction of pixels whose text/no-text decision
  at 0.3 flips;
* rec: mean KL divergence FP32 → quantized of the per-step CTC distribution (``loss``) and the fraction of
  steps whose argmax changes.

The suggested skip list is greedy on that ranking: starting from "everything quantized", the next layer in
rank order is kept FP32 if that lowers the whole quantized model's loss, until the loss is within ``--budget``
or ``--max-skip`` layers are kept (at most ``2 × max-skip`` are tried). Losses are not additive — on PP-OCRv4
rec keeping the 12 worst layers FP32 barely moved the whole-model loss — so every step is measured.
Today's fixed list is measured the same way for comparison. Fake quantization in dygraph approximates the
oneDNN INT8 program closely (the export's parity check bounds the gap); the accuracy of record of a chosen list
comes from a PTQ run (``quant=ptq_int8 quant.skip=[…]``) through ``export.evaluate``.

Output: the ranked table on stdout, then one JSON line (``ranking``, ``all_quantized``, ``fixed_list``,
``suggested_skip``, ``suggested``). Exit 0, or 1 with one line naming what is wrong.

Example::

    python -m export.int8.sensitivity det --checkpoint ppocrv4_mobile --data icdar2015:data/eval --num 8
    python -m training.det quant=ptq_int8 model.pretrained=ppocrv4_mobile 'quant.skip=[backbone.conv1.conv]'
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import numpy as np

__all__ = ["DEFAULT_BUDGET", "QuantSwitch", "load_inputs", "output_loss", "Sensitivity", "analyse", "main"]

#: loss budgets: det mean |Δ prob| (the INT8 export's parity tolerance is 0.02), rec mean KL per CTC step
DEFAULT_BUDGET = {"det": 0.004, "rec": 0.02}
FIXED_LIST = ("@first_conv", "@ctc_fc", "@backbone_se")

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------------ inputs
def load_inputs(task: str, data_spec: str, *, num: int, batch: int = 4, det_size: int = 640, rec_width: int = 320,
                height: int = 48) -> list[np.ndarray]:
    """Up to ``num`` samples of ``FORMAT:PATH`` as normalised float32 batches, preprocessed as served (det:
    resized to ``det_size``²; rec: each text region cut out and resized to ``height``×``rec_width``)."""
    import cv2

    from datasets.crops import crop_polygon
    from datasets.formats import parse_data_spec, read_det, read_rec
    from datasets.imageio import read_image
    from datasets.resize import normalize_det, rec_resize_norm

    spec = parse_data_spec(data_spec)
    if task == "det":
        samples = read_det(spec.format, spec.path)[:num]
        arrays = [normalize_det(cv2.resize(read_image(s.image_path), (det_size, det_size))) for s in samples]
    else:
        arrays = []
        for s in read_rec(spec.format, spec.path)[:num]:
            image = read_image(s.image_path)
            arrays.append(rec_resize_norm(crop_polygon(image, s.points) if s.points is not None else image, height,
                                          rec_width))
    if not arrays:
        raise ValueError(f"--data {data_spec}: no samples")
    return [np.stack(arrays[i:i + batch]).astype(np.float32) for i in range(0, len(arrays), batch)]


# ------------------------------------------------------------------------------------------------ switching
class QuantSwitch:
    """Turns the fake quantization of each wrapped layer on or off without re-wrapping or re-calibrating.

    PaddleSlim wraps a layer as ``MAOutputScaleLayer._layer`` = ``QuantizedConv2D``/``QuantizedLinear`` whose
    ``_fake_quant_input``/``_fake_quant_weight`` sub-layers do the quantization; "off" swaps both for identity
    layers (the calibrated quantizers are kept and swapped back for "on")."""

    def __init__(self, model: Any, names: Sequence[str]) -> None:
        from paddle import nn

        by_name = dict(model.named_sublayers())
        self.names = list(names)
        self._inner: dict[str, Any] = {}
        self._quantizers: dict[str, tuple[Any, Any]] = {}
        for name in self.names:
            inner = by_name[name]
            while not hasattr(inner, "_fake_quant_input"):
                inner = inner._layer
            self._inner[name] = inner
            self._quantizers[name] = (inner._fake_quant_input, inner._fake_quant_weight)
        self._identity = (nn.Identity(), nn.Identity())

    def enable(self, names: Iterable[str]) -> None:
        """Quantize exactly ``names``; every other wrapped layer runs FP32."""
        on = set(names)
        unknown = on - set(self.names)
        if unknown:
            raise ValueError(f"not a quantized layer: {sorted(unknown)[:3]}")
        for name, inner in self._inner.items():
            quant_in, quant_w = self._quantizers[name] if name in on else self._identity
            inner._fake_quant_input = quant_in
            inner._fake_quant_weight = quant_w


# ------------------------------------------------------------------------------------------------ loss
def _outputs(model: Any, batches: Sequence[np.ndarray]) -> list[np.ndarray]:
    import paddle

    outs = []
    with paddle.no_grad():
        for x in batches:
            out = model(paddle.to_tensor(x))
            outs.append(np.asarray((out["maps"] if isinstance(out, dict) else out).numpy(), dtype=np.float64))
    return outs


def output_loss(task: str, ref: Sequence[np.ndarray], got: Sequence[np.ndarray]) -> dict[str, float]:
    """How far quantized outputs ``got`` are from FP32 ``ref`` (see the module docstring)."""
    if task == "det":
        prob_r = np.concatenate([r[:, 0].ravel() for r in ref])
        prob_g = np.concatenate([g[:, 0].ravel() for g in got])
        return {"loss": float(np.abs(prob_r - prob_g).mean()),
                "flipped": float(((prob_r > 0.3) != (prob_g > 0.3)).mean())}
    eps = 1e-8
    p = np.concatenate([r.reshape(-1, r.shape[-1]) for r in ref])
    q = np.concatenate([g.reshape(-1, g.shape[-1]) for g in got])
    kl = (p * (np.log(p + eps) - np.log(q + eps))).sum(-1)
    return {"loss": float(kl.mean()), "flipped": float((p.argmax(-1) != q.argmax(-1)).mean())}


# ------------------------------------------------------------------------------------------------ analysis
@dataclass
class Sensitivity:
    """The result: per-layer losses (worst first), whole-model losses and the suggested skip list."""

    task: str
    ranking: list[dict[str, Any]]
    all_quantized: dict[str, float]
    fixed_list: dict[str, Any]
    suggested_skip: list[str]
    suggested: dict[str, float]
    budget: float
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "budget": self.budget, "ranking": self.ranking, "all_quantized": self.all_quantized,
                "fixed_list": self.fixed_list, "suggested_skip": self.suggested_skip, "suggested": self.suggested,
                "settings": self.settings}


def _fixed_list_layers(model: Any, qcfg: Any) -> list[str]:
    """The layers today's fixed list keeps FP32 on this model (aliases resolved on a folded copy)."""
    from training.quant import mark_skip_layers
    from training.quant_fold import fold_affine_blocks

    if qcfg.fold_affine:
        fold_affine_blocks(model)
    return mark_skip_layers(model, FIXED_LIST, qcfg.quantizable_layer_type)


def analyse(task: str, model: Any, batches: Sequence[np.ndarray], *, calib: Sequence[np.ndarray] | None = None,
            budget: float | None = None, max_skip: int = 12, quant: str = "ptq_int8") -> Sensitivity:
    """Rank every quantizable layer of the FP32 ``model`` (deploy form; left untouched, a copy is wrapped) by
    the output loss of quantizing it alone; suggest the skip list (see the module docstring)."""
    import copy

    from training.quant import QuantConfig, calibrate_observers, load_quant_config, quantize_model

    qcfg = QuantConfig.from_mapping({**load_quant_config(quant).to_dict(), "skip": []})
    model.eval()
    fixed_all = _fixed_list_layers(copy.deepcopy(model), qcfg)
    _, wrapped = quantize_model(copy.deepcopy(model), qcfg)
    names = list(wrapped._ocr_quant_info["quantized_layers"])
    switch = QuantSwitch(wrapped, names)
    switch.enable(names)
    calibrate_observers(wrapped, calib or batches)
    wrapped.eval()
    switch.enable([])
    ref = _outputs(wrapped, batches)  # folded, all quantizers off: the FP32 model (folding is exact)

    def loss_with(enabled: Iterable[str]) -> dict[str, float]:
        switch.enable(enabled)
        return output_loss(task, ref, _outputs(wrapped, batches))

    ranking = []
    start = time.perf_counter()
    for i, name in enumerate(names, 1):
        ranking.append({"layer": name, **loss_with([name])})
        if i % 10 == 0 or i == len(names):
            log.info("sensitivity: %d/%d layers measured (%.0f s)", i, len(names), time.perf_counter() - start)
    ranking.sort(key=lambda r: r["loss"], reverse=True)
    budget = DEFAULT_BUDGET[task] if budget is None else float(budget)
    all_q = loss_with(names)
    skip: list[str] = []
    current = all_q
    for row in ranking[:2 * max_skip]:  # greedy in rank order; a layer stays FP32 only if that lowers the loss
        if current["loss"] <= budget or len(skip) >= max_skip:
            break
        trial = loss_with([n for n in names if n not in skip and n != row["layer"]])
        if trial["loss"] < current["loss"]:
            skip.append(row["layer"])
            current = trial
    fixed = [n for n in fixed_all if n in names]
    fixed_loss = loss_with([n for n in names if n not in fixed])
    return Sensitivity(task, ranking, all_q, {"patterns": list(FIXED_LIST), "layers": fixed, **fixed_loss}, skip,
                       current, budget, {"quant": quant, "num_layers": len(names),
                                         "num_images": int(sum(b.shape[0] for b in batches))})


def format_table(result: Sensitivity, top: int) -> str:
    """The ranked layers and the whole-model rows as text."""
    kind = "mean |Δ prob|" if result.task == "det" else "mean KL"
    flip = "pixels flipped" if result.task == "det" else "argmax changed"
    lines = [f"{'rank':>4}  {'layer (quantized alone)':<52} {kind:>14} {flip:>15}"]
    for i, row in enumerate(result.ranking[:top], 1):
        lines.append(f"{i:>4}  {row['layer']:<52} {row['loss']:>14.5f} {row['flipped']:>15.4%}")
    lines.append("")
    for label, row, skip in (("all quantized", result.all_quantized, []),
                             ("fixed list " + " ".join(FIXED_LIST), result.fixed_list, result.fixed_list["layers"]),
                             (f"suggested (budget {result.budget:g})", result.suggested, result.suggested_skip)):
        lines.append(f"{label:<58} {row['loss']:>14.5f} {row['flipped']:>15.4%}  ({len(skip)} FP32)")
    lines.append(f"suggested quant.skip: [{','.join(result.suggested_skip)}]")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.int8.sensitivity", description=__doc__.split("\n\n")[0])
    p.add_argument("task", choices=["det", "rec"])
    p.add_argument("--checkpoint", required=True, help="FP32 source: checkpoint dir, ppocrv4_mobile or ppocrv5_mobile")
    p.add_argument("--data", required=True, help="FORMAT:PATH of the images the loss is measured on")
    p.add_argument("--calib", help="FORMAT:PATH for calibration (default: --data)")
    p.add_argument("--num", type=int, default=8, help="samples of --data (det images / rec lines)")
    p.add_argument("--budget", type=float, help=f"loss budget of the whole model (default {DEFAULT_BUDGET})")
    p.add_argument("--max-skip", type=int, default=12, help="at most this many layers kept FP32")
    p.add_argument("--quant", default="ptq_int8", help="quant config (conf/quant/NAME.yaml) to wrap with")
    p.add_argument("--det-size", type=int, default=640)
    p.add_argument("--top", type=int, default=15, help="rows of the printed ranking")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr, force=True)
    from export.jit_export import ExportError
    from training.quant import QuantConfigError

    start = time.perf_counter()
    try:
        batches = load_inputs(args.task, args.data, num=args.num, det_size=args.det_size)
        calib = load_inputs(args.task, args.calib, num=args.num, det_size=args.det_size) if args.calib else None
        from export.jit_export import load_source_model

        model, *_ = load_source_model(args.task, args.checkpoint)
        result = analyse(args.task, model, batches, calib=calib, budget=args.budget, max_skip=args.max_skip,
                         quant=args.quant)
        result.settings["source"] = args.checkpoint
    except (ExportError, QuantConfigError, FileNotFoundError, ValueError, KeyError) as exc:
        print(f"sensitivity failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    result.settings["seconds"] = round(time.perf_counter() - start, 1)
    print(format_table(result, args.top))
    print(json.dumps(result.to_dict(), ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
