"""A thin wrapper over :class:`mlflow.MlflowClient`: where the registry lives, and retries for transient errors.

Why a wrapper at all: every registry command must talk to the same store that training logged to (the
project-wide default ``sqlite:///mlflow.db`` unless ``MLFLOW_TRACKING_URI`` says otherwise), and concurrent
writers on SQLite or a busy ``mlflow server`` produce *transient* failures (``database is locked`` surfaces
as ``TEMPORARILY_UNAVAILABLE``; a dropped HTTP connection as a ``requests`` error) that a promotion must
survive instead of leaving the registry half-written. Everything else is passed straight through.

Why the waits are bounded here: MLflow's REST client retries every request itself (by default 7 times with
exponential back-off and a 120 s timeout). A retry loop of ours around it multiplied that into a 20-minute
hang against a dead server. So the client (1) caps MLflow's own retries through its environment variables
(unless the user set them), (2) probes an ``http(s)`` server's ``/health`` once with a short timeout, so an
unreachable server is one line naming the URI within seconds, and (3) stops its own retries at a total
deadline (``retries.deadline_s``, default 15 s; ``$OCR_REGISTRY_TIMEOUT_S`` overrides).

Usage::

    client = RegistryClient()                  # $MLFLOW_TRACKING_URI or sqlite:///mlflow.db
    mv = client.version_by_alias("ocr-det", "champion")   # None when the alias is not set
"""
from __future__ import annotations

import logging
import os
import random
import time
from typing import Any, Callable, TypeVar

# the one tracking-URI rule (config, else $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db), shared with training
from training.lineage import DEFAULT_TRACKING_URI, resolve_tracking_uri

__all__ = [
    "DEFAULT_TRACKING_URI",
    "RegistryClient",
    "RegistryError",
    "RegistryUnreachable",
    "client_from_config",
    "cap_mlflow_http_retries",
    "is_unreachable",
    "resolve_tracking_uri",
    "is_transient",
    "is_not_found",
    "is_already_exists",
]

_log = logging.getLogger(__name__)
T = TypeVar("T")

_TRANSIENT_CODES = {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "ABORTED", "DEADLINE_EXCEEDED"}
_TRANSIENT_TEXT = ("database is locked", "database table is locked", "connection reset", "connection aborted",
                   "temporarily unavailable", "max retries exceeded")


_UNREACHABLE_TEXT = ("connection refused", "failed to establish a new connection", "max retries exceeded",
                     "name or service not known", "timed out", "no route to host", "connection aborted",
                     "remote end closed connection", "temporary failure in name resolution")


class RegistryError(RuntimeError):
    """A registry operation failed for a reason the user must fix (message is one line)."""


class RegistryUnreachable(RegistryError):
    """The tracking server did not answer within the deadline (message names the URI and the wait)."""


def cap_mlflow_http_retries(timeout_s: float = 30.0, max_retries: int = 1, backoff_factor: int = 1) -> None:
    """Bound MLflow's own HTTP retry loop for this process (only where the user has not chosen values).

    MLflow reads these variables on every request; its defaults (7 retries, back-off factor 2, 120 s timeout)
    mean minutes per call against a dead server, which no caller of a CLI command wants to sit through. The
    timeout stays generous (30 s): a busy server that answers slowly must not see its non-idempotent calls
    (create/delete of the promotion lock) retried by urllib3 after a premature read timeout; a dead or
    silent server is caught by :meth:`RegistryClient.probe` within the deadline instead."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", str(int(max_retries)))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", str(int(backoff_factor)))
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", str(max(1, int(round(timeout_s)))))


def _is_connection_error(exc: BaseException) -> bool:
    """A refused, dropped or timed-out connection (requests' or the standard library's)."""
    try:
        import requests

        if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
            return True
    except ImportError:  # pragma: no cover - requests is an mlflow dependency
        pass
    return isinstance(exc, (ConnectionError, TimeoutError))


def is_unreachable(exc: BaseException) -> bool:
    """True when the failure means the server could not be reached at all (refused, timed out, DNS)."""
    if _is_connection_error(exc):
        return True
    text = str(exc).lower()
    return any(fragment in text for fragment in _UNREACHABLE_TEXT)


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", "") or "")


def is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: store busy/locked, rate limits, dropped connections."""
    if _error_code(exc) in _TRANSIENT_CODES or _is_connection_error(exc):
        return True
    text = str(exc).lower()
    return any(fragment in text for fragment in _TRANSIENT_TEXT)


def is_not_found(exc: BaseException) -> bool:
    """True when the store says the entity (model, version, alias, run) does not exist."""
    return _error_code(exc) == "RESOURCE_DOES_NOT_EXIST" or "not found" in str(exc).lower()


def is_already_exists(exc: BaseException) -> bool:
    """True when a create failed because the name is taken (the registry's only compare-and-set)."""
    return _error_code(exc) == "RESOURCE_ALREADY_EXISTS" or "already exists" in str(exc).lower()


class RegistryClient:
    """:class:`mlflow.MlflowClient` bound to one tracking/registry URI, with retried calls.

    Attribute access falls through to the MLflow client, so ``client.search_model_versions(...)`` works;
    use :meth:`call` (or the helpers below) when a call should be retried on transient errors."""

    def __init__(self, tracking_uri: str | None = None, *, attempts: int = 5, backoff_s: float = 0.3,
                 deadline_s: float | None = None, http_timeout_s: float = 30.0, http_max_retries: int = 1) -> None:
        cap_mlflow_http_retries(http_timeout_s, http_max_retries)
        from mlflow import MlflowClient

        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.attempts = max(1, int(attempts))
        self.backoff_s = float(backoff_s)
        env_deadline = os.environ.get("OCR_REGISTRY_TIMEOUT_S")
        self.deadline_s = float(env_deadline) if env_deadline else float(15.0 if deadline_s is None else deadline_s)
        self.mlflow = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    @property
    def is_http(self) -> bool:
        return self.tracking_uri.startswith(("http://", "https://"))

    def probe(self, timeout_s: float | None = None) -> None:
        """Raise :class:`RegistryUnreachable` (one line naming the URI) unless an ``http(s)`` tracking server
        answers ``/health`` within ``timeout_s`` (default: the deadline). Local stores are not probed."""
        if not self.is_http:
            return
        import requests

        timeout = float(self.deadline_s if timeout_s is None else timeout_s)
        url = self.tracking_uri.rstrip("/") + "/health"
        start = time.monotonic()
        try:
            requests.get(url, timeout=(timeout, timeout))  # any HTTP answer means the server is there
        except requests.RequestException as exc:
            raise self._unreachable(exc, time.monotonic() - start) from None

    def _unreachable(self, exc: BaseException, waited_s: float) -> RegistryUnreachable:
        text = str(exc).lower()
        why = ("connection refused" if "refused" in text else "timed out" if "timed out" in text or
               "timeout" in type(exc).__name__.lower() else "host not found" if "name" in text and "resol" in text
               else type(exc).__name__)
        return RegistryUnreachable(f"tracking server {self.tracking_uri} unreachable ({why}; gave up after "
                                   f"{waited_s:.1f} s; limit {self.deadline_s:g} s, retries.deadline_s or "
                                   "$OCR_REGISTRY_TIMEOUT_S)")

    def __getattr__(self, item: str) -> Any:  # only called for names not defined here
        return getattr(self.mlflow, item)

    def call(self, fn: Callable[..., T] | str, *args: Any, **kwargs: Any) -> T:
        """Call ``fn`` (a callable or an MlflowClient method name), retrying transient errors with jittered
        exponential back-off until ``attempts`` or the total ``deadline_s`` runs out. Non-transient errors are
        raised unchanged on the first occurrence; an unreachable HTTP server becomes
        :class:`RegistryUnreachable` (one line naming the URI)."""
        func = getattr(self.mlflow, fn) if isinstance(fn, str) else fn
        start = time.monotonic()
        for attempt in range(1, self.attempts + 1):
            try:
                return func(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - classified below
                waited = time.monotonic() - start
                delay = self.backoff_s * (2 ** (attempt - 1)) * (0.5 + random.random())
                out_of_time = waited + delay > self.deadline_s
                if self.is_http and is_unreachable(exc) and (out_of_time or attempt == self.attempts):
                    raise self._unreachable(exc, waited) from None
                if attempt == self.attempts or not is_transient(exc) or out_of_time:
                    raise
                _log.warning("transient registry error (%s), retry %d/%d in %.2fs",
                             str(exc).splitlines()[0][:200], attempt, self.attempts - 1, delay)
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ small, retried helpers
    def registered_model(self, name: str):
        """The registered model, or ``None`` when it does not exist."""
        try:
            return self.call("get_registered_model", name)
        except Exception as exc:  # noqa: BLE001
            if is_not_found(exc):
                return None
            raise

    def ensure_registered_model(self, name: str, description: str | None = None):
        """Create the registered model if missing (a concurrent creator winning the race is fine)."""
        model = self.registered_model(name)
        if model is not None:
            return model
        try:
            return self.call("create_registered_model", name, description=description)
        except Exception as exc:  # noqa: BLE001
            if is_already_exists(exc):
                return self.call("get_registered_model", name)
            raise

    def version(self, name: str, version: str | int):
        """One model version; a clear :class:`RegistryError` when it does not exist."""
        try:
            return self.call("get_model_version", name, str(version))
        except Exception as exc:  # noqa: BLE001
            if is_not_found(exc):
                raise RegistryError(f"{name} version {version} not found in {self.tracking_uri}") from None
            raise

    def version_by_alias(self, name: str, alias: str):
        """The version an alias points at, or ``None`` when the alias (or model) does not exist."""
        try:
            return self.call("get_model_version_by_alias", name, alias)
        except Exception as exc:  # noqa: BLE001
            if is_not_found(exc) or _error_code(exc) == "INVALID_PARAMETER_VALUE":
                return None
            raise

    def resolve_version(self, name: str, ref: str | int):
        """``ref`` is a version number or ``@alias``; returns the ModelVersion or raises RegistryError."""
        ref = str(ref)
        if ref.startswith("@"):
            mv = self.version_by_alias(name, ref[1:])
            if mv is None:
                raise RegistryError(f"{name} has no alias {ref!r}")
            return mv
        if not ref.isdigit():
            raise RegistryError(f"version must be a number or @alias, got {ref!r}")
        return self.version(name, ref)

    def set_alias(self, name: str, alias: str, version: str | int) -> None:
        self.call("set_registered_model_alias", name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove an alias; a missing alias is not an error (the end state is what matters)."""
        try:
            self.call("delete_registered_model_alias", name, alias)
        except Exception as exc:  # noqa: BLE001
            if not is_not_found(exc):
                raise

    def aliases(self, name: str) -> dict[str, str]:
        """alias → version for one registered model (empty when the model does not exist)."""
        model = self.registered_model(name)
        if model is None:
            return {}
        raw = getattr(model, "aliases", None) or {}
        if isinstance(raw, dict):
            return {str(k): str(v) for k, v in raw.items()}
        return {str(a.alias): str(a.version) for a in raw}  # older entity shape

    def versions(self, name: str) -> list:
        """All versions of a registered model, newest first."""
        found = self.call("search_model_versions", f"name='{name}'", max_results=10000)
        return sorted(found, key=lambda mv: int(mv.version), reverse=True)


def client_from_config(cfg: Any, tracking_uri: str | None = None) -> RegistryClient:
    """A :class:`RegistryClient` with the retry/deadline settings of a :class:`registry.config.RegistryConfig`."""
    retries = cfg.retries
    return RegistryClient(tracking_uri or cfg.tracking_uri, attempts=retries.attempts, backoff_s=retries.backoff_s,
                          deadline_s=retries.deadline_s, http_timeout_s=retries.http_timeout_s,
                          http_max_retries=retries.http_max_retries)
