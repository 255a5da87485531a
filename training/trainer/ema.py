"""Exponential moving average of a model's weights, swapped in for evaluation.

Why: EMA weights of a fine-tuned detector/recogniser are usually a little better and much less noisy from
one eval to the next than the raw weights, which makes best-model selection and early stopping steadier.
The trainer evaluates, selects and exports the EMA weights when EMA is on.

Example::

    ema = ModelEMA(model, decay=0.999)
    for batch in loader:
        ...; optimizer.step(); ema.update(model)
    with ema.apply_to(model):
        metrics = evaluate(model)          # raw weights are back afterwards
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from datasets import runtime as _runtime  # noqa: F401  -- zlib before paddle

import paddle

__all__ = ["ModelEMA"]


def _is_float(t: paddle.Tensor) -> bool:
    return t.dtype in (paddle.float16, paddle.float32, paddle.float64, paddle.bfloat16)


class ModelEMA:
    """``shadow = d * shadow + (1 - d) * weight`` after every optimizer step, over the whole state dict.

    Floating entries (parameters and BN running statistics) are averaged; integer buffers are copied.
    With ``warmup`` the effective decay is ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so early
    averages are not dominated by the (pretrained or random) starting weights.
    """

    def __init__(self, model: paddle.nn.Layer, decay: float = 0.999, warmup: bool = True) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.warmup = bool(warmup)
        self.num_updates = 0
        with paddle.no_grad():
            self.shadow: dict[str, paddle.Tensor] = {
                k: v.detach().clone() for k, v in model.state_dict().items()
            }

    def current_decay(self) -> float:
        """The decay the next :meth:`update` will use."""
        if self.warmup:
            n = self.num_updates
            return min(self.decay, (1.0 + n) / (10.0 + n))
        return self.decay

    @paddle.no_grad()
    def update(self, model: paddle.nn.Layer) -> None:
        """Fold the model's current weights into the average (call after each optimizer step)."""
        d = self.current_decay()
        for key, value in model.state_dict().items():
            shadow = self.shadow.get(key)
            if shadow is None:
                raise KeyError(f"EMA: model has a new state entry {key!r} that the EMA was not built with")
            if _is_float(value):
                paddle.assign(shadow * d + value.detach().astype(shadow.dtype) * (1.0 - d), output=shadow)
            else:
                paddle.assign(value.detach(), output=shadow)
        self.num_updates += 1

    @contextlib.contextmanager
    def apply_to(self, model: paddle.nn.Layer) -> Iterator[paddle.nn.Layer]:
        """Temporarily load the EMA weights into ``model``; the raw weights are restored on exit, even on
        error, so training continues from exactly where it was."""
        with paddle.no_grad():
            backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
            model.set_state_dict(self.shadow)
        try:
            yield model
        finally:
            with paddle.no_grad():
                model.set_state_dict(backup)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the average after a resume (shadow as numpy arrays)."""
        return {
            "decay": self.decay,
            "warmup": self.warmup,
            "num_updates": self.num_updates,
            "shadow": {k: np.array(v.numpy(), copy=True) for k, v in self.shadow.items()},
        }

    def shadow_state_dict(self) -> dict[str, paddle.Tensor]:
        """The averaged weights as a model state dict (what gets evaluated and exported)."""
        return dict(self.shadow)

    def set_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output; keys and shapes must match the model's."""
        self.decay = float(state["decay"])
        self.warmup = bool(state["warmup"])
        self.num_updates = int(state["num_updates"])
        saved = state["shadow"]
        missing = sorted(set(self.shadow) - set(saved))
        if missing:
            raise KeyError(f"EMA state lacks entries {missing[:5]}{'...' if len(missing) > 5 else ''}")
        with paddle.no_grad():
            for key, tensor in self.shadow.items():
                value = np.asarray(saved[key])
                if tuple(value.shape) != tuple(tensor.shape):
                    raise ValueError(f"EMA state {key}: shape {value.shape} != {tuple(tensor.shape)}")
                tensor.set_value(value.astype(np.dtype(value.dtype)))
