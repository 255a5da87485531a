"""``model.pretrained=models:/ocr-det/3`` (or ``models:/ocr-det@champion``): weights from the MLflow registry.

Why: the registry is where a team's FP32 models live once they are promoted; fine-tuning or QAT should start
from "the champion" without anyone digging out a run directory. A registered version is a pyfunc model whose
artifacts hold the exported inference directory per task (``det``, and for det versions the bundled ``rec``);
this module downloads it once into a local cache and hands back that directory, which
:func:`training.models.pretrained.read_source` loads like any other inference directory.

Only MLflow's client is used (not ``registry/``): stages flow one way, and training must not import the
registry package that consumes its outputs.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RegistrySource", "RegistrySourceError", "is_registry_uri", "resolve_registry_uri"]

_URI = re.compile(r"models:/(?P<name>[^/@]+)(?:/(?P<version>\d+)|@(?P<alias>[\w\-]+))/?")


class RegistrySourceError(ValueError):
    """A ``models:/`` URI that cannot be resolved; the message names the URI and what is wrong."""


@dataclass(frozen=True)
class RegistrySource:
    """A resolved registry version: the local inference directory for the task, and its lineage."""

    uri: str
    name: str
    version: str
    run_id: str | None
    path: Path

    def lineage(self) -> dict[str, str | None]:
        """What a child run records about this parent (the registry shows the INT8 child beside it)."""
        return {"registry_uri": self.uri, "registry_name": self.name, "registry_version": self.version,
                "run_id": self.run_id}


def is_registry_uri(source: object) -> bool:
    return isinstance(source, str) and source.startswith("models:/")


def _cache_root() -> Path:
    return Path(os.environ.get("OCR_CACHE_DIR", ".cache/ocr")).expanduser() / "registry"


def resolve_registry_uri(uri: str, task: str, tracking_uri: str | None = None) -> RegistrySource:
    """Resolve ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS`` to the local inference dir for ``task``.

    The download goes to a temporary directory first and is renamed into the cache, so an interrupted
    download never leaves a half-written cache entry."""
    match = _URI.fullmatch(uri.strip())
    if not match:
        raise RegistrySourceError(f"model.pretrained={uri!r}: expected models:/NAME/VERSION or models:/NAME@ALIAS")
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from training.lineage import resolve_tracking_uri

    resolved_uri = resolve_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=resolved_uri, registry_uri=resolved_uri)
    name = match["name"]
    try:
        mv = (client.get_model_version(name, match["version"]) if match["version"]
              else client.get_model_version_by_alias(name, match["alias"]))
    except MlflowException as exc:
        raise RegistrySourceError(f"model.pretrained={uri!r}: not in the registry at {resolved_uri} "
                                  f"({exc.message.splitlines()[0]})") from None
    model_dir = _download(client, name, str(mv.version), resolved_uri)
    return RegistrySource(uri=uri, name=name, version=str(mv.version), run_id=mv.run_id,
                          path=_task_dir(model_dir, task, uri))


def _download(client, name: str, version: str, tracking_uri: str) -> Path:
    import mlflow.artifacts

    target = _cache_root() / re.sub(r"[^\w.-]", "_", tracking_uri) / name / version
    if (target / "MLmodel").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
    try:
        source = client.get_model_version_download_uri(name, version)
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(tmp),
                                                         tracking_uri=tracking_uri))
        if not (local / "MLmodel").is_file():
            found = next(local.rglob("MLmodel"), None)
            if found is None:
                raise RegistrySourceError(f"models:/{name}/{version}: the version holds no MLflow model (no MLmodel)")
            local = found.parent
        try:
            local.rename(target)
        except OSError:  # another process filled the cache first
            if not (target / "MLmodel").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _task_dir(model_dir: Path, task: str, uri: str) -> Path:
    """The inference directory of ``task`` inside a downloaded pyfunc model (from MLmodel's artifacts)."""
    import yaml

    meta = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8")) or {}
    artifacts = ((meta.get("flavors") or {}).get("python_function") or {}).get("artifacts") or {}
    entry = artifacts.get(task)
    if entry is None:
        raise RegistrySourceError(f"model.pretrained={uri!r}: this version has no {task} model "
                                  f"(artifacts: {sorted(artifacts) or 'none'})")
    path = model_dir / (entry.get("path") if isinstance(entry, dict) else str(entry))
    if not (path / "inference.pdiparams").is_file():
        raise RegistrySourceError(f"model.pretrained={uri!r}: {path} is not an inference directory")
    return path
