"""The human-readable description of a model version, as ``mlflow ui`` shows it on the version page.

Why: the lineage lives in version tags and the audit in registered-model tags ``audit.<ns>.<id>`` holding
JSON — complete, but unreadable in the UI. A person opening a version wants to know in one glance what it
is (model family, INT8 or not, what it serves), what it was trained and evaluated on, its metric of record
next to the champion's at that moment, where it came from (the FP32 parent as a link, the training run as a
link), and what happened to it since (promotions, refusals, rollbacks). The description is Markdown, which
the UI renders; links are the UI's own routes (``#/models/NAME/versions/N``).

The audit tags stay the record (append-only, concurrency-safe); the history section here is a readable
copy appended under the promotion lock, trimmed from the oldest entry when MLflow's 5000-character limit
comes near (``python -m registry history`` has everything).

Usage::

    text = registration_description("ocr-det", tags, champion=champion_info, model_family="PP-OCRv4_mobile_det")
    append_history(client, "ocr-det", "3", "promoted to champion (was v2): all gates passed")
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any, Mapping

from registry import lineage as L
from registry.lineage import VersionInfo

__all__ = ["HISTORY_HEADING", "registration_description", "describe_new_version", "append_history", "history_line",
           "version_link"]

_log = logging.getLogger(__name__)

HISTORY_HEADING = "#### History"
_MAX_CHARS = 4800  # MLflow's SQL stores keep at most 5000 characters of a version description
_TASK_WORDS = {"det": "text detector (DB)", "rec": "text-line recogniser (SVTR + CTC)"}


def version_link(name: str, version: str | int) -> str:
    """Markdown link to a version page of the MLflow UI (relative: works behind any host/prefix)."""
    return f"[{name} v{version}](#/models/{name}/versions/{version})"


def _run_link(run_id: str | None, experiment_id: str | None) -> str:
    if not run_id:
        return "unknown"
    if experiment_id:
        return f"[run {run_id[:8]}](#/experiments/{experiment_id}/runs/{run_id})"
    return f"run `{run_id}`"


def _num(value: Any, digits: int = 4) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return "n/a"


def _short(value: Any, n: int = 12) -> str:
    return f"`{str(value)[:n]}`" if value else "n/a"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def history_line(text: str, who: str | None = None, when: str | None = None) -> str:
    """``- 2026-12-01 07:40 UTC — text (by who)`` — one bullet of the history section."""
    by = f" (by {who})" if who else ""
    return f"- {when or _now()} — {text}{by}"


def registration_description(name: str, tags: Mapping[str, str], *, champion: VersionInfo | None,
                             model_family: str | None = None, experiment_id: str | None = None,
                             user_text: str | None = None, who: str | None = None) -> str:
    """What a new version is, in Markdown, from the lineage tags it is being created with."""
    task = tags.get(L.TAG_TASK, "")
    quantized = str(tags.get(L.TAG_QUANTIZED, "no")).lower() in ("yes", "true", "1")
    family = model_family or "architecture not recorded"
    precision = "INT8 (QAT, oneDNN)" if quantized else "FP32"
    main = L.MAIN_METRIC.get(task, "")
    metrics = {k[len(L.METRIC_PREFIX):]: v for k, v in tags.items() if k.startswith(L.METRIC_PREFIX)}
    others = ", ".join(f"{k} {_num(v)}" for k, v in sorted(metrics.items())
                       if k not in (main, L.LATENCY_METRIC) and not k.startswith("latency"))
    serves = ""
    if task == "det":
        bundle = tags.get(L.TAG_REC_BUNDLE)
        serves = f"; serves det → crop → rec with {bundle}" if bundle else "; serves boxes only (no recogniser bundled)"
    lines = [f"**{name}: {precision} {family}**, {_TASK_WORDS.get(task, task or 'model')}{serves}.", ""]
    if user_text:
        lines += [user_text.strip(), ""]
    lines += ["| | |", "|---|---|"]
    metric_cell = f"{main} **{_num(metrics.get(main))}**" + (f" ({others})" if others else "")
    lines.append(f"| metric of record | {metric_cell} on `{tags.get(L.TAG_EVAL_SPEC) or 'given metrics'}` "
                 f"({tags.get(L.TAG_EVAL_SIZE) or '?'} samples, digest {_short(tags.get(L.TAG_EVAL_DIGEST))}), "
                 "measured through the serving code |")
    if champion is not None:
        theirs = champion.metric(main) if main else None
        ours = metrics.get(main)
        delta = ""
        if theirs is not None and ours is not None:
            try:
                delta = f" ({float(ours) - theirs:+.4f})"
            except (TypeError, ValueError):
                delta = ""
        same = "same eval data" if champion.eval_digest and champion.eval_digest == tags.get(L.TAG_EVAL_DIGEST) \
            else "**different eval data**: not comparable"
        lines.append(f"| vs champion at registration | {version_link(name, champion.version)}: {main} "
                     f"{_num(theirs)}{delta}, {same} |")
    else:
        lines.append("| vs champion at registration | no champion yet |")
    if metrics.get(L.LATENCY_METRIC) is not None:
        lines.append(f"| latency of record | {_num(metrics[L.LATENCY_METRIC], 1)} ms/image (median, recorded at "
                     "registration; promotion re-measures side by side) |")
    lines.append(f"| training data | digest {_short(tags.get(L.TAG_TRAIN_DIGEST))}, "
                 f"{tags.get(L.TAG_TRAIN_SIZE) or '?'} samples |")
    if tags.get(L.TAG_CHARSET):
        lines.append(f"| charset | sha256 {_short(tags.get(L.TAG_CHARSET))} |")
    parent = tags.get(L.TAG_FP32_PARENT)
    if parent:
        lines.append(f"| FP32 parent | {version_link(name, parent)} |")
    elif quantized:
        lines.append("| FP32 parent | not recorded |")
    lines.append(f"| source run | {_run_link(tags.get(L.TAG_SOURCE_RUN), experiment_id)} |")
    lines.append(f"| code | git {_short(tags.get(L.TAG_GIT_SHA), 12)}, paddle {tags.get(L.LIB_PREFIX + 'paddlepaddle', '?')} |")
    lines += ["", HISTORY_HEADING, history_line("registered", who)]
    return "\n".join(lines)


def _trim(text: str) -> str:
    """Drop the oldest history bullets until the description fits MLflow's limit."""
    if len(text) <= _MAX_CHARS or HISTORY_HEADING not in text:
        return text[:_MAX_CHARS]
    head, history = text.split(HISTORY_HEADING, 1)
    bullets = [b for b in history.strip("\n").split("\n") if b.startswith("- ")]
    note = "- (older entries dropped here; `python -m registry history` has them all)"
    while bullets and len(head) + len(HISTORY_HEADING) + len(note) + sum(len(b) + 1 for b in bullets) + 4 > _MAX_CHARS:
        bullets.pop(0)
    return "\n".join([head.rstrip("\n"), "", HISTORY_HEADING, note, *bullets])


def append_history(client: Any, name: str, version: str | int, text: str, who: str | None = None) -> None:
    """Append one history bullet to a version's description. Best effort: the audit tags are the record,
    so a failure here is logged, never raised (a promotion that happened must not report failure)."""
    try:
        mv = client.call("get_model_version", name, str(version))
        current = (getattr(mv, "description", None) or "").rstrip("\n")
        if HISTORY_HEADING not in current:
            current = (current + "\n\n" if current else "") + HISTORY_HEADING
        updated = _trim(current + "\n" + history_line(text, who))
        client.call("update_model_version", name, str(version), description=updated)
    except Exception as exc:  # noqa: BLE001
        _log.warning("could not append to the description of %s v%s: %s", name, version, exc)


def describe_new_version(client: Any, name: str, task: str, model_dir: Any, tags: Mapping[str, str], *,
                         champion_alias: str = "champion", user_text: str | None = None) -> str:
    """:func:`registration_description` with what it needs looked up: the champion at this moment, the model
    family from the export's ``inference.yml`` and the source run's experiment (for the link). Lookups that
    fail leave their line less specific; they never fail a registration."""
    from registry.audit import current_user

    champion = None
    try:
        mv = client.version_by_alias(name, champion_alias)
        champion = VersionInfo.from_model_version(mv) if mv is not None else None
    except Exception as exc:  # noqa: BLE001
        _log.warning("champion of %s not readable for the description: %s", name, exc)
    family = None
    try:
        from export.inference_yml import read_inference_yml

        family = read_inference_yml(model_dir, task).model_name or None
    except Exception:  # noqa: BLE001 - a directory without Global.model_name
        family = None
    experiment_id = None
    run_id = tags.get(L.TAG_SOURCE_RUN)
    if run_id:
        try:
            experiment_id = client.call("get_run", run_id).info.experiment_id
        except Exception:  # noqa: BLE001
            experiment_id = None
    return registration_description(name, tags, champion=champion, model_family=family,
                                    experiment_id=experiment_id, user_text=user_text, who=current_user())
