"""``python -m bench.charset_extension``: does extending the charset teach new characters without losing old ones?

An accuracy experiment, run through the documented commands only: synthetic lines are written with
``datasets.synth`` (old-charset lines, and lines carrying 1-2 of the new characters via ``--insert-chars``),
the pretrained PP-OCRv4 recogniser with the extended charset is evaluated on held-out old and new lines
(``mode=eval``), fine-tuned with ``+experiment=extend_charset`` on the two training sets mixed, and evaluated
again. Prints a table and the JSON result (last stdout line; ``--json FILE`` too).

    python -m bench.charset_extension [--chars 毖恫刽豢耪] [--steps 300] [--train 600] [--out DIR] [--set K=V …]

Takes ~20 min at the defaults on 2 CPU cores (300 steps at batch 16).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import OUT_DIR, ROOT, machine, make_console, versions, write_json

__all__ = ["run_bench", "main"]

#: five GB2312 characters that are not in ppocr_keys_v1.txt and that Noto Sans CJK renders
DEFAULT_CHARS = "毖恫刽豢耪"


def _last_json(cmd: list[str]) -> dict[str, Any]:
    """Run a project command; its last stdout line is its JSON result."""
    done = subprocess.run([sys.executable, *cmd], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} … failed ({done.returncode}): {done.stderr.strip()[-1500:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _make_lines(root: Path, name: str, num: int, seed: int, chars: str = "") -> str:
    """Render lines into ``root/name/`` and write ``root/name.txt`` with image paths relative to ``root``
    (PaddleOCR's convention: one data root, several label files); returns that label file's name."""
    args = ["-m", "datasets.synth", "--rec", "--out", str(root / name), "--num", str(num), "--seed", str(seed),
            "--lang", "ch"]
    label = Path(_last_json(args + (["--insert-chars", chars] if chars else []))["out"])
    lines = label.read_text(encoding="utf-8").splitlines()
    (root / f"{name}.txt").write_text("".join(f"{name}/{line}\n" for line in lines), encoding="utf-8")
    return f"{name}.txt"


def _rec(out: Path, *overrides: str) -> dict[str, Any]:
    return _last_json(["-m", "training.rec", "+experiment=extend_charset", f"data.train.root={out}",
                       f"data.eval.root={out}", "tracking=none", "trainer.progress_bar=false", *overrides])


def run_bench(chars: str, steps: int, num_train: int, out: Path, overrides: list[str] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    rel = {"train_old": _make_lines(out, "train_old", num_train, 1), "train_new": _make_lines(out, "train_new", num_train, 2, chars),
           "eval_old": _make_lines(out, "eval_old", 200, 3), "eval_new": _make_lines(out, "eval_new", 100, 4, chars)}
    extra = f"model.charset.extra_chars='{chars}'"

    def evaluate(weights: str) -> dict[str, dict[str, float]]:
        results = {name: _rec(out, extra, "mode=eval", f"model.pretrained={weights}",
                              f"data.train.label_files=[{rel['train_old']}]", f"data.eval.label_files=[{rel[name]}]",
                              f"hydra.run.dir={out / 'eval'}") for name in ("eval_old", "eval_new")}
        return {name: {k: r[k] for k in ("acc", "norm_edit_dis")} for name, r in results.items()}

    before = evaluate("ppocrv4_mobile")
    trained = _rec(out, extra, f"trainer.max_steps={steps}", f"trainer.eval_every={max(1, steps // 3)}",
                   f"data.train.label_files=[{rel['train_new']},{rel['train_old']}]",
                   f"data.eval.label_files=[{rel['eval_new']}]", "data.num_workers=0",
                   f"hydra.run.dir={out / 'run'}", *(overrides or []))
    after = evaluate(trained["best_checkpoint"])
    return {"machine": machine(), "versions": versions(),
            "settings": {"chars": chars, "steps": steps, "train_lines": {"old": num_train, "new": num_train},
                         "eval_lines": {"old": 200, "new": 100}, "preset": "+experiment=extend_charset",
                         "overrides": list(overrides or [])},
            "before": before, "after": after, "best_step": trained.get("best_step"),
            "train_time_s": trained.get("train_time_s"), "seconds": round(time.perf_counter() - started, 1)}


def _print_table(result: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"charset +{result['settings']['chars']}: pretrained (extended head) → fine-tuned")
    for col in ("eval set", "acc before", "acc after", "1−NED before", "1−NED after"):
        table.add_column(col, justify="right" if col != "eval set" else "left")
    for name, label in (("eval_old", "old characters only"), ("eval_new", "with new characters")):
        b, a = result["before"][name], result["after"][name]
        table.add_row(label, f"{b['acc']:.3f}", f"{a['acc']:.3f}", f"{b['norm_edit_dis']:.3f}", f"{a['norm_edit_dis']:.3f}")
    make_console().print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.charset_extension", description=__doc__.split("\n\n")[0])
    parser.add_argument("--chars", default=DEFAULT_CHARS, help="the characters to add")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--train", type=int, default=600, help="training lines of each kind (old, new)")
    parser.add_argument("--out", type=Path, default=OUT_DIR / "charset_extension", help="work directory")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="extra training override, e.g. --set trainer.freeze_bn=false (repeatable)")
    parser.add_argument("--json", type=Path, metavar="FILE")
    args = parser.parse_args(argv)
    result = run_bench(args.chars, args.steps, args.train, args.out.resolve(), args.set)
    _print_table(result)
    write_json(result, args.json, "charset_extension.json")
    print(json.dumps(result, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
