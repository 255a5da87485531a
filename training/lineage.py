"""The lineage schema: every tag key a training run and a registered model version carry, the helpers that
produce the code and library versions, and where the tracking store is.

Why one module: training writes these tags on its MLflow run, the registry copies them onto a model version
and the promotion gates compare them. When each side spelled the keys itself they drifted apart (training
wrote ``data.train.num``/``git.sha``/``version.*``, the registry read ``data.train.size``/``git_sha``/``lib.*``
and guessed the rest with regular expressions), and a registered version silently lost its training lineage.
Training is the earliest stage that writes lineage, so the schema lives here and the registry imports it.

Keys (MLflow stores every value as a string)::

    task                        det | rec                                        run, version
    model.arch                  model family, e.g. ppocrv4_mobile_det             run, version
    data.train.digest / .size   training data digest and number of samples       run, version
    data.train.skipped          samples dropped by data.on_error=skip             run
    data.eval.digest / .size    run: the eval set used while training;            run, version
                                version: the eval set of the metrics of record
    data.val.digest / .size     version: the training run's eval set              version
    data.eval.spec              FORMAT:PATH of the version's eval set             version
    charset.sha256              charset hash (det versions: the bundled rec's)   run, version
    git.sha / git.dirty         project commit and whether tracked files differed run, version
    lib.<distribution>          installed versions (lib.paddlepaddle, lib.python…) run, version
    quantized                   yes | no                                         version
    fp32_parent_version         INT8 versions: the FP32 version they came from   version
    metric.<name>, postprocess  metrics of record and the post-process used       version

Example::

    tags = {**code_tags(), **data_tags(train_digest="ab…", train_size=1200, eval_digest="cd…", eval_size=50)}
    version_tags = version_lineage(run.data.tags)     # what a version copies from its training run
"""
from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

__all__ = [
    "TASKS", "MAIN_METRIC", "LATENCY_METRIC", "METRIC_PREFIX", "LIB_PREFIX",
    "TAG_TASK", "TAG_MODEL_ARCH", "TAG_TRAIN_DIGEST", "TAG_TRAIN_SIZE", "TAG_TRAIN_SKIPPED", "TAG_EVAL_DIGEST",
    "TAG_EVAL_SIZE", "TAG_EVAL_SKIPPED", "TAG_EVAL_SPEC", "TAG_VAL_DIGEST", "TAG_VAL_SIZE", "TAG_CHARSET",
    "TAG_GIT_SHA", "TAG_GIT_DIRTY", "TAG_MLFLOW_GIT_COMMIT", "TAG_REGISTRY_GIT_SHA", "TAG_QUANTIZED",
    "TAG_FP32_PARENT", "TAG_POSTPROCESS", "TAG_SOURCE_RUN", "TAG_MODEL_BYTES", "TAG_REC_BUNDLE",
    "TAG_REGISTRATION_ID", "LIB_DISTS", "RUN_TO_VERSION", "DEFAULT_TRACKING_URI",
    "resolve_tracking_uri", "library_versions", "git_sha", "git_dirty", "code_tags", "data_tags",
    "version_lineage",
]

TASKS = ("det", "rec")
MAIN_METRIC = {"det": "hmean", "rec": "acc"}
LATENCY_METRIC = "latency_ms"
METRIC_PREFIX = "metric."
LIB_PREFIX = "lib."

TAG_TASK = "task"
TAG_MODEL_ARCH = "model.arch"
TAG_TRAIN_DIGEST = "data.train.digest"
TAG_TRAIN_SIZE = "data.train.size"
TAG_TRAIN_SKIPPED = "data.train.skipped"
TAG_EVAL_DIGEST = "data.eval.digest"
TAG_EVAL_SIZE = "data.eval.size"
TAG_EVAL_SKIPPED = "data.eval.skipped"
TAG_EVAL_SPEC = "data.eval.spec"
TAG_VAL_DIGEST = "data.val.digest"
TAG_VAL_SIZE = "data.val.size"
TAG_CHARSET = "charset.sha256"
TAG_GIT_SHA = "git.sha"
TAG_GIT_DIRTY = "git.dirty"
TAG_MLFLOW_GIT_COMMIT = "mlflow.source.git.commit"  # MLflow's own key: the UI links the commit
TAG_REGISTRY_GIT_SHA = "registry.git.sha"           # the code that registered a version (may differ)
TAG_QUANTIZED = "quantized"
TAG_FP32_PARENT = "fp32_parent_version"
TAG_POSTPROCESS = "postprocess"
TAG_SOURCE_RUN = "source_run_id"
TAG_MODEL_BYTES = "model_bytes"
TAG_REC_BUNDLE = "rec_bundle"
TAG_REGISTRATION_ID = "registration_id"

#: distributions whose versions shape a model's numbers, recorded as ``lib.<name>``
LIB_DISTS = ("paddlepaddle", "paddlepaddle-gpu", "paddleslim", "unstructured-paddleocr", "rapidocr-paddle",
             "mlflow", "numpy", "opencv-python-headless")

#: run tag → version tag. The run's eval set becomes ``data.val.*`` on a version, because a version's
#: ``data.eval.*`` names the eval set its metrics of record were measured on (chosen at registration).
RUN_TO_VERSION: Mapping[str, str] = {
    TAG_TRAIN_DIGEST: TAG_TRAIN_DIGEST,
    TAG_TRAIN_SIZE: TAG_TRAIN_SIZE,
    TAG_EVAL_DIGEST: TAG_VAL_DIGEST,
    TAG_EVAL_SIZE: TAG_VAL_SIZE,
    TAG_CHARSET: TAG_CHARSET,
    TAG_MODEL_ARCH: TAG_MODEL_ARCH,
    TAG_GIT_SHA: TAG_GIT_SHA,
    TAG_GIT_DIRTY: TAG_GIT_DIRTY,
}

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
_PROJECT_ROOT = Path(__file__).resolve().parents[1]


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The store training and the registry both use: the config value, else ``$MLFLOW_TRACKING_URI``, else
    ``sqlite:///mlflow.db`` in the working directory (what ``mlflow ui --backend-store-uri`` opens)."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def library_versions() -> dict[str, str]:
    """Installed versions of :data:`LIB_DISTS` (absent ones left out) plus ``python``."""
    out: dict[str, str] = {}
    for dist in LIB_DISTS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    out["python"] = sys.version.split()[0]
    return out


def _git(*args: str) -> str | None:
    """``git`` in the project checkout; None outside git or when it fails (bounded: 10 s)."""
    try:
        res = subprocess.run(["git", *args], cwd=_PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


def git_sha() -> str:
    """HEAD of the project checkout, ``unknown`` outside git."""
    return _git("rev-parse", "HEAD") or "unknown"


def git_dirty() -> bool | None:
    """Whether tracked files differ from HEAD (None when git cannot tell)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


def code_tags() -> dict[str, str]:
    """``git.sha``, ``git.dirty``, MLflow's commit tag and ``lib.*``: what every run and version records."""
    sha = git_sha()
    tags = {TAG_GIT_SHA: sha}
    if sha != "unknown":
        tags[TAG_MLFLOW_GIT_COMMIT] = sha
        dirty = git_dirty()
        if dirty is not None:
            tags[TAG_GIT_DIRTY] = "true" if dirty else "false"
    tags.update({f"{LIB_PREFIX}{name}": value for name, value in library_versions().items()})
    return tags


def data_tags(*, train_digest: str | None = None, train_size: int | None = None,
              eval_digest: str | None = None, eval_size: int | None = None,
              train_skipped: int | None = None, eval_skipped: int | None = None) -> dict[str, str]:
    """The data lineage of a training run under the schema's names (None values left out)."""
    values = {TAG_TRAIN_DIGEST: train_digest, TAG_TRAIN_SIZE: train_size, TAG_TRAIN_SKIPPED: train_skipped,
              TAG_EVAL_DIGEST: eval_digest, TAG_EVAL_SIZE: eval_size, TAG_EVAL_SKIPPED: eval_skipped}
    return {key: str(value) for key, value in values.items() if value is not None}


def version_lineage(run_tags: Mapping[str, Any]) -> dict[str, str]:
    """What a model version copies from its training run's tags: :data:`RUN_TO_VERSION` plus every
    ``lib.*``. Exact names only — a run written under other names contributes nothing rather than a guess."""
    out = {dst: str(run_tags[src]) for src, dst in RUN_TO_VERSION.items() if run_tags.get(src) not in (None, "")}
    out.update({k: str(v) for k, v in run_tags.items() if k.startswith(LIB_PREFIX) and v not in (None, "")})
    return out
