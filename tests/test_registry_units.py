"""Registry pieces that need no tracking store: gates, config, canary routing/log, input decoding."""
from __future__ import annotations

import base64
import json
import threading

import cv2
import numpy as np
import pytest

import registry  # noqa: F401  -- start-up fix before paddle
from registry.canary import CanaryRouter, append_record, summarize
from registry.config import GateConfig, RegistryConfig, load_config
from registry.gates import evaluate_gates
from registry.lineage import VersionInfo


def _v(version: str, task: str = "det", metric: float | None = 0.80, latency: float | None = 100.0,
       digest: str | None = "d1", charset: str | None = "c1") -> VersionInfo:
    main = "hmean" if task == "det" else "acc"
    tags = {"task": task}
    if metric is not None:
        tags[f"metric.{main}"] = str(metric)
    if latency is not None:
        tags["metric.latency_ms"] = str(latency)
    if digest is not None:
        tags["data.eval.digest"] = digest
    if charset is not None:
        tags["charset.sha256"] = charset
    return VersionInfo(name=f"ocr-{task}", version=version, tags=tags)


# ----------------------------------------------------------------------------------------------- gates
def test_first_promotion_passes_every_gate():
    report = evaluate_gates(_v("1", metric=None, latency=None, digest=None), None)
    assert report.passed and report.champion is None
    assert report.summary() == "no champion yet: gates pass"


def test_equal_candidate_passes():
    report = evaluate_gates(_v("2"), _v("1"), GateConfig())
    assert report.passed, report.summary()
    assert {r.name for r in report.results} == {"task", "eval_digest", "main_metric", "latency", "charset_compatible"}


@pytest.mark.parametrize("candidate, gate, fragment", [
    (_v("2", metric=0.70), "main_metric", "hmean 0.7000 < champion v1 0.8000 - 0.005"),
    (_v("2", latency=130.0), "latency", "latency 130.0 ms vs champion v1 100.0 ms (+30.0%, limit +15% = 115.0 ms)"),
    (_v("2", digest="other"), "eval_digest", "evaluated on different data"),
    (_v("2", digest=None), "eval_digest", "candidate has no eval data digest"),
    (_v("2", task="rec"), "task", "candidate task 'rec'"),
    (_v("2", metric=None), "main_metric", "candidate has no metric.hmean"),
])
def test_failed_gate_names_itself_and_the_numbers(candidate, gate, fragment):
    report = evaluate_gates(candidate, _v("1"), GateConfig())
    assert not report.passed
    assert gate in [r.name for r in report.failures]
    assert fragment in report.summary()
    assert "\n" not in report.summary()


def test_metric_drop_within_threshold_passes_and_latency_limit_is_inclusive():
    cfg = GateConfig(max_metric_drop=0.01, max_latency_increase_pct=10.0)
    assert evaluate_gates(_v("2", metric=0.791, latency=110.0), _v("1"), cfg).passed
    assert not evaluate_gates(_v("2", metric=0.789), _v("1"), cfg).passed


def test_charset_gate_for_rec_and_not_applicable_for_det_without_bundle():
    rec_a, rec_b = _v("1", task="rec"), _v("2", task="rec", charset="c2")
    report = evaluate_gates(rec_b, rec_a)
    assert [r.name for r in report.failures] == ["charset_compatible"]
    assert evaluate_gates(_v("2", charset=None), _v("1", charset=None)).passed  # det, boxes only


def test_challenger_enforces_only_configured_gates():
    report = evaluate_gates(_v("2", metric=0.1, latency=999.0), _v("1"), GateConfig(),
                            enforced=GateConfig().challenger_enforced)
    assert report.passed  # metric/latency regressions are what a canary is for
    assert {r.name for r in report.results if not r.passed} == {"main_metric", "latency"}
    report = evaluate_gates(_v("2", charset="zz"), _v("1"), GateConfig(), enforced=("charset_compatible",))
    assert not report.passed


def test_challenger_summary_records_every_gates_true_result():
    """hmean 0.20 vs the champion's 0.98 as a challenger: not blocking, but never "all gates passed"."""
    report = evaluate_gates(_v("2", metric=0.20), _v("1", metric=0.98), GateConfig(),
                            enforced=GateConfig().challenger_enforced)
    assert report.passed and not report.all_passed
    summary = report.summary()
    assert "all gates passed" not in summary
    assert summary.startswith("blocking gates passed (task, charset_compatible); not blocking:")
    assert "gate main_metric failed: hmean 0.2000 < champion v1 0.9800" in summary
    data = report.to_dict()
    assert data["all_passed"] is False and data["waived"] == ["main_metric"]
    assert [line.split(":")[1].strip() for line in report.lines()] == [
        "passed", "passed", "failed (not blocking)", "passed", "passed"]
    ok = evaluate_gates(_v("2"), _v("1"), GateConfig(), enforced=GateConfig().challenger_enforced)
    assert ok.summary() == "all gates passed" and ok.all_passed


def test_latency_gate_judges_the_side_by_side_ratio_not_the_recorded_tags():
    from registry.latency import LatencyComparison

    # recorded at registration under different load: +110 %; measured together now: equal
    cand, champ = _v("2", latency=105.0), _v("1", latency=50.0)
    assert not evaluate_gates(cand, champ, GateConfig()).passed
    same = LatencyComparison("2", "1", 41.0, 40.0, rounds=7, workload="det page")
    report = evaluate_gates(cand, champ, GateConfig(), latency=same)
    latency = next(r for r in report.results if r.name == "latency")
    assert report.passed and latency.passed, latency.message
    assert "candidate v2 41.0 ms vs champion v1 40.0 ms (medians); paired ratio +2.5% (limit +15%)" in latency.message
    assert "recorded at registration: 105.0 vs 50.0 ms" in latency.message
    slower = LatencyComparison("2", "1", 60.0, 40.0, rounds=7, workload="det page")
    assert not evaluate_gates(_v("2"), _v("1"), GateConfig(), latency=slower).passed
    paired = LatencyComparison("2", "1", 60.0, 40.0, rounds=7, workload="det page", paired_ratio=1.03)
    assert evaluate_gates(_v("2"), _v("1"), GateConfig(), latency=paired).passed  # the paired ratio decides
    broken = LatencyComparison("2", "1", rounds=7, error="RegistryError: no MLmodel file")
    latency = next(r for r in evaluate_gates(_v("2"), _v("1"), GateConfig(), latency=broken).results
                   if r.name == "latency")
    assert latency.passed and "side-by-side measurement unavailable: RegistryError" in latency.message


def test_interleaved_timing_takes_each_functions_median():
    import time

    from registry.latency import time_interleaved

    calls: list[str] = []

    def fast() -> None:
        calls.append("a")
        time.sleep(0.002)

    def slow() -> None:
        calls.append("b")
        time.sleep(0.012)

    a, b, ratio = time_interleaved(fast, slow, rounds=4, warmup=1)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]  # warm-up, then alternating order
    assert 1.5 < a < 8 and b > a + 5 and ratio < 0.7


def test_gate_report_is_json_serialisable():
    data = evaluate_gates(_v("2", metric=0.5), _v("1")).to_dict()
    assert json.loads(json.dumps(data))["results"][2]["name"] == "main_metric"


# ----------------------------------------------------------------------------------------------- config
def test_default_config_file_loads_with_documented_values():
    cfg = load_config()
    assert cfg.register is False
    assert cfg.names == {"det": "ocr-det", "rec": "ocr-rec"}
    assert (cfg.champion, cfg.challenger, cfg.previous) == ("champion", "challenger", "previous-champion")
    assert cfg.gates.main_metric == {"det": "hmean", "rec": "acc"}
    assert 0.0 <= cfg.canary_fraction <= 1.0


def test_config_rejects_unknown_keys_by_name(tmp_path):
    with pytest.raises(ValueError, match="gates: unknown key.*max_drop"):
        RegistryConfig.from_mapping({"gates": {"max_drop": 0.1}})
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.yaml")


def test_config_from_hydra_node():
    from omegaconf import OmegaConf

    cfg = RegistryConfig.from_mapping(OmegaConf.create({"register": True, "gates": {"max_metric_drop": 0.02}}))
    assert cfg.register and cfg.gates.max_metric_drop == 0.02 and cfg.gates.max_latency_increase_pct == 15.0


# ----------------------------------------------------------------------------------------------- canary
def test_router_fraction_and_pinning():
    router = CanaryRouter(0.25, seed=0)
    routes = [router.choose() for _ in range(4000)]
    assert 0.2 < routes.count("challenger") / len(routes) < 0.3
    assert router.choose("primary") == "primary" and router.choose("challenger") == "challenger"
    assert router.choose("challenger", challenger_available=False) == "primary"
    assert all(CanaryRouter(0.0).choose() == "primary" for _ in range(100))
    with pytest.raises(ValueError):
        CanaryRouter(1.5)


def test_canary_log_concurrent_appends_and_summary(tmp_path):
    log = tmp_path / "canary.jsonl"

    def writer(version: str) -> None:
        for i in range(50):
            append_record(log, {"version": version, "route": "primary", "images": 1, "errors": 0, "boxes": 2,
                                "latency_ms": 10.0 + i, "mean_score": 0.9})

    threads = [threading.Thread(target=writer, args=(v,)) for v in ("1", "2", "1")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary = summarize(log)
    assert summary["1"]["requests"] == 100 and summary["2"]["requests"] == 50
    assert summary["2"]["latency_ms_median"] == pytest.approx(34.5)
    assert summary["1"]["boxes_mean"] == 2.0


# ----------------------------------------------------------------------------------------------- inputs
def test_decode_inputs_base64_path_and_bad_items(tmp_path, page_image):
    import pandas as pd

    from registry.pyfunc_model import decode_inputs

    image, _ = page_image(["发票 123"], size=(320, 120))
    ok, buf = cv2.imencode(".png", image)
    b64 = base64.b64encode(buf.tobytes()).decode()
    path = tmp_path / "page.png"
    cv2.imwrite(str(path), image)
    frame = pd.DataFrame({"image": [b64, "data:image/png;base64," + b64, str(path), "not an image", ""]})
    decoded = decode_inputs(frame)
    assert [name for name, _ in decoded][:3] == ["#0", "#1", str(path)]
    for _, img in decoded[:3]:
        assert isinstance(img, np.ndarray) and img.shape == image.shape
    for _, err in decoded[3:]:
        assert err.code == "IMAGE_UNREADABLE"
    too_big = decode_inputs([b64], max_pixels=1000)[0][1]
    assert too_big.code == "IMAGE_TOO_LARGE"
    # a dict of lists (what MLflow makes of {"image": [...]}) and a bare string work too
    assert len(decode_inputs({"image": [b64, b64]})) == 2 and len(decode_inputs(b64)) == 1


# ----------------------------------------------------------------------------------------------- CLI parsing
def test_global_options_work_before_and_after_the_command():
    from registry.__main__ import build_parser

    parser = build_parser()
    assert parser.parse_args(["--tracking-uri", "A", "promote", "m", "1"]).tracking_uri == "A"
    assert parser.parse_args(["promote", "m", "1", "--tracking-uri", "B"]).tracking_uri == "B"
    args = parser.parse_args(["promote", "m", "3", "--as", "challenger", "--force", "--reason", "r"])
    assert (args.tracking_uri, args.target, args.force, args.reason) == (None, "challenger", True, "r")


# ----------------------------------------------------------------------------------------------- alias following
def test_alias_slot_swaps_atomically_keeps_serving_on_failure_and_refresher_ends_with_its_owner():
    import gc
    import time

    from registry.alias_follower import AliasRefresher, AliasSlot, Served

    pointed = {"version": "1"}
    loads: list[str] = []

    def resolve(name: str, alias: str):
        if pointed["version"] == "boom":
            raise ConnectionError("registry unreachable")
        return pointed["version"], [alias] if pointed["version"] else []

    def load(version: str) -> Served:
        loads.append(version)
        if version == "3":
            raise RuntimeError("broken artifacts")
        return Served(lambda _: [{"answer": version}], {"version": version})

    slot = AliasSlot("m", "champion", served=Served(lambda _: [{"answer": "1"}], {"version": "1"}),
                     resolve=resolve, load=load)
    assert slot.refresh() is False and loads == []              # unchanged: nothing loaded
    pointed["version"] = "2"
    in_flight = slot.current                                    # a request that started before the swap
    assert slot.refresh() is True and slot.current.version == "2"
    assert in_flight.predict(None) == [{"answer": "1"}]         # ... finishes on the version it read
    assert slot.current.identity["aliases"] == ["champion"]
    for bad in ("3", "boom", None):                             # load fails, registry down, alias deleted
        pointed["version"] = bad
        assert slot.refresh() is False and slot.current.version == "2"
    assert slot.last_error is not None and slot.swaps == 1

    challenger = AliasSlot("m", "challenger", served=None, resolve=resolve, load=load, keep_when_unset=False,
                           exclude=lambda: "2")
    pointed["version"] = "2"
    assert challenger.refresh() is False and challenger.current is None  # the primary's own version: no canary

    pointed["version"] = "4"
    refresher = AliasRefresher([slot], interval_s=0.05).start()
    deadline = time.monotonic() + 10
    while slot.current.version != "4" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert slot.current.version == "4"
    thread = refresher._thread
    del refresher
    gc.collect()
    thread.join(5)
    assert not thread.is_alive()  # dropped with its owner, not polling forever
