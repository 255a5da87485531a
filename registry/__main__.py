"""``python -m registry``: register, list, show, promote, rollback, history, compare.

README section (paste as is)
============================

## Model registry: versions, gated promotion, rollback, serving

Every exported model becomes a version of the MLflow registered model ``ocr-det`` or ``ocr-rec`` carrying
its lineage as version tags: task, training data digest and size, eval data digest, charset sha256, the
metrics of record (measured through the serving code by ``export.evaluate``, with the post-process
parameters and median latency), quantized yes/no and the FP32 parent of an INT8 model, git sha, library
versions, and the MLflow run it came from. Aliases, never stages: ``champion`` is what serves,
``challenger`` gets canary traffic, ``previous-champion`` is the rollback target. Everything lives in the
tracking store (default ``sqlite:///mlflow.db``; set ``MLFLOW_TRACKING_URI`` or ``--tracking-uri`` for an
``mlflow server``)::

    # 1. register an exported model (metrics of record from export.evaluate on the eval set)
    python -m registry register det --model-dir exports/det --eval-data icdar2015:data/icdar2015/test \
        --run-id <training run id>                 # lineage (train data digest, charset, git sha) from the run
    # (training does this itself with registry.register=true)

    # 2. look
    python -m registry list
    python -m registry show ocr-det                # versions, aliases, main metric, latency, digests
    python -m registry show ocr-det @champion      # every tag of one version
    python -m registry compare ocr-det 1 2         # side by side: metrics, data digests, sizes, latency

    # 3. promote: gates compare with the champion (same eval digest, hmean/acc not worse than
    #    conf/registry/default.yaml's max_metric_drop, latency not worse than max_latency_increase_pct,
    #    measured now with both models side by side, same charset). Every gate's result is printed and
    #    audited. A refusal exits 2 with one line naming the gate and the numbers.
    python -m registry promote ocr-det 2
    python -m registry promote ocr-det 3 --force --reason "hotfix: v2 misses rotated receipts"
    python -m registry promote ocr-det 4 --as challenger   # canary; only the charset gate blocks

    # 4. undo, and see who did what
    python -m registry rollback ocr-det            # champion → previous champion (exit 2 if none); clears
                                                   # the challenger alias if it pointed at the restored version
    python -m registry history ocr-det             # every promotion / rollback / refusal, with gate results

    # 5. look at it all in the UI (runs, metrics, versions, tags, aliases, the audit tags on the model page)
    mlflow ui --backend-store-uri sqlite:///mlflow.db

    # 6. serve the champion (the pyfunc runs det → crop → rec and answers JSON per image); the server
    #    re-resolves @champion every 30 s (OCR_ALIAS_REFRESH_S) and swaps to a promoted/rolled-back version
    mlflow models serve -m models:/ocr-det@champion --env-manager local -p 5001
    curl -s localhost:5001/invocations -H 'Content-Type: application/json' \
        -d "{\"dataframe_records\": [{\"image\": \"$(base64 -w0 page.png)\"}]}"
    # canary: 10 % of requests to ocr-det@challenger, one JSON line per request for comparison
    OCR_CANARY_FRACTION=0.1 OCR_CANARY_LOG=canary.jsonl mlflow models serve -m models:/ocr-det@champion ...
    python -m registry compare ocr-det 2 4 --canary-log canary.jsonl

Run these in the activated venv (``mlflow models serve`` starts ``uvicorn`` by name). Inputs are base64
image bytes or paths readable by the server; every answer names the version that
answered (``model.version``, ``model.route``). An ``ocr-det`` version bundles a recogniser (by default the
pretrained PP-OCRv4 rec; ``det_bundle_rec`` in ``conf/registry/default.yaml``) so it serves text, not just
boxes; an ``ocr-rec`` version reads single text-line images. The audit log is stored as tags
``audit.<time>.<id>`` on the registered model; MLflow itself keeps no alias history.

Exit codes: 0 done, 1 error (one line on stderr), 2 refused (gate failed, nothing to roll back to,
promotion lock busy).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import registry  # noqa: F401  -- project start-up (zlib before paddle)

__all__ = ["main", "build_parser"]

EXIT_OK, EXIT_ERROR, EXIT_REFUSED = 0, 1, 2


# ------------------------------------------------------------------------------------------- parsing
def build_parser() -> argparse.ArgumentParser:
    def common_options(default: Any) -> argparse.ArgumentParser:
        # Accepted before and after the command. Subcommands use SUPPRESS: argparse would otherwise let a
        # subparser's default overwrite a value given before the command.
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument("--tracking-uri", default=default,
                            help="tracking/registry URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
        common.add_argument("--config", default=default, help="registry yaml (default: conf/registry/default.yaml)")
        return common

    common = common_options(argparse.SUPPRESS)
    parser = argparse.ArgumentParser(prog="python -m registry", description=__doc__.split("\n")[0],
                                     parents=[common_options(None)])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("register", parents=[common], help="log an inference dir as a new model version")
    p.add_argument("task", choices=["det", "rec"])
    p.add_argument("--model-dir", required=True, help="exported inference directory")
    p.add_argument("--name", default=None, help="registered model name (default ocr-det / ocr-rec)")
    p.add_argument("--eval-data", default=None, help="FORMAT:PATH: evaluate through export.evaluate")
    p.add_argument("--metrics", default=None, help="JSON file with metrics of record (instead of --eval-data)")
    p.add_argument("--run-id", default=None, help="source (training) MLflow run: lineage tags are read from it")
    p.add_argument("--train-digest", default=None)
    p.add_argument("--train-size", type=int, default=None)
    p.add_argument("--eval-digest", default=None)
    p.add_argument("--fp32-parent", default=None, help="for INT8 models: the FP32 version they came from")
    p.add_argument("--quantized", action=argparse.BooleanOptionalAction, default=None,
                   help="override the INT8 detection from inference.yml")
    p.add_argument("--rec-dir", default=None,
                   help="det only: recogniser to bundle: pretrained | champion | none | DIR (default from config)")
    p.add_argument("--description", default=None)

    p = sub.add_parser("list", parents=[common], help="registered models")

    p = sub.add_parser("show", parents=[common], help="a model's versions, or one version's tags")
    p.add_argument("name")
    p.add_argument("version", nargs="?", default=None, help="VERSION or @alias")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")

    p = sub.add_parser("promote", parents=[common], help="move champion (or challenger) through the gates")
    p.add_argument("name")
    p.add_argument("version")
    p.add_argument("--as", dest="target", choices=["champion", "challenger"], default="champion")
    p.add_argument("--force", action="store_true", help="override failed gates (needs --reason)")
    p.add_argument("--reason", default=None, help="why; recorded in the audit log")

    p = sub.add_parser("rollback", parents=[common], help="champion back to the previous champion")
    p.add_argument("name")
    p.add_argument("--reason", default=None)

    p = sub.add_parser("history", parents=[common], help="audit log: promotions, rollbacks, refusals")
    p.add_argument("name")
    p.add_argument("--json", action="store_true", help="one JSON object per line")

    p = sub.add_parser("compare", parents=[common], help="two versions side by side")
    p.add_argument("name")
    p.add_argument("v1", help="VERSION or @alias")
    p.add_argument("v2", help="VERSION or @alias")
    p.add_argument("--canary-log", default=None, help="canary JSON-lines log to add online numbers from")
    return parser


# ------------------------------------------------------------------------------------------- output helpers
def _console():
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200, soft_wrap=False)


def _short(value: Any, n: int = 12) -> str:
    text = "" if value is None else str(value)
    return text[:n] if len(text) > n else text


def _num(value: float | None, digits: int = 4) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _versions_table(name: str, infos: list, aliases: dict[str, str]):
    from rich.table import Table

    by_version: dict[str, list[str]] = {}
    for alias, version in aliases.items():
        by_version.setdefault(version, []).append(alias)
    table = Table(title=f"{name}: {len(infos)} version(s)")
    for col in ("version", "aliases", "task", "main metric", "latency ms", "eval digest", "train digest",
                "charset", "quantized", "run"):
        table.add_column(col)
    for info in infos:
        main = info.main_metric_name or "?"
        table.add_row(info.version, ", ".join(sorted(by_version.get(info.version, []))), info.task or "",
                      f"{main}={_num(info.main_metric)}", _num(info.latency_ms, 1), _short(info.eval_digest),
                      _short(info.tags.get("data.train.digest")), _short(info.charset_sha256),
                      "yes" if info.quantized else "no", _short(info.run_id, 8))
    return table


# ------------------------------------------------------------------------------------------- commands
def _cmd_register(args, cfg, client) -> int:
    from registry.register import register_model

    metrics = None
    if args.metrics:
        path = Path(args.metrics)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: metrics file not found")
        metrics = json.loads(path.read_text(encoding="utf-8"))
    result = register_model(
        args.task, args.model_dir, name=args.name, metrics=metrics, eval_data=args.eval_data,
        source_run_id=args.run_id, train_digest=args.train_digest, train_size=args.train_size,
        eval_digest=args.eval_digest, fp32_parent_version=args.fp32_parent, quantized=args.quantized,
        rec_dir=args.rec_dir, description=args.description, cfg=cfg, client=client)
    print(f"registered {result.name} v{result.version} ({result.model_uri}) from run {result.run_id}")
    print(json.dumps({"name": result.name, "version": result.version, "model_uri": result.model_uri,
                      "run_id": result.run_id}))
    return EXIT_OK


def _cmd_list(args, cfg, client) -> int:
    from rich.table import Table

    from registry.lock import LOCK_SUFFIX

    models = [m for m in client.call("search_registered_models", max_results=1000)
              if LOCK_SUFFIX not in m.name]
    table = Table(title=f"registered models in {client.tracking_uri}")
    for col in ("name", "versions", "latest", "aliases", "description"):
        table.add_column(col)
    for model in sorted(models, key=lambda m: m.name):
        versions = client.versions(model.name)
        aliases = client.aliases(model.name)
        table.add_row(model.name, str(len(versions)), str(versions[0].version) if versions else "",
                      ", ".join(f"{a}=v{v}" for a, v in sorted(aliases.items())), model.description or "")
    _console().print(table)
    return EXIT_OK


def _cmd_show(args, cfg, client) -> int:
    from rich.table import Table

    from registry.client import RegistryError
    from registry.lineage import VersionInfo

    if client.registered_model(args.name) is None:
        raise RegistryError(f"registered model {args.name!r} not found in {client.tracking_uri}")
    if args.version is None:
        infos = [VersionInfo.from_model_version(mv) for mv in client.versions(args.name)]
        aliases = client.aliases(args.name)
        if args.json:
            print(json.dumps({"name": args.name, "aliases": aliases,
                              "versions": [{"version": i.version, "tags": dict(i.tags)} for i in infos]}))
            return EXIT_OK
        _console().print(_versions_table(args.name, infos, aliases))
        return EXIT_OK
    info = VersionInfo.from_model_version(client.resolve_version(args.name, args.version))
    data = {"name": info.name, "version": info.version, "aliases": list(info.aliases), "run_id": info.run_id,
            "source": info.source, "status": info.status, "tags": dict(sorted(info.tags.items()))}
    if args.json:
        print(json.dumps(data))
        return EXIT_OK
    table = Table(title=f"{info.label}" + (f" ({', '.join(info.aliases)})" if info.aliases else ""))
    table.add_column("key")
    table.add_column("value", overflow="fold")
    for key in ("run_id", "source", "status"):
        table.add_row(key, str(data[key]))
    for key, value in data["tags"].items():
        table.add_row(key, value)
    _console().print(table)
    return EXIT_OK


def _cmd_promote(args, cfg, client) -> int:
    from registry.promote import promote

    event = promote(client, args.name, args.version, cfg=cfg, target=args.target, force=args.force,
                    reason=args.reason)
    alias = event.alias
    if event.outcome == "noop":
        print(f"{args.name} v{args.version} is already {alias}; nothing to do")
    else:
        was = f"was v{event.from_version}" if event.from_version else "first"
        forced = f" (FORCED: {args.reason})" if event.forced else ""
        print(f"{args.name} v{args.version} is now {alias} ({was}){forced}; {event.message}")
        for result in (event.gates or {}).get("results", []):
            verdict = "passed" if result["passed"] else ("FAILED" if result["enforced"] else "failed (not blocking)")
            print(f"  gate {result['name']}: {verdict}: {result['message']}")
    print(json.dumps({"name": args.name, "version": str(args.version), "alias": alias, "outcome": event.outcome,
                      "from_version": event.from_version, "forced": event.forced,
                      "gates": {r["name"]: r["passed"] for r in (event.gates or {}).get("results", [])}}))
    return EXIT_OK


def _cmd_rollback(args, cfg, client) -> int:
    from registry.promote import rollback

    event = rollback(client, args.name, cfg=cfg, reason=args.reason)
    print(f"{args.name}: rolled back {event.message}")
    print(json.dumps({"name": args.name, "alias": event.alias, "outcome": event.outcome,
                      "from_version": event.from_version, "to_version": event.to_version}))
    return EXIT_OK


def _cmd_history(args, cfg, client) -> int:
    from rich.table import Table

    from registry.audit import AuditLog
    from registry.client import RegistryError

    if client.registered_model(args.name) is None:
        raise RegistryError(f"registered model {args.name!r} not found in {client.tracking_uri}")
    events = AuditLog(client, args.name).events()
    if args.json:
        for event in events:
            print(json.dumps(event.to_dict(), ensure_ascii=False))
        return EXIT_OK
    table = Table(title=f"{args.name}: {len(events)} audit event(s)")
    for col in ("#", "when (UTC)", "who", "action", "outcome", "alias", "from", "to", "forced", "reason", "detail"):
        table.add_column(col, overflow="fold")
    for e in events:
        table.add_row(str(e.seq), e.when.replace("+00:00", ""), e.who, e.action, e.outcome, e.alias,
                      f"v{e.from_version}" if e.from_version else "-", f"v{e.to_version}" if e.to_version else "-",
                      "yes" if e.forced else "", e.reason or "", e.message)
    _console().print(table)
    return EXIT_OK


def _cmd_compare(args, cfg, client) -> int:
    from rich.table import Table

    from registry.lineage import VersionInfo

    a = VersionInfo.from_model_version(client.resolve_version(args.name, args.v1))
    b = VersionInfo.from_model_version(client.resolve_version(args.name, args.v2))
    table = Table(title=f"{args.name}: v{a.version} vs v{b.version}")
    table.add_column("")
    table.add_column(f"v{a.version}", overflow="fold")
    table.add_column(f"v{b.version}", overflow="fold")
    table.add_column("Δ (b - a)")

    def row(label: str, x: Any, y: Any, numeric: bool = False) -> None:
        delta = ""
        if numeric and x is not None and y is not None:
            diff = float(y) - float(x)
            pct = f" ({diff / float(x) * 100:+.1f}%)" if float(x) else ""
            delta = f"{diff:+.4g}{pct}"
        elif x != y:
            delta = "differs"
        table.add_row(label, _cell(x), _cell(y), delta)

    row("aliases", ", ".join(a.aliases), ", ".join(b.aliases))
    row("task", a.task, b.task)
    row("model family", a.tags.get("model.arch"), b.tags.get("model.arch"))
    for key in sorted(set(a.metrics) | set(b.metrics)):
        row(f"metric {key}", a.metrics.get(key), b.metrics.get(key), numeric=True)
    for tag, label in (("data.eval.digest", "eval data digest"), ("data.eval.size", "eval data size"),
                       ("data.train.digest", "train data digest"), ("data.train.size", "train data size"),
                       ("charset.sha256", "charset sha256"), ("model_bytes", "model size (bytes)"),
                       ("quantized", "quantized"), ("fp32_parent_version", "fp32 parent"),
                       ("rec_bundle", "bundled rec"), ("git.sha", "git sha"), ("source_run_id", "source run")):
        numeric = tag in ("model_bytes", "data.eval.size", "data.train.size")
        x, y = a.tags.get(tag), b.tags.get(tag)
        if tag.endswith(("digest", "sha256", "sha")):
            x, y = _short(x, 16) or None, _short(y, 16) or None
        row(label, x, y, numeric=numeric and x is not None and y is not None)
    for key in sorted(set(a.postprocess) | set(b.postprocess)):
        row(f"postprocess {key}", a.postprocess.get(key), b.postprocess.get(key))
    for key in sorted(set(a.libraries) | set(b.libraries)):
        if a.libraries.get(key) != b.libraries.get(key):
            row(f"lib {key}", a.libraries.get(key), b.libraries.get(key))
    if args.canary_log:
        from registry.canary import summarize

        online = summarize(args.canary_log)
        sa, sb = online.get(a.version, {}), online.get(b.version, {})
        for key in ("requests", "images", "errors", "latency_ms_median", "boxes_mean", "score_mean"):
            row(f"canary {key}", sa.get(key), sb.get(key), numeric=True)
    _console().print(table)
    return EXIT_OK


def _quiet_mlflow() -> None:
    """MLflow logs INFO lines (table creation, example validation) and progress bars on stderr; a command's
    stderr is kept for its one-line error or refusal."""
    import logging
    import os

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow  # noqa: F401  -- configures its loggers on import; lower them afterwards

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


_COMMANDS = {"register": _cmd_register, "list": _cmd_list, "show": _cmd_show, "promote": _cmd_promote,
             "rollback": _cmd_rollback, "history": _cmd_history, "compare": _cmd_compare}


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the exit code (0 ok, 1 error, 2 refused)."""
    args = build_parser().parse_args(argv)
    _quiet_mlflow()
    from registry.client import RegistryError, client_from_config
    from registry.config import load_config
    from registry.lock import LockLost
    from registry.promote import PromotionRefused

    try:
        cfg = load_config(args.config)
        client = client_from_config(cfg, args.tracking_uri)
        client.probe()  # a dead server is one line within the deadline, not MLflow's retry loop
        return _COMMANDS[args.command](args, cfg, client)
    except PromotionRefused as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_REFUSED
    except (RegistryError, LockLost, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - MlflowException & co: one line, not a traceback
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"error: {type(exc).__name__}: {first}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
