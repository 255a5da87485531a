"""One lineage schema (issue #13, link 7): what training writes on its run is what the registry reads.

The slow test trains for two steps through the documented command into a temporary SQLite store, then reads
the run back with the registry's own reader (:func:`registry.register.lineage_from_run`). Before the schema
was shared, training wrote ``data.train.num``/``version.*`` and the registry looked for
``data.train.size``/``lib.*``, so a version lost its training data size and library versions.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training import lineage as schema

ROOT = Path(__file__).resolve().parent.parent


def test_version_lineage_copies_every_schema_key_by_name():
    run_tags = {**schema.code_tags(),
                **schema.data_tags(train_digest="t" * 64, train_size=12, eval_digest="e" * 64, eval_size=3,
                                   train_skipped=0, eval_skipped=1),
                schema.TAG_CHARSET: "c" * 64, schema.TAG_MODEL_ARCH: "ppocrv4_mobile_rec", "status": "completed"}
    got = schema.version_lineage(run_tags)
    assert got[schema.TAG_TRAIN_DIGEST] == "t" * 64 and got[schema.TAG_TRAIN_SIZE] == "12"
    # the run's eval set is the version's validation set; data.eval.* is left to the eval of record
    assert got[schema.TAG_VAL_DIGEST] == "e" * 64 and got[schema.TAG_VAL_SIZE] == "3"
    assert schema.TAG_EVAL_DIGEST not in got and schema.TAG_EVAL_SIZE not in got
    assert got[schema.TAG_CHARSET] == "c" * 64 and got[schema.TAG_MODEL_ARCH] == "ppocrv4_mobile_rec"
    assert got[schema.TAG_GIT_SHA] == run_tags[schema.TAG_GIT_SHA]
    assert got["lib.paddlepaddle"] == "2.6.2" and got["lib.python"] == sys.version.split()[0]
    assert "status" not in got and schema.TAG_TRAIN_SKIPPED not in got


def test_foreign_names_contribute_nothing():
    """No guessing: a run tagged under other names gives an empty lineage instead of a wrong one."""
    assert schema.version_lineage({"data.train.num": "4", "data.training.train.digest": "x", "git_sha": "abc",
                                   "version.paddle": "2.6.2", "data.train.digest": ""}) == {}


def test_registry_and_training_share_the_names():
    from registry import lineage as registry_lineage
    from registry.client import resolve_tracking_uri as registry_uri
    from training.tracking import resolve_tracking_uri as training_uri

    for name in ("TAG_TRAIN_DIGEST", "TAG_TRAIN_SIZE", "TAG_EVAL_DIGEST", "TAG_EVAL_SIZE", "TAG_CHARSET",
                 "TAG_GIT_SHA", "LIB_PREFIX", "TAG_QUANTIZED", "TAG_FP32_PARENT"):
        assert getattr(registry_lineage, name) == getattr(schema, name), name
    assert registry_uri is schema.resolve_tracking_uri and training_uri is schema.resolve_tracking_uri


@pytest.mark.slow
def test_trained_run_tags_are_exactly_what_the_registry_reads(tmp_path):
    from mlflow import MlflowClient

    from registry.client import RegistryClient
    from registry.register import lineage_from_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    args = [sys.executable, "-m", "training.rec", "+experiment=smoke", "trainer.max_steps=2", "trainer.eval_every=2",
            "data.train.num=4", "data.eval.num=2", "trainer.progress_bar=false",
            f"paths.runs={tmp_path / 'runs'}", f"paths.cache={tmp_path / 'cache'}", f"tracking.tracking_uri={uri}",
            f"hydra.run.dir={tmp_path / 'run'}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OCR_CACHE_DIR": str(tmp_path / "ocr-cache")}
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=env, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_id = json.loads(proc.stdout.strip().splitlines()[-1])["tracking_run_id"]

    run_tags = MlflowClient(uri).get_run(run_id).data.tags
    # training wrote every key the registry copies, under the schema's names
    missing = sorted(set(schema.RUN_TO_VERSION) - set(run_tags))
    assert not missing, f"the training run lacks {missing}; it has {sorted(run_tags)}"
    assert run_tags[schema.TAG_TRAIN_SIZE] == "4" and run_tags[schema.TAG_EVAL_SIZE] == "2"
    assert run_tags["lib.paddlepaddle"] == "2.6.2"

    lineage = lineage_from_run(RegistryClient(uri), run_id)
    expected = {dst: run_tags[src] for src, dst in schema.RUN_TO_VERSION.items()}
    expected.update({k: v for k, v in run_tags.items() if k.startswith(schema.LIB_PREFIX)})
    assert lineage == expected
