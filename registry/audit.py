"""The audit trail of a registered model: every promotion, rollback and refusal, durable in the tracking store.

Why it exists: MLflow keeps no alias history — once ``champion`` moves, nothing records where it pointed
before, who moved it, or which gates were overridden. So each event is written as one **registered-model
tag** ``audit.<time_ns>.<random>`` whose value is a JSON object. Why tags: they live in the same store
as the versions (SQLite or ``mlflow server``), survive restarts, show in ``mlflow ui`` on the model page,
and need no extra experiment. Why one tag per event with a unique key: MLflow has no append or
compare-and-set on a tag, so a single log tag would lose events when two writers read-modify-write it;
unique keys never collide, so concurrent writers (processes, hosts) cannot overwrite each other.
Sequence numbers are assigned on read by ordering on (time_ns, id) — stable, gap-free, identical for
every reader.

Usage::

    log = AuditLog(client, "ocr-det")
    log.record(AuditEvent(action="promote", outcome="done", from_version="1", to_version="2", ...))
    for event in log.events(): print(event.seq, event.action, event.from_version, "→", event.to_version)
"""
from __future__ import annotations

import getpass
import json
import os
import socket
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

from registry.client import RegistryClient

__all__ = ["AUDIT_TAG_PREFIX", "AuditEvent", "AuditLog", "current_user"]

AUDIT_TAG_PREFIX = "audit."


def current_user() -> str:
    """Who acts: ``$OCR_REGISTRY_USER`` (CI/service accounts), else the login name, with the host."""
    user = os.environ.get("OCR_REGISTRY_USER")
    if not user:
        try:
            user = getpass.getuser()
        except Exception:  # noqa: BLE001 - containers without a passwd entry
            user = "unknown"
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class AuditEvent:
    """One registry action. ``outcome`` is ``done``, ``refused``, ``noop`` or ``conflict``."""

    action: str                      # promote | rollback
    outcome: str
    alias: str = "champion"
    from_version: str | None = None  # what the alias pointed at before
    to_version: str | None = None    # what it points at after (or would have, when refused)
    gates: dict[str, Any] | None = None
    forced: bool = False
    reason: str | None = None
    message: str = ""
    who: str = field(default_factory=current_user)
    time_ns: int = field(default_factory=time.time_ns)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    seq: int | None = None           # assigned when read back

    @property
    def when(self) -> str:
        """ISO-8601 UTC timestamp."""
        return datetime.fromtimestamp(self.time_ns / 1e9, tz=timezone.utc).isoformat(timespec="milliseconds")

    @property
    def tag_key(self) -> str:
        return f"{AUDIT_TAG_PREFIX}{self.time_ns:019d}.{self.id}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["when"] = self.when
        return data

    def to_json(self) -> str:
        data = self.to_dict()
        data.pop("seq", None)
        return json.dumps(data, sort_keys=True, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "AuditEvent":
        data = json.loads(text)
        data.pop("when", None)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


class AuditLog:
    """Append-only event log of one registered model, stored as its tags."""

    def __init__(self, client: RegistryClient, name: str) -> None:
        self.client = client
        self.name = name

    def record(self, event: AuditEvent) -> AuditEvent:
        """Write ``event`` durably (retried on transient errors) and return it."""
        self.client.call("set_registered_model_tag", self.name, event.tag_key, event.to_json())
        return event

    def events(self) -> list[AuditEvent]:
        """All events, oldest first, with ``seq`` = 1, 2, …"""
        model = self.client.registered_model(self.name)
        if model is None:
            return []
        tags = model.tags or {}
        if not isinstance(tags, dict):  # list of RegisteredModelTag in some entity versions
            tags = {t.key: t.value for t in tags}
        parsed = []
        for key in sorted(k for k in tags if k.startswith(AUDIT_TAG_PREFIX)):
            try:
                parsed.append(AuditEvent.from_json(tags[key]))
            except (json.JSONDecodeError, TypeError):
                continue  # a hand-edited tag must not hide the rest of the history
        parsed.sort(key=lambda e: (e.time_ns, e.id))
        return [replace(e, seq=i) for i, e in enumerate(parsed, start=1)]

    def last_promotion_to(self, version: str, alias: str = "champion") -> AuditEvent | None:
        """The latest *promotion* (not rollback) that made ``version`` the ``alias`` — used by rollback to
        find what came before it, so repeated rollbacks walk back through history instead of toggling."""
        for event in reversed(self.events()):
            if (event.action == "promote" and event.outcome == "done" and event.alias == alias
                    and event.to_version == str(version)):
                return event
        return None
