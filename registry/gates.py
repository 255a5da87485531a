"""Promotion gates: is a candidate version fit to replace the champion? Results are data, not exceptions.

Why data: the same results are printed by the CLI (one line for the first failure), stored in the audit log
with every promotion/refusal (so a forced promotion records exactly what it overrode), and asserted in tests.
Each gate compares lineage tags (:mod:`registry.lineage`) of the candidate with the champion's:

* ``task``               — same task (a det model never replaces a rec champion).
* ``eval_digest``        — metrics were measured on the same eval data; otherwise they are not comparable.
* ``main_metric``        — hmean (det) / acc (rec) not worse than the champion's by more than ``max_metric_drop``.
* ``latency``            — median latency not more than ``max_latency_increase_pct`` % above the champion's,
                           judged on both models timed side by side at promotion time
                           (:mod:`registry.latency`); the tags recorded at registration only when that
                           measurement is impossible (the message says which figures were used).
* ``charset_compatible`` — same charset sha256 (class ids mean the same characters).

With no champion yet, every gate passes ("first promotion"). A gate that is evaluated but not blocking (a
challenger's metric or latency) keeps its true result: the summary and the audit say "failed, not blocking",
never "all gates passed".
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from registry.config import GateConfig
from registry.latency import LatencyComparison
from registry.lineage import VersionInfo

__all__ = ["GateResult", "GateReport", "evaluate_gates", "GATE_NAMES"]

GATE_NAMES = ("task", "eval_digest", "main_metric", "latency", "charset_compatible")


@dataclass(frozen=True)
class GateResult:
    """One gate's verdict with the numbers it compared."""

    name: str
    passed: bool
    message: str
    candidate: Any = None
    champion: Any = None
    threshold: Any = None
    enforced: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GateReport:
    """All gate results for one candidate against one champion."""

    candidate: str
    champion: str | None
    results: tuple[GateResult, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        """True when no *enforced* gate failed."""
        return all(r.passed or not r.enforced for r in self.results)

    @property
    def failures(self) -> list[GateResult]:
        """Failed gates that block."""
        return [r for r in self.results if not r.passed and r.enforced]

    @property
    def waived(self) -> list[GateResult]:
        """Failed gates that do not block (e.g. a challenger's metric): recorded, never hidden."""
        return [r for r in self.results if not r.passed and not r.enforced]

    @property
    def all_passed(self) -> bool:
        return all(r.passed for r in self.results)

    def summary(self) -> str:
        """One line: ``all gates passed``, or the blocking failures (``gate main_metric failed: …``), or
        ``blocking gates passed; not blocking: gate main_metric failed: …`` for waived failures."""
        if not self.champion:
            return "no champion yet: gates pass"
        if self.failures:
            return "; ".join(f"gate {r.name} failed: {r.message}" for r in self.failures)
        if self.waived:
            blocking = ", ".join(r.name for r in self.results if r.enforced) or "none"
            return (f"blocking gates passed ({blocking}); not blocking: "
                    + "; ".join(f"gate {r.name} failed: {r.message}" for r in self.waived))
        return "all gates passed"

    def lines(self) -> list[str]:
        """One line per gate for the console: result, blocking or not, and the numbers compared."""
        out = []
        for r in self.results:
            verdict = "passed" if r.passed else ("FAILED" if r.enforced else "failed (not blocking)")
            out.append(f"gate {r.name}: {verdict}: {r.message}")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.candidate, "champion": self.champion, "passed": self.passed,
                "all_passed": self.all_passed, "waived": [r.name for r in self.waived],
                "results": [r.to_dict() for r in self.results]}


def _fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _task_gate(cand: VersionInfo, champ: VersionInfo) -> GateResult:
    ok = bool(cand.task) and cand.task == champ.task
    return GateResult("task", ok, f"candidate task {cand.task!r} vs champion {champ.task!r}", cand.task, champ.task)


def _eval_digest_gate(cand: VersionInfo, champ: VersionInfo, cfg: GateConfig) -> GateResult:
    a, b = cand.eval_digest, champ.eval_digest
    if not cfg.require_same_eval_digest:
        return GateResult("eval_digest", True, "not required by config", a, b)
    if not a or not b:
        who = "candidate" if not a else "champion"
        return GateResult("eval_digest", False, f"{who} has no eval data digest tag", a, b)
    ok = a == b
    msg = (f"same eval data {a[:12]}" if ok else
           f"evaluated on different data: candidate {a[:12]} vs champion {b[:12]} v{champ.version}")
    return GateResult("eval_digest", ok, msg, a, b)


def _main_metric_gate(cand: VersionInfo, champ: VersionInfo, cfg: GateConfig) -> GateResult:
    metric = cfg.main_metric.get(cand.task or "", cand.main_metric_name or "")
    a, b = cand.metric(metric), champ.metric(metric)
    threshold = cfg.max_metric_drop
    if a is None or b is None:
        who = "candidate" if a is None else "champion"
        return GateResult("main_metric", False, f"{who} has no metric.{metric} tag", a, b, threshold)
    ok = a >= b - threshold
    rel = ">=" if ok else "<"
    msg = f"{metric} {_fmt(a)} {rel} champion v{champ.version} {_fmt(b)} - {threshold:g} (allowed drop)"
    return GateResult("main_metric", ok, msg, a, b, threshold)


def _recorded_note(cand: VersionInfo, champ: VersionInfo) -> str:
    a, b = cand.latency_ms, champ.latency_ms
    return f"recorded at registration: {_fmt(a, 1)} vs {_fmt(b, 1)} ms"


def _measured_latency_gate(cand: VersionInfo, champ: VersionInfo, cfg: GateConfig,
                           measured: LatencyComparison) -> GateResult:
    pct = cfg.max_latency_increase_pct
    a, b, ratio = measured.candidate_ms, measured.champion_ms, measured.ratio
    ok = ratio is not None and ratio <= 1.0 + pct / 100.0
    change = (ratio - 1.0) * 100.0 if ratio is not None else float("inf")
    msg = (f"latency measured side by side now ({measured.rounds} interleaved rounds, {measured.workload}): "
           f"candidate v{cand.version} {a:.1f} ms vs champion v{champ.version} {b:.1f} ms (medians); paired "
           f"ratio {change:+.1f}% (limit +{pct:g}%); {_recorded_note(cand, champ)}")
    return GateResult("latency", ok, msg, a, b, pct)


def _latency_gate(cand: VersionInfo, champ: VersionInfo, cfg: GateConfig,
                  measured: LatencyComparison | None = None) -> GateResult:
    if measured is not None and measured.measured:
        return _measured_latency_gate(cand, champ, cfg, measured)
    a, b = cand.latency_ms, champ.latency_ms
    pct = cfg.max_latency_increase_pct
    if measured is not None:  # side by side was asked for but impossible: say so next to the fallback
        note = f" (side-by-side measurement unavailable: {measured.error}; using the figures recorded at registration)"
    else:
        note = " (recorded at registration)"
    if a is None or b is None:
        who = "candidate" if a is None else "champion"
        return GateResult("latency", False, f"{who} has no metric.latency_ms tag", a, b, pct)
    limit = b * (1.0 + pct / 100.0)
    ok = a <= limit
    change = (a / b - 1.0) * 100.0 if b > 0 else float("inf")
    msg = (f"latency {a:.1f} ms vs champion v{champ.version} {b:.1f} ms ({change:+.1f}%, "
           f"limit +{pct:g}% = {limit:.1f} ms){note}")
    return GateResult("latency", ok, msg, a, b, pct)


def _charset_gate(cand: VersionInfo, champ: VersionInfo, cfg: GateConfig) -> GateResult:
    a, b = cand.charset_sha256, champ.charset_sha256
    if not cfg.require_charset_compatible:
        return GateResult("charset_compatible", True, "not required by config", a, b)
    if cand.task == "det" and (not a or not b):
        return GateResult("charset_compatible", True, "det model without a bundled recogniser charset", a, b)
    if not a or not b:
        who = "candidate" if not a else "champion"
        return GateResult("charset_compatible", False, f"{who} has no charset.sha256 tag", a, b)
    ok = a == b
    msg = "same charset" if ok else f"charset {a[:12]} differs from champion v{champ.version} {b[:12]}"
    return GateResult("charset_compatible", ok, msg, a, b)


def evaluate_gates(candidate: VersionInfo, champion: VersionInfo | None, cfg: GateConfig | None = None,
                   *, enforced: Iterable[str] | None = None,
                   latency: LatencyComparison | None = None) -> GateReport:
    """Run every gate for ``candidate`` against ``champion`` (``None`` → first promotion, all pass).

    ``enforced`` limits which gates block (e.g. ``cfg.challenger_enforced`` for a canary); the others are
    still evaluated and reported with ``enforced=False``. The ``task`` gate is always enforced.
    ``latency`` is the side-by-side measurement of both models (:func:`registry.latency.measure_side_by_side`);
    without it the latency gate compares the recorded tags."""
    cfg = cfg or GateConfig()
    if champion is None:
        results = tuple(GateResult(name, True, "no champion yet") for name in GATE_NAMES)
        return GateReport(candidate.version, None, results)
    raw = [
        _task_gate(candidate, champion),
        _eval_digest_gate(candidate, champion, cfg),
        _main_metric_gate(candidate, champion, cfg),
        _latency_gate(candidate, champion, cfg, latency),
        _charset_gate(candidate, champion, cfg),
    ]
    blocking = set(GATE_NAMES if enforced is None else enforced) | {"task"}
    results = tuple(
        GateResult(r.name, r.passed, r.message, r.candidate, r.champion, r.threshold, r.name in blocking)
        for r in raw
    )
    return GateReport(candidate.version, champion.version, results)
