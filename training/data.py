"""From the ``data`` config to validated samples with a digest — the one door training data comes through.

A split is ``{format, root, ...}``. ``format: synth`` renders the embedded synthetic set on first use into
``${paths.cache}`` (deterministic by seed, so the cached copy is reused; written to a temp dir and renamed,
so a killed render never leaves half a dataset). Every split is validated with :mod:`datasets.check`:
errors refuse the run unless ``data.on_error=skip``, in which case the bad samples are dropped and counted.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from datasets.digest import dataset_digest
from datasets.formats import read_det, read_rec
from training.cli import UserError

__all__ = ["SplitData", "load_split", "synth_split_path"]

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    name: str                       # "train" | "eval"
    format: str
    path: str
    samples: list = field(default_factory=list)
    digest: dict = field(default_factory=dict)
    num_errors: int = 0
    num_skipped: int = 0

    def describe(self) -> str:
        skipped = f", {self.num_skipped} skipped" if self.num_skipped else ""
        return f"{self.name}: {len(self.samples)} samples from {self.format}:{self.path}{skipped} (digest {self.digest.get('digest', '')[:12]})"


def synth_split_path(split: Mapping[str, Any], task: str, cache_dir: str | Path) -> tuple[str, Path]:
    """Render (once) the synthetic split described by ``split``; returns (format, path) to read it from."""
    from datasets import synth

    lang, kind, seed, num = split.get("lang", "mixed"), split.get("kind", "scene"), int(split.get("seed", 0)), int(split["num"])
    shift = bool(split.get("shift", False))
    width, height = split.get("image_size", [640, 480])
    lines = task == "rec" and split.get("rec_source", "lines") == "lines"
    tag = f"{'rec' if lines else 'det'}-{lang}-{kind}{'-shift' if shift else ''}-{width}x{height}-s{seed}-n{num}"
    out = Path(cache_dir).expanduser().resolve() / "synth" / tag
    if not (out / ".complete").is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{tag}-", dir=out.parent))
        log.info("rendering synthetic %s split %s", task, tag)
        if lines:
            synth.generate_rec_dataset(tmp, num, seed=seed, lang=lang, kind=kind, shift=shift)
        else:
            synth.generate_det_dataset(tmp, num, fmt="icdar2015", lang=lang, seed=seed, image_size=(width, height),
                                       kind=kind, shift=shift)
        (tmp / ".complete").write_text("ok\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    return ("ppocr-rec", out / "label.txt") if lines else ("icdar2015", out)


def _validate_and_read(task: str, fmt: str, path: Path, split: Mapping[str, Any], charset,
                       rec_width: int | None) -> tuple[list, list, Any, str]:
    """Read leniently through :func:`datasets.check.validate` (the same checks as ``python -m datasets.check``)
    and return (good samples for ``task``, error issues other than out-of-charset text, report, the
    ``datasets.check`` command that reproduces the report). Out-of-charset lines stay in the samples: the caller
    refuses or drops them line by line (a det page with one such word keeps its other words)."""
    from datasets.check import check_command, validate
    from datasets.errors import OOV
    from datasets.formats import det_to_rec, get_format

    root = None
    path_arg: Any = path
    if fmt.startswith("ppocr"):
        root = path.parent if path.is_file() else path
        label_files = split.get("label_files") or []
        path_arg = [path / lf for lf in label_files] if label_files and path.is_dir() else path
    report = validate(fmt, path_arg, charset, root=root, rec_width=rec_width, max_text_len=None)
    hint = check_command(fmt, path_arg, root=root, charset=charset)
    good, _bad = report.split(ignore_kinds=(OOV,))
    if split.get("ratios") and fmt.startswith("ppocr"):
        reader = read_det if get_format(fmt).task == "det" else read_rec
        mixed = reader(fmt, path_arg, root=root, ratios=list(split["ratios"]), issues=[])
        keep = {str(s.image_path) for s in good}
        good = [s for s in mixed if str(s.image_path) in keep]
    if task == "rec" and get_format(fmt).task == "det":
        good = det_to_rec(good)
    elif task == "det" and get_format(fmt).task == "rec":
        raise UserError(f"{fmt} holds text lines; the detector needs one of icdar2015, rctw17, ppocr-det")
    return good, [e for e in report.errors if e.kind != OOV], report, hint


def load_split(name: str, split: Mapping[str, Any], *, task: str, cache_dir: str | Path, on_error: str = "raise",
               charset=None, rec_width: int | None = None) -> SplitData:
    """Samples of one split, validated, with their digest; ``split.mix`` adds other sources by ratio.

    ``mix: [{format: synth, num: 2000, kind: invoice, ratio: 0.5}, {format: ppocr-rec, root: …, ratio: 2}]``:
    each entry is a split of its own (validated the same way) of which ``ratio`` × its size samples join the
    main split — PaddleOCR's ``ratio_list`` meaning, fixed once per run from the seed; a ratio above 1 repeats
    samples (oversampling a small source). The digest covers the mixed sample list."""
    main = _load_source(name, split, task=task, cache_dir=cache_dir, on_error=on_error, charset=charset,
                        rec_width=rec_width)
    mix = list(split.get("mix") or [])
    if not mix:
        return main
    samples, sources = list(main.samples), [f"{main.format}:{main.path}"]
    num_errors, num_skipped = main.num_errors, main.num_skipped
    for i, entry in enumerate(mix):
        entry = dict(entry)
        where = f"data.{name}.mix[{i}]"
        ratio = entry.pop("ratio", 1.0)
        if not isinstance(ratio, (int, float)) or ratio <= 0:
            raise UserError(f"config error: {where}.ratio must be a number > 0, got {ratio!r}")
        if entry.get("mix"):
            raise UserError(f"config error: {where} has its own mix; list every source in data.{name}.mix")
        part = _load_source(f"{name}.mix[{i}]", entry, task=task, cache_dir=cache_dir, on_error=on_error,
                            charset=charset, rec_width=rec_width)
        samples += _take(part.samples, float(ratio), seed=f"{name}:{i}")
        sources.append(f"{part.format}:{part.path} x{float(ratio):g}")
        num_errors += part.num_errors
        num_skipped += part.num_skipped
    return SplitData(name, "mixed", " + ".join(sources), samples, dataset_digest(samples, mode="fast"),
                     num_errors=num_errors, num_skipped=num_skipped)


def _take(samples: list, ratio: float, seed: str) -> list:
    """``round(len × ratio)`` samples: whole copies for the integer part, a seeded subset for the rest."""
    import random

    count = round(len(samples) * ratio)
    copies, rest = divmod(count, len(samples)) if samples else (0, 0)
    return samples * copies + random.Random(seed).sample(samples, rest)


def _load_source(name: str, split: Mapping[str, Any], *, task: str, cache_dir: str | Path, on_error: str,
                 charset, rec_width: int | None) -> SplitData:
    fmt = split.get("format")
    if not fmt:
        raise UserError(f"config error: data.{name}.format must be set (synth, icdar2015, rctw17, ppocr-det, ppocr-rec)")
    if fmt == "synth":
        if split.get("num") is None:
            raise UserError(f"config error: data.{name}.num must be set for format synth (how many samples to render)")
        fmt, path = synth_split_path(split, task, cache_dir)
    else:
        if split.get("root") in (None, "", "???"):
            raise UserError(f"config error: data.{name}.root must be set for format {fmt}")
        path = Path(str(split["root"])).expanduser()
        if not path.exists():
            raise UserError(f"data.{name}.root={path}: not found")
    if on_error not in ("raise", "skip"):
        raise UserError(f"config error: data.on_error must be 'raise' or 'skip', got {on_error!r}")
    from datasets.check import oov_message
    from datasets.errors import DatasetError, one_line

    try:
        samples, errors, report, hint = _validate_and_read(task, fmt, path, split, charset, rec_width)
    except (ValueError, OSError, DatasetError) as exc:
        raise UserError(f"data.{name}: {one_line(exc)}") from None
    num_skipped = 0
    if errors:
        first = errors[0]
        if on_error == "raise":
            raise UserError(f"data.{name} ({fmt}:{path}) has {len(errors)} error(s); first: {first}. "
                            f"Run `{hint}` for the full report, fix them, or set "
                            "data.on_error=skip to drop the bad samples")
        num_skipped = len(errors)
        log.warning("data.%s: %d error(s), bad samples dropped (data.on_error=skip); first: %s", name, num_skipped, first)
    oov = oov_message(report) if task == "rec" and charset is not None else None
    if oov:
        # the sentence `python -m datasets.check ... --charset` prints about the same data
        message = f"data.{name} ({fmt}:{path}): {oov}"
        if on_error == "raise":
            raise UserError(f"{message}, or set data.on_error=skip to drop these lines. Full report: `{hint}`")
        log.warning("%s; dropped (data.on_error=skip)", message)
        kept = [s for s in samples if all(charset.contains(ch) for ch in s.text)]
        num_skipped += len(samples) - len(kept)
        samples = kept
    if not samples:
        raise UserError(f"data.{name} ({fmt}:{path}) has no usable samples")
    digest = dataset_digest(samples, mode="fast")
    return SplitData(name, fmt, str(path), samples, digest, num_errors=len(errors), num_skipped=num_skipped)
