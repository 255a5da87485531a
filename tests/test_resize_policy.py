"""The det resize policy: the shared function on real image sizes, its round trip through ``inference.yml``, and
training-time evaluation and serving feeding the network the same tensor for the same config."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from datasets.resize import det_preprocess, det_resize_for_eval
from export.inference_yml import read_inference_yml, write_inference_yml


def _shape(h: int, w: int, side: int, ltype: str, cap: int | None = None) -> tuple[int, int]:
    resized, _ = det_resize_for_eval(np.zeros((h, w, 3), np.uint8), side, ltype, cap)
    return resized.shape[:2]


def test_max_never_upscales_and_min_upscales_small_photos():
    assert _shape(430, 300, 960, "max") == (416, 288)                  # rounded to 32, not enlarged
    assert _shape(430, 300, 736, "min") == (1056, 736)                 # short side brought to 736
    assert _shape(3508, 2480, 960, "max") == (960, 672)                # A4 300 dpi shrunk to 960
    assert _shape(3508, 2480, 736, "min", 0) == (3520, 2496)           # min never shrinks (0 = no cap)
    assert _shape(3508, 2480, 736, "min") == (2048, 1440)              # ... but unset, min gets the default cap
    assert _shape(5000, 6000, 4000, "max") == (3328, 4000)             # max: no default cap


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
                                                       "max_side_limit": 2048}
    resize = _eval_resize()
    assert {k: resize[k] for k in ("limit_side_len", "limit_type")} == {"limit_side_len": 736, "limit_type": "min"}


def test_cap_only_acts_when_needed():
    assert _shape(430, 300, 736, "min", 2048) == _shape(430, 300, 736, "min", 0)
    assert _shape(3508, 2480, 736, "min", 2048) == (2048, 1440)        # 2480*2048/3508 = 1448 -> 1440


def test_inference_yml_round_trip_carries_the_policy(tmp_path):
    write_inference_yml(tmp_path / "a", "det", limit_side_len=736, limit_type="min", max_side_limit=2048)
    assert read_inference_yml(tmp_path / "a").pre == {"limit_side_len": 736, "limit_type": "min",
                                                      "max_side_limit": 2048}
    ops = read_inference_yml(tmp_path / "a").raw["PreProcess"]["transform_ops"]
    assert {"limit_side_len": 736, "limit_type": "min", "max_side_limit": 2048} in [o.get("DetResizeForTest")
                                                                                  for o in ops if isinstance(o, dict)]
    # a max policy has no cap: the op is exactly PaddleOCR 2.x's (no key it does not know)
    write_inference_yml(tmp_path / "b", "det", limit_side_len=960, limit_type="max")
    assert read_inference_yml(tmp_path / "b").pre == {"limit_side_len": 960, "limit_type": "max"}
    assert "max_side_limit" not in (tmp_path / "b" / "inference.yml").read_text()
    # the default export writes the default policy with its cap spelled out (PaddleOCR 3.x would use 4000)
    write_inference_yml(tmp_path / "c", "det")
    assert read_inference_yml(tmp_path / "c").pre == {"limit_side_len": 736, "limit_type": "min",
                                                      "max_side_limit": 2048}
    # a dir without inference.yml serves with the default policy too
    assert read_inference_yml(tmp_path / "none", "det").pre == {"limit_side_len": 736, "limit_type": "min",
                                                                "max_side_limit": 2048}


def _eval_resize() -> dict:
    """The det config's eval_resize as training composes it (conf/det.yaml)."""
    from pathlib import Path

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[1] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(config_name="det")
    return OmegaConf.to_container(cfg.eval_resize)


@pytest.mark.parametrize("size", [(430, 300), (720, 1280), (1754, 1240)])
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
                        limit_type=resize["limit_type"], max_side_limit=resize.get("max_side_limit"))
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
