"""A served alias that follows the registry: re-resolve ``name@alias`` every N seconds, load a newly pointed
version beside the old one, swap atomically.

Why: ``mlflow models serve -m models:/ocr-det@champion`` resolves the alias once, at start-up. After
``registry promote`` or ``registry rollback`` the server kept answering from the old version until someone
restarted it, and nothing said so. The served pyfunc (:mod:`registry.pyfunc_model`) therefore holds each of
its routes (the primary alias, and the challenger for canary) in an :class:`AliasSlot` and runs one
:class:`AliasRefresher` thread that polls the registry.

How a swap never fails a request:

* The new version is downloaded and its predictors are built *first*, beside the old ones; requests keep
  going to the old version meanwhile.
* The swap is one attribute assignment of an immutable :class:`Served` (atomic in CPython). A request reads
  the slot once, at its start, and finishes on the version it read; the old version is freed when the last
  such request returns.
* Any failure (registry unreachable, alias deleted, the new version fails to load) keeps the current version
  serving and is logged; the next poll tries again. Registry calls go through
  :class:`registry.client.RegistryClient`, whose waits are bounded (``retries.deadline_s``).

Every answer names the version that produced it (``model.version``) because the route's identity travels in
the same :class:`Served` as its predict function.

Usage::

    slot = AliasSlot("ocr-det", "champion", served=Served(predict_fn, {"version": "1", ...}),
                     resolve=resolver, load=loader)
    refresher = AliasRefresher([slot], interval_s=30).start()   # keep a reference: the thread holds it weakly
    served = slot.current          # read once per request
"""
from __future__ import annotations

import logging
import threading
import time
import weakref
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Iterable

__all__ = ["Served", "AliasSlot", "AliasRefresher", "registry_resolver"]

_log = logging.getLogger(__name__)

#: (version or None when the alias is not set, that version's aliases)
Resolution = tuple[str | None, list[str]]


@dataclass(frozen=True)
class Served:
    """One loaded version: how to ask it, and who it is (``name``, ``version``, ``aliases``)."""

    predict: Callable[[Any], list[dict[str, Any]]]
    identity: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> str | None:
        value = self.identity.get("version")
        return None if value is None else str(value)


class AliasSlot:
    """The version currently served for ``name@alias``; :meth:`refresh` re-resolves it and swaps.

    ``keep_when_unset``: what to do when the alias disappears — the primary keeps serving what it has (a
    server must answer), a challenger slot empties (no canary without a challenger)."""

    def __init__(self, name: str, alias: str, *, served: Served | None, resolve: Callable[[str, str], Resolution],
                 load: Callable[[str], Served], keep_when_unset: bool = True,
                 exclude: Callable[[], str | None] | None = None) -> None:
        self.name = name
        self.alias = alias
        self._served = served
        self._resolve = resolve
        self._load = load
        self.keep_when_unset = keep_when_unset
        self._exclude = exclude or (lambda: None)
        self.swaps = 0
        self.last_error: str | None = None
        self.last_checked: float | None = None

    @property
    def current(self) -> Served | None:
        """What serves now. Read it once per request."""
        return self._served

    def refresh(self) -> bool:
        """Re-resolve the alias; load and swap in a different version. True when a swap happened.
        Never raises: failures are logged and leave the current version serving."""
        try:
            version, aliases = self._resolve(self.name, self.alias)
        except Exception as exc:  # noqa: BLE001 - an unreachable registry must not stop serving
            self._failed(f"resolving {self.name}@{self.alias}: {exc}")
            return False
        self.last_checked = time.time()
        current = self._served
        if version is not None and version == self._exclude():
            version = None  # e.g. the challenger alias on the primary's own version: no canary of itself
        if version is None:
            if current is not None and not self.keep_when_unset:
                _log.info("%s@%s is not set any more: route closed (was v%s)", self.name, self.alias, current.version)
                self._served = None
                return True
            return False
        if current is not None and current.version == version:
            if list(current.identity.get("aliases") or []) != sorted(aliases):
                self._served = replace(current, identity={**current.identity, "aliases": sorted(aliases)})
            return False
        try:
            loaded = self._load(version)
        except Exception as exc:  # noqa: BLE001 - keep serving the old version; retry at the next poll
            self._failed(f"loading {self.name} v{version} for @{self.alias}: {type(exc).__name__}: {exc}")
            return False
        loaded = replace(loaded, identity={**loaded.identity, "name": self.name, "version": version,
                                           "aliases": sorted(aliases)})
        self._served = loaded  # the swap: one reference assignment
        self.swaps += 1
        self.last_error = None
        _log.warning("%s@%s now served by v%s (was %s)", self.name, self.alias, version,
                     f"v{current.version}" if current is not None else "nothing")
        return True

    def _failed(self, message: str) -> None:
        first = message.strip().splitlines()[0] if message.strip() else message
        if first != self.last_error:
            _log.warning("alias refresh: %s; still serving %s", first,
                         f"v{self._served.version}" if self._served is not None else "nothing")
        self.last_error = first


def _poll(refresher_ref: "weakref.ref[AliasRefresher]", stop: threading.Event, interval_s: float) -> None:
    """The refresher thread's body. It holds the refresher only weakly between polls, so a served model that
    is dropped (as tests do with loaded models) is collected and its thread ends instead of polling forever."""
    while not stop.wait(interval_s):
        refresher = refresher_ref()
        if refresher is None:
            return
        refresher.refresh_now()
        del refresher


class AliasRefresher:
    """A daemon thread refreshing ``slots`` every ``interval_s`` seconds while the refresher is referenced
    (by the served model that owns it)."""

    def __init__(self, slots: Iterable[AliasSlot], interval_s: float) -> None:
        self.slots = list(slots)
        self.interval_s = float(interval_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> "AliasRefresher":
        if self.interval_s <= 0 or not self.slots:
            return self
        names = ", ".join(f"{s.name}@{s.alias}" for s in self.slots)
        self._thread = threading.Thread(target=_poll, args=(weakref.ref(self), self._stop, self.interval_s),
                                        name=f"alias-refresh {names}", daemon=True)
        self._thread.start()
        _log.info("following %s: re-resolved every %g s", names, self.interval_s)
        return self

    def __del__(self) -> None:
        self._stop.set()

    def refresh_now(self) -> bool:
        """One poll of every slot (also what tests call to avoid waiting). True if any slot swapped."""
        swapped = False
        for slot in self.slots:
            swapped = slot.refresh() or swapped
        return swapped

    def stop(self) -> None:
        self._stop.set()


def registry_resolver(tracking_uri: str | None = None) -> Callable[[str, str], Resolution]:
    """``(name, alias) → (version | None, aliases of that version)`` through a bounded-wait registry client."""
    from registry.client import RegistryClient

    holder: dict[str, RegistryClient] = {}

    def resolve(name: str, alias: str) -> Resolution:
        client = holder.get("client")
        if client is None:
            client = holder["client"] = RegistryClient(tracking_uri)
        mv = client.version_by_alias(name, alias)
        if mv is None:
            return None, []
        return str(mv.version), sorted(getattr(mv, "aliases", None) or [])

    return resolve
