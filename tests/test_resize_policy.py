"""The det resize policy: the shared function on real image sizes, its round trip through ``inference.yml``, and
training-time evaluation and serving feeding the network the same tensor for the same config."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from datasets.resize import det_preprocess, det_resize_for_eval
from export.inference_yml import read_inference_yml, write_inference_yml


def _shape(h: int, w: int, side: int, ltype: str, cap: int | None = None,
           upscale: float | None = None) -> tuple[int, int]:
    resized, _ = det_resize_for_eval(np.zeros((h, w, 3), np.uint8), side, ltype, cap, upscale)
    return resized.shape[:2]


def test_max_never_upscales_and_min_upscales_small_photos():
    assert _shape(430, 300, 960, "max") == (416, 288)                  # rounded to 32, not enlarged
    assert _shape(430, 300, 736, "min") == (1056, 736)                 # short side brought to 736
    assert _shape(3508, 2480, 960, "max") == (960, 672)                # A4 300 dpi shrunk to 960
    assert _shape(3508, 2480, 736, "min", 0) == (3520, 2496)           # min never shrinks (0 = no cap)
    assert _shape(3508, 2480, 736, "min") == (2048, 1440)              # ... but unset, min gets the default cap
    assert _shape(5000, 6000, 4000, "max") == (3328, 4000)             # max: no default cap


def test_min_enlarges_word_and_line_crops_at_most_four_times():
    """A 30-px-high crop brought to a 736-px short side (×25) reaches the detector in fragments; the default
    bound keeps it at ×4. Photos whose short side is 184 px or more are not touched by it."""
    assert _shape(30, 200, 736, "min") == (128, 800)                   # ×4, not ×10 (the long-side cap) or ×25
    assert _shape(24, 60, 736, "min") == (96, 256)                     # 96×240 rounded to multiples of 32
    assert _shape(30, 200, 736, "min", upscale=0) == (320, 2048)       # 0 = no bound: the long-side cap decides
    assert _shape(30, 200, 736, "min", upscale=8) == (256, 1600)
    for h, w in ((184, 260), (200, 287), (430, 300), (720, 1280)):
        assert _shape(h, w, 736, "min") == _shape(h, w, 736, "min", upscale=0), (h, w)
    assert _shape(30, 200, 960, "max") == (32, 192)                    # max never enlarges, bound or not
    assert _shape(30, 200, 640, "resize_long") == (96, 640)            # an exact long side is not bounded


@pytest.mark.parametrize("h,w,side,ltype,cap", [
    (3508, 2480, 736, "min", 2048), (3508, 2480, 64, "min", 4000), (4000, 300, 736, "min", 2048),
    (720, 1280, 736, "min", 1024), (5000, 6000, 960, "max", 4000), (430, 300, 736, "min", 2048),
])
def test_cap_bounds_the_long_side_and_sides_are_multiples_of_32(h, w, side, ltype, cap):
    rh, rw = _shape(h, w, side, ltype, cap)
    assert rh % 32 == 0 and rw % 32 == 0
    assert max(rh, rw) <= cap
    assert abs(rh / h - rw / w) < 0.1  # aspect kept up to the rounding


def test_default_policy_is_the_measured_one_and_conf_uses_it():
    from datasets.resize import DET_RESIZE_DEFAULTS
    from export.inference_yml import DET_PRE_DEFAULTS

    assert DET_RESIZE_DEFAULTS == DET_PRE_DEFAULTS == {"limit_side_len": 736, "limit_type": "min",
                                                       "max_side_limit": 2048, "max_upscale": 4.0}
    resize = _eval_resize()
    assert resize["max_side_limit"] is None and resize["max_upscale"] is None  # null: the policy's defaults
    assert {k: resize[k] for k in ("limit_side_len", "limit_type")} == {"limit_side_len": 736, "limit_type": "min"}


def test_cap_only_acts_when_needed():
    assert _shape(430, 300, 736, "min", 2048) == _shape(430, 300, 736, "min", 0)
    assert _shape(3508, 2480, 736, "min", 2048) == (2048, 1440)        # 2480*2048/3508 = 1448 -> 1440


def test_inference_yml_round_trip_carries_the_policy(tmp_path):
    write_inference_yml(tmp_path / "a", "det", limit_side_len=736, limit_type="min", max_side_limit=2048)
    assert read_inference_yml(tmp_path / "a").pre == {"limit_side_len": 736, "limit_type": "min",
                                                      "max_side_limit": 2048, "max_upscale": 4.0}
    # the enlargement bound is ours: it lives in our own section, not in PaddleOCR's DetResizeForTest
    assert read_inference_yml(tmp_path / "a").own["det_max_upscale"] == 4.0
    write_inference_yml(tmp_path / "a2", "det", limit_side_len=736, limit_type="min", max_upscale=2.5)
    assert read_inference_yml(tmp_path / "a2").pre["max_upscale"] == 2.5
    ops = read_inference_yml(tmp_path / "a").raw["PreProcess"]["transform_ops"]
    assert {"limit_side_len": 736, "limit_type": "min", "max_side_limit": 2048} in [o.get("DetResizeForTest")
                                                                                  for o in ops if isinstance(o, dict)]
    # a max policy has no cap: the op is exactly PaddleOCR 2.x's (no key it does not know)
    write_inference_yml(tmp_path / "b", "det", limit_side_len=960, limit_type="max")
    assert read_inference_yml(tmp_path / "b").pre == {"limit_side_len": 960, "limit_type": "max"}
    assert "max_side_limit" not in (tmp_path / "b" / "inference.yml").read_text()
    assert "max_upscale" not in (tmp_path / "b" / "inference.yml").read_text()
    # the default export writes the default policy with its cap spelled out (PaddleOCR 3.x would use 4000)
    write_inference_yml(tmp_path / "c", "det")
    assert read_inference_yml(tmp_path / "c").pre == {"limit_side_len": 736, "limit_type": "min",
                                                      "max_side_limit": 2048, "max_upscale": 4.0}
    # a dir without inference.yml serves with the default policy too
    assert read_inference_yml(tmp_path / "none", "det").pre == {"limit_side_len": 736, "limit_type": "min",
                                                                "max_side_limit": 2048, "max_upscale": 4.0}


def _eval_resize() -> dict:
    """The det config's eval_resize as training composes it (conf/det.yaml)."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="det")
    return OmegaConf.to_container(cfg.eval_resize)


@pytest.mark.parametrize("size", [(30, 200), (430, 300), (720, 1280), (1754, 1240)])
def test_training_eval_and_serving_feed_the_same_tensor(tmp_path, size):
    """Training's det_predict (with conf eval_resize) and DetPredictor (with the inference.yml an export writes
    from that eval_resize) hand the network identical inputs."""
    import paddle

    from export.predictors import DetPredictor
    from export.pretrained import pretrained_model_dir
    from training.evaluation import det_predict
    from training.postprocess import DBPostProcess

    resize = _eval_resize()
    model_dir = tmp_path / "det"
    shutil.copytree(pretrained_model_dir("det"), model_dir)
    write_inference_yml(model_dir, "det", limit_side_len=resize["limit_side_len"],
                        limit_type=resize["limit_type"], max_side_limit=resize.get("max_side_limit"),
                        max_upscale=resize.get("max_upscale"))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)

    predictor = DetPredictor(model_dir, runtime_opts={"num_threads": 1})
    served = []
    run = predictor.engine.run
    predictor.engine.run = lambda batch: served.append(np.array(batch)) or run(batch)
    predictor.predict(image)

    trained = []

    def model(x):
        trained.append(x.numpy())
        return {"maps": paddle.zeros([1, 1, *x.shape[2:]])}

    det_predict(model, image, DBPostProcess(), resize["limit_side_len"], resize["limit_type"])
    assert served[0].shape == trained[0].shape
    np.testing.assert_array_equal(served[0], trained[0])
    expected, _ = det_preprocess(image, resize["limit_side_len"], resize["limit_type"], resize.get("max_side_limit"))
    np.testing.assert_array_equal(served[0], expected)


# ---------------------------------------------------------------------------------- the cap as a config key
def _recording_model(seen: list):
    """The network's place in det_predict: records the input it is handed, answers an empty probability map."""
    import paddle

    def model(x):
        seen.append(tuple(x.shape))
        return {"maps": paddle.zeros([1, 1, *x.shape[2:]])}

    return model


@pytest.mark.parametrize("overrides,long_side", [
    ([], 2048),                                                        # null: a min policy's default cap
    (["eval_resize.max_side_limit=1024"], 1024),
    (["eval_resize.limit_type=max", "eval_resize.limit_side_len=4000"], 3520),  # max: no default cap
    (["eval_resize.limit_type=max", "eval_resize.limit_side_len=4000", "eval_resize.max_side_limit=1536"], 1536),
])
def test_eval_resize_max_side_limit_is_what_training_eval_resizes_to(tmp_path, overrides, long_side):
    """``eval_resize.max_side_limit`` passes the closed schema and reaches the tensor the evaluator feeds the
    network (DetTask → DetEvaluator → det_predict), on an A4 page at 300 dpi."""
    import cv2
    from types import SimpleNamespace

    from datasets.sample import DetSample
    from training.cli import precheck_overrides
    from training.det_task import DetTask

    page = tmp_path / "a4_300dpi.png"
    cv2.imwrite(str(page), np.full((3508, 2480, 3), 255, np.uint8))
    cfg = precheck_overrides("det", overrides)
    task = DetTask(cfg)
    evaluator = task.evaluator(SimpleNamespace(samples=[DetSample(page)]))
    seen: list = []
    evaluator.evaluate(_recording_model(seen))
    assert max(seen[0][2:]) == long_side
    assert task.serving()["max_side_limit"] == cfg.eval_resize.max_side_limit  # what an after-training export writes


@pytest.mark.parametrize("overrides,shape", [([], (128, 800)), (["eval_resize.max_upscale=2"], (64, 384))])
def test_eval_resize_max_upscale_is_what_training_eval_resizes_a_crop_to(tmp_path, overrides, shape):
    """``eval_resize.max_upscale`` (null = ×4 for min) reaches the evaluator's input and the serving parameters
    an after-training export writes."""
    import cv2
    from types import SimpleNamespace

    from datasets.sample import DetSample
    from training.cli import precheck_overrides
    from training.det_task import DetTask

    crop = tmp_path / "crop.png"
    cv2.imwrite(str(crop), np.full((30, 200, 3), 255, np.uint8))
    cfg = precheck_overrides("det", overrides)
    task = DetTask(cfg)
    seen: list = []
    task.evaluator(SimpleNamespace(samples=[DetSample(crop)])).evaluate(_recording_model(seen))
    assert seen[0][2:] == shape
    assert task.serving()["max_upscale"] == cfg.eval_resize.max_upscale


@pytest.mark.parametrize("value,message", [
    ("0", "eval_resize.max_side_limit=0: must be an integer >= 32 (or null)"),
    ("16", "eval_resize.max_side_limit=16: must be an integer >= 32 (or null)"),
    ("abc", "eval_resize.max_side_limit='abc': must be an integer >= 32 (or null)"),
    ("2048.5", "eval_resize.max_side_limit=2048.5: must be an integer >= 32 (or null)"),
])
def test_bad_eval_resize_max_side_limit_is_one_line_exit_2(tmp_path, value, message):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "training.det", "+experiment=smoke",
                           f"eval_resize.max_side_limit={value}", f"paths.runs={tmp_path / 'runs'}"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [f"config error: {message}"], proc.stderr
    assert not (tmp_path / "runs").exists()


def _tiny_det_checkpoint(tmp_path, eval_resize: dict) -> str:
    """A randomly initialised MobileNetV3 DB checkpoint whose run config carries ``eval_resize`` (fast to export;
    the values of the weights do not matter for what the export writes)."""
    from training.models import build_model
    from training.trainer.checkpoint import save_checkpoint

    cfg = {"task": "det", "arch": "mobilenetv3_db"}
    state = {"step": 1, "config": {"model": cfg, "eval_resize": eval_resize}, "extra": {}}
    return str(save_checkpoint(tmp_path / "ck", "best", model=build_model(cfg).state_dict(), state=state))


def _export_cli(tmp_path, ckpt: str, name: str, *extra: str) -> None:
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "export", "det", "--checkpoint", ckpt, "--out", str(tmp_path / name),
                           *extra], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


def _assert_serves_with_cap(model_dir, cap: int) -> None:
    """inference.yml holds the cap, DetPredictor reads it back, and an A4 300-dpi page reaches the network
    with its long side at the cap."""
    from export.predictors import DetPredictor

    spec = read_inference_yml(model_dir)
    assert {k: v for k, v in spec.pre.items() if k != "max_upscale"} == {"limit_side_len": 736, "limit_type": "min",
                                                                        "max_side_limit": cap}
    predictor = DetPredictor(model_dir, runtime_opts={"num_threads": 1})
    assert predictor.params()["max_side_limit"] == cap
    served: list = []
    run = predictor.engine.run
    predictor.engine.run = lambda batch: served.append(np.array(batch).shape) or run(batch)
    predictor.predict(np.full((3508, 2480, 3), 255, np.uint8))
    assert max(served[0][2:]) == cap


def test_export_config_pre_max_side_limit_is_written_and_served(tmp_path):
    """``python -m export det … --config pre.max_side_limit=N pre.max_upscale=F`` beat the run's own values; the
    export serves with them."""
    from export.predictors import DetPredictor

    ckpt = _tiny_det_checkpoint(tmp_path, {"limit_side_len": 736, "limit_type": "min", "max_side_limit": 1024,
                                           "max_upscale": 3})
    _export_cli(tmp_path, ckpt, "cli", "--config", "pre.max_side_limit=1536", "pre.max_upscale=2")
    _assert_serves_with_cap(tmp_path / "cli", 1536)
    predictor = DetPredictor(tmp_path / "cli", runtime_opts={"num_threads": 1})
    assert predictor.params()["max_upscale"] == 2.0
    served: list = []
    run = predictor.engine.run
    predictor.engine.run = lambda batch: served.append(np.array(batch).shape) or run(batch)
    predictor.predict(np.full((30, 200, 3), 255, np.uint8))
    assert served[0][2:] == (64, 384)  # ×2: 60×400, rounded to multiples of 32 (400/32 = 12.5 rounds to even)


@pytest.mark.slow  # a second export (~1 min on a loaded machine)
def test_export_takes_the_cap_of_the_checkpoints_run(tmp_path):
    """Without ``--config``, the run's ``eval_resize.max_side_limit`` is what the export serves with."""
    ckpt = _tiny_det_checkpoint(tmp_path, {"limit_side_len": 736, "limit_type": "min", "max_side_limit": 1024})
    _export_cli(tmp_path, ckpt, "run")
    _assert_serves_with_cap(tmp_path / "run", 1024)


@pytest.mark.parametrize("item,message", [
    ("pre.max_side_limit=0", "pre.max_side_limit=0: must be an integer >= 32 (or null)"),
    ("pre.max_side_limit=big", "pre.max_side_limit='big': must be an integer >= 32 (or null)"),
    ("pre.limit_side_len=-1", "pre.limit_side_len=-1: must be an integer >= 1"),
    ("pre.limit_type=square", "pre.limit_type='square': must be one of max, min, resize_long"),
    ("pre.max_side=2048", "'pre.max_side=2048': unknown key"),
    ("pre.max_upscale=0.5", "pre.max_upscale=0.5: must be"),
])
def test_export_refuses_bad_resize_values_in_one_line(tmp_path, item, message):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "export", "det", "--checkpoint", "ppocrv4_mobile", "--out",
                           str(tmp_path / "out"), "--config", item], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("export refused: --config ") and message in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()
