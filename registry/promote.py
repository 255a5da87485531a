"""Moving aliases: gated promotion to ``champion`` (or ``challenger``), and rollback. Aliases only, never stages.

Why it is built this way:
* **Previous champion stays reachable.** Promotion points ``previous-champion`` at the version it replaces,
  and every move is in the audit log (:mod:`registry.audit`), so ``rollback`` has a target and a history.
  Rollback walks *back* through history (the new ``previous-champion`` is whatever the restored version
  replaced when it was promoted), so two rollbacks in a row go two steps back instead of toggling.
* **Races.** The read-gates-write sequence runs under :class:`registry.lock.PromotionLock` (an atomic
  create in the store), and after writing we re-read the alias and compare: if something outside the lock
  (a hand edit in ``mlflow ui``) moved it, the attempt is recorded as ``conflict`` and reported. Two
  promotions racing for one model therefore serialise: the second sees the first's champion, runs its gates
  against it, and both attempts are in the audit with a consistent from → to chain.
* **Refusals are data.** A refused promotion raises :class:`PromotionRefused` carrying the gate report and
  the recorded audit event; the CLI turns it into exit code 2 and one line.
* **Latency is measured now, not remembered.** With ``gates.latency_mode: side_by_side`` the candidate and
  the champion are timed in this process, interleaved (:mod:`registry.latency`), before the lock is taken
  (downloads and timing take seconds; the lock should not); if the champion moved meanwhile, the
  measurement is repeated under the lock against the new one.
* **One role per version.** A version is never both ``champion`` and ``challenger``: promoting the
  challenger to champion removes the ``challenger`` alias (the canary graduated), promoting the champion as
  challenger is refused, and a rollback that restores the challenger's version to champion removes the
  ``challenger`` alias (it would be a canary of itself); the audit message says so.

Usage::

    event = promote(client, "ocr-det", "3", cfg=load_config())                 # gates must pass
    event = promote(client, "ocr-det", "4", cfg=cfg, force=True, reason="hotfix for #12")
    event = promote(client, "ocr-det", "5", cfg=cfg, target="challenger")       # canary
    event = rollback(client, "ocr-det", cfg=cfg)
"""
from __future__ import annotations

from registry.audit import AuditEvent, AuditLog
from registry.client import RegistryClient, RegistryError
from registry.config import RegistryConfig
from registry.description import append_history
from registry.gates import GateReport, evaluate_gates
from registry.latency import LatencyComparison, measure_side_by_side
from registry.lineage import VersionInfo
from registry.lock import LockTimeout, PromotionLock

__all__ = ["PromotionRefused", "promote", "rollback"]


class PromotionRefused(RuntimeError):
    """A promotion or rollback was refused (gates, nothing to roll back to, lock busy). Exit code 2."""

    def __init__(self, message: str, event: AuditEvent | None = None, report: GateReport | None = None) -> None:
        super().__init__(message)
        self.event = event
        self.report = report


def _info(client: RegistryClient, name: str, version: str | None) -> VersionInfo | None:
    if version is None:
        return None
    try:
        return VersionInfo.from_model_version(client.version(name, version))
    except RegistryError:
        return None  # alias pointing at a deleted version: treat as absent


def _measure_latency(client: RegistryClient, name: str, candidate: VersionInfo, champion_v: str | None,
                     cfg: RegistryConfig) -> LatencyComparison | None:
    """Side-by-side latency of candidate vs champion, or ``None`` when there is nothing to compare with
    (first promotion, same version, other task) or the config asks for the recorded figures."""
    if cfg.gates.latency_mode != "side_by_side" or champion_v is None or champion_v == candidate.version:
        return None
    champion = _info(client, name, champion_v)
    if champion is None or candidate.task not in ("det", "rec") or champion.task != candidate.task:
        return None
    return measure_side_by_side(client, name, candidate.version, champion_v, task=candidate.task,
                                rounds=cfg.gates.latency_rounds)


def _history(client: RegistryClient, name: str, version: str | None, text: str, event: AuditEvent) -> None:
    """Append the event to the version's readable description (``mlflow ui``); the audit tag is the record."""
    if version is None:
        return
    why = f" — reason: {event.reason}" if event.reason else ""
    text = text if len(text) <= 400 else text[:397] + "..."
    append_history(client, name, version, f"{text}{why}", who=event.who)


def _record_lock_timeout(log: AuditLog, action: str, alias: str, version: str | None, exc: LockTimeout,
                         reason: str | None) -> PromotionRefused:
    event = log.record(AuditEvent(action=action, outcome="refused", alias=alias, to_version=version,
                                  reason=reason, message=str(exc)))
    return PromotionRefused(f"refused: {exc}", event)


def promote(client: RegistryClient, name: str, version: str | int, *, cfg: RegistryConfig | None = None,
            target: str = "champion", force: bool = False, reason: str | None = None) -> AuditEvent:
    """Point alias ``target`` (``champion`` or ``challenger``) at ``version`` if the gates allow it.

    Returns the recorded audit event (outcome ``done`` or ``noop``); raises :class:`PromotionRefused` when
    gates fail without ``force``, :class:`RegistryError` on bad input or a detected conflicting write."""
    cfg = cfg or RegistryConfig()
    version = str(version)
    if target not in ("champion", "challenger"):
        raise RegistryError(f"promotion target must be champion or challenger, got {target!r}")
    if force and not (reason and reason.strip()):
        raise RegistryError("--force needs --reason TEXT: the override is recorded in the audit log")
    alias = cfg.champion if target == "champion" else cfg.challenger
    candidate = VersionInfo.from_model_version(client.version(name, version))
    if candidate.status and candidate.status.upper() not in ("READY", "MODELVERSIONSTATUS.READY"):
        raise RegistryError(f"{candidate.label} is {candidate.status}, not READY")
    log = AuditLog(client, name)
    before = client.aliases(name)
    latency = None
    if before.get(alias) != version and before.get(cfg.champion) != version:
        latency = _measure_latency(client, name, candidate, before.get(cfg.champion), cfg)
    lock = PromotionLock(client, name, timeout_s=cfg.lock.timeout_s, lease_s=cfg.lock.lease_s)
    try:
        lock.acquire()
    except LockTimeout as exc:
        raise _record_lock_timeout(log, "promote", alias, version, exc, reason) from None
    try:
        aliases = client.aliases(name)
        champion_v = aliases.get(cfg.champion)
        current_v = aliases.get(alias)
        if champion_v != before.get(cfg.champion) and champion_v != version:  # moved while we measured
            latency = _measure_latency(client, name, candidate, champion_v, cfg)
        if current_v == version:
            return log.record(AuditEvent(action="promote", outcome="noop", alias=alias, from_version=current_v,
                                         to_version=version, reason=reason,
                                         message=f"{candidate.label} is already {alias}"))
        if target == "challenger" and champion_v == version:
            event = log.record(AuditEvent(action="promote", outcome="refused", alias=alias, from_version=current_v,
                                          to_version=version, reason=reason,
                                          message=f"{candidate.label} is the champion; it cannot be the challenger"))
            raise PromotionRefused(f"refused: {event.message}", event)
        champion = _info(client, name, champion_v)
        enforced = None if target == "champion" else cfg.gates.challenger_enforced
        report = evaluate_gates(candidate, champion, cfg.gates, enforced=enforced, latency=latency)
        if not report.passed and not force:
            event = log.record(AuditEvent(action="promote", outcome="refused", alias=alias, from_version=current_v,
                                          to_version=version, gates=report.to_dict(), reason=reason,
                                          message=report.summary()))
            _history(client, name, version, f"promotion to **{alias}** refused: {report.summary()}", event)
            raise PromotionRefused(f"refused: {candidate.label} → {alias}: {report.summary()}", event, report)

        lock.verify()
        if target == "champion":
            if current_v is not None:
                client.set_alias(name, cfg.previous, current_v)
            client.set_alias(name, alias, version)
            if aliases.get(cfg.challenger) == version:
                client.delete_alias(name, cfg.challenger)  # the canary graduated
        else:
            client.set_alias(name, alias, version)

        after = client.aliases(name).get(alias)  # optimistic check: did anyone write around the lock?
        if after != version:
            event = log.record(AuditEvent(action="promote", outcome="conflict", alias=alias, from_version=current_v,
                                          to_version=version, gates=report.to_dict(), forced=force, reason=reason,
                                          message=f"{alias} is v{after} after writing v{version}: concurrent "
                                                  "write outside the promotion lock"))
            raise RegistryError(f"{name}: {event.message}")
        message = report.summary() if not force else f"forced over: {report.summary()}"
        event = log.record(AuditEvent(action="promote", outcome="done", alias=alias, from_version=current_v,
                                      to_version=version, gates=report.to_dict(), forced=force, reason=reason,
                                      message=message))
        was = f" (was v{current_v})" if current_v else " (first)"
        _history(client, name, version, f"promoted to **{alias}**{was}{' FORCED' if force else ''}: {message}", event)
        if current_v is not None and current_v != version:
            _history(client, name, current_v, f"replaced as **{alias}** by v{version}", event)
        return event
    finally:
        lock.release()


def rollback(client: RegistryClient, name: str, *, cfg: RegistryConfig | None = None,
             reason: str | None = None) -> AuditEvent:
    """Point ``champion`` back at ``previous-champion``; refuse (``PromotionRefused``) when there is none."""
    cfg = cfg or RegistryConfig()
    if client.registered_model(name) is None:
        raise RegistryError(f"registered model {name!r} not found in {client.tracking_uri}")
    log = AuditLog(client, name)
    lock = PromotionLock(client, name, timeout_s=cfg.lock.timeout_s, lease_s=cfg.lock.lease_s)
    try:
        lock.acquire()
    except LockTimeout as exc:
        raise _record_lock_timeout(log, "rollback", cfg.champion, None, exc, reason) from None
    try:
        aliases = client.aliases(name)
        current_v, previous_v = aliases.get(cfg.champion), aliases.get(cfg.previous)
        if previous_v is not None and _info(client, name, previous_v) is None:
            previous_v = None
        if previous_v is None or previous_v == current_v:
            event = log.record(AuditEvent(action="rollback", outcome="refused", alias=cfg.champion,
                                          from_version=current_v, reason=reason,
                                          message=f"{name} has no previous champion to roll back to"))
            raise PromotionRefused(f"refused: {event.message} (champion is "
                                   f"{'v' + current_v if current_v else 'unset'})", event)
        # What did the restored version replace when it was promoted? That becomes the new rollback target.
        promoted = log.last_promotion_to(previous_v, alias=cfg.champion)
        new_previous = promoted.from_version if promoted else None
        if new_previous in (previous_v, None) or _info(client, name, new_previous) is None:
            new_previous = None

        lock.verify()
        client.set_alias(name, cfg.champion, previous_v)
        if new_previous is not None:
            client.set_alias(name, cfg.previous, new_previous)
        else:
            client.delete_alias(name, cfg.previous)
        cleared_challenger = aliases.get(cfg.challenger) == previous_v
        if cleared_challenger:  # one role per version: the restored champion is nobody's canary
            client.delete_alias(name, cfg.challenger)
        after = client.aliases(name).get(cfg.champion)
        if after != previous_v:
            event = log.record(AuditEvent(action="rollback", outcome="conflict", alias=cfg.champion,
                                          from_version=current_v, to_version=previous_v, reason=reason,
                                          message=f"champion is v{after} after writing v{previous_v}"))
            raise RegistryError(f"{name}: {event.message}")
        suffix = f"; previous-champion now v{new_previous}" if new_previous else "; no earlier champion left"
        if cleared_challenger:
            suffix += f"; challenger alias removed (v{previous_v} is the champion again)"
        event = log.record(AuditEvent(action="rollback", outcome="done", alias=cfg.champion, from_version=current_v,
                                      to_version=previous_v, reason=reason,
                                      message=f"champion v{current_v} → v{previous_v}{suffix}"))
        _history(client, name, previous_v, f"**{cfg.champion}** again: rollback from v{current_v}", event)
        _history(client, name, current_v, f"rolled back: **{cfg.champion}** returned to v{previous_v}", event)
        return event
    finally:
        lock.release()
