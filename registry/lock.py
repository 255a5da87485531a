"""A mutex for alias changes of one registered model, built on the registry's only atomic operation.

Why this shape: MLflow aliases and tags are blind upserts (no compare-and-set), so two promotions that both
"read champion, check gates, write champion" can interleave and leave the audit chain inconsistent. But
*creating* a registered model whose name already exists fails atomically (a unique key in the SQL store,
``RESOURCE_ALREADY_EXISTS`` over REST) — that is a compare-and-set we can rely on against SQLite and a
real ``mlflow server`` alike. The lock is a transient registered model ``<name>.promotion-lock`` whose tags
name the holder (token, who, expiry); it is deleted on release. A holder that crashed leaves a lock that
expires after ``lease_s``; a waiter breaks it by *renaming* it away (rename is atomic too, so only one
waiter breaks it) and checks that it renamed the stale lock it saw. Holders call :meth:`verify` right before
writing so a holder whose stale lock was broken aborts instead of writing.

Usage::

    with PromotionLock(client, "ocr-det", timeout_s=60):
        ...  # read aliases, run gates, write aliases, re-read to verify
"""
from __future__ import annotations

import logging
import random
import time
import uuid

from registry.audit import current_user
from registry.client import RegistryClient, is_already_exists, is_not_found, is_transient
from registry.progress import notice

__all__ = ["LOCK_SUFFIX", "LockTimeout", "LockLost", "PromotionLock", "lock_name"]

LOCK_SUFFIX = ".promotion-lock"
_log = logging.getLogger(__name__)


class LockTimeout(RuntimeError):
    """Another promotion held the lock for longer than the timeout."""


class LockLost(RuntimeError):
    """Our lock was broken as stale (we were too slow); nothing was written."""


def lock_name(name: str) -> str:
    return f"{name}{LOCK_SUFFIX}"


class PromotionLock:
    """Context manager holding the promotion lock of registered model ``name``."""

    def __init__(self, client: RegistryClient, name: str, *, timeout_s: float = 60.0, lease_s: float = 120.0,
                 poll_s: float = 0.1) -> None:
        self.client = client
        self.name = name
        self.lock = lock_name(name)
        self.timeout_s = float(timeout_s)
        self.lease_s = float(lease_s)
        self.poll_s = float(poll_s)
        self.token = uuid.uuid4().hex
        self.held = False
        self.waited_s = 0.0

    # ------------------------------------------------------------------ inspection
    def _holder(self) -> dict[str, str] | None:
        """Tags of the current lock model, or None when the lock is free."""
        try:
            model = self.client.mlflow.get_registered_model(self.lock)
        except Exception as exc:  # noqa: BLE001
            if is_not_found(exc):
                return None
            raise
        tags = model.tags or {}
        return dict(tags) if isinstance(tags, dict) else {t.key: t.value for t in tags}

    def _try_create(self) -> bool:
        expires = time.time() + self.lease_s
        tags = {"token": self.token, "who": current_user(), "expires": f"{expires:.3f}", "model": self.name}
        try:
            self.client.mlflow.create_registered_model(
                self.lock, tags=tags,
                description=f"Transient promotion lock of {self.name} held by {tags['who']}; "
                            "safe to delete if older than the lease (registry/lock.py).")
            return True
        except Exception as exc:  # noqa: BLE001
            if is_not_found(exc):
                # MLflow's SQL store answers a name clash by re-reading the existing model; when its holder
                # released it in between, that re-read says "not found". The lock was taken and is free
                # again: not ours, try again.
                return False
            if is_already_exists(exc) or is_transient(exc):
                # A transient error may hide a create that succeeded (HTTP): the token tells.
                holder = self._safe_holder()
                return bool(holder and holder.get("token") == self.token)
            raise

    def _safe_holder(self) -> dict[str, str] | None:
        try:
            return self._holder()
        except Exception as exc:  # noqa: BLE001
            if is_transient(exc):
                return None
            raise

    def _break_if_stale(self, holder: dict[str, str]) -> None:
        try:
            expires = float(holder.get("expires", "0"))
        except ValueError:
            expires = 0.0
        if time.time() <= expires:
            return
        stale_name = f"{self.lock}.stale-{uuid.uuid4().hex[:8]}"
        try:
            self.client.mlflow.rename_registered_model(self.lock, stale_name)
        except Exception as exc:  # noqa: BLE001 - someone else broke or released it first
            if is_not_found(exc) or is_already_exists(exc) or is_transient(exc):
                return
            raise
        try:
            renamed = self.client.mlflow.get_registered_model(stale_name)
            tags = renamed.tags if isinstance(renamed.tags, dict) else {t.key: t.value for t in renamed.tags}
            if tags.get("token") != holder.get("token"):
                # We renamed a lock taken after our read: give it back if the name is still free.
                try:
                    self.client.mlflow.rename_registered_model(stale_name, self.lock)
                    return
                except Exception:  # noqa: BLE001 - its holder will see LockLost in verify()
                    pass
            _log.warning("broke stale promotion lock of %s held by %s", self.name, holder.get("who"))
            self.client.mlflow.delete_registered_model(stale_name)
        except Exception as exc:  # noqa: BLE001
            if not is_not_found(exc):
                raise

    # ------------------------------------------------------------------ protocol
    def acquire(self) -> "PromotionLock":
        start = time.monotonic()
        announced = False
        while True:
            if self._try_create():
                self.held = True
                self.waited_s = time.monotonic() - start
                return self
            holder = self._safe_holder()
            if holder is not None:
                if not announced and time.monotonic() - start > 1.0:
                    announced = True
                    notice(f"waiting for the promotion lock of {self.name} held by {holder.get('who', '?')} "
                           f"(up to {self.timeout_s:g} s)")
                self._break_if_stale(holder)
            if time.monotonic() - start > self.timeout_s:
                who = (holder or {}).get("who", "another process")
                raise LockTimeout(f"{self.name}: another promotion (by {who}) held the lock for more than "
                                  f"{self.timeout_s:g}s; retry, or delete registered model {self.lock!r} if stale")
            time.sleep(self.poll_s * (0.5 + random.random()))

    def verify(self) -> None:
        """Raise :class:`LockLost` unless we still hold the lock (call right before writing)."""
        holder = self.client.call(self._holder)
        if not holder or holder.get("token") != self.token:
            raise LockLost(f"{self.name}: promotion lock was lost (held longer than the {self.lease_s:g}s lease)")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        try:
            holder = self.client.call(self._holder)
            if holder and holder.get("token") == self.token:
                self.client.call("delete_registered_model", self.lock)
        except Exception as exc:  # noqa: BLE001 - never mask the caller's own error; the lease expires anyway
            if not is_not_found(exc):
                _log.warning("could not release promotion lock of %s: %s", self.name, exc)

    def __enter__(self) -> "PromotionLock":
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()
