"""Recognition metric: Chinese-safe normalisation, width folding, spaces, length buckets, worst-k, merging."""
from __future__ import annotations

import numpy as np
import pytest

from training.metrics import NormalizeConfig, RecMetric, normalize_text


def test_chinese_text_survives_normalisation():
    for cfg in [NormalizeConfig(), NormalizeConfig(fold_width=False, spaces="keep"), NormalizeConfig(casefold=True)]:
        assert normalize_text("增值税发票 金额¥1234.56", cfg).replace(" ", "") == "增值税发票金额¥1234.56"
    metric = RecMetric(NormalizeConfig())
    metric.update(["增值税发票", "增值税发漂"], ["增值税发票", "增值税发票"])
    r = metric.compute()
    assert r["acc"] == 0.5
    # second line: 1 substitution out of 5 characters -> distance 0.2; mean (0 + 0.2) / 2
    assert r["norm_edit_dis"] == pytest.approx(1 - 0.1)


def test_fullwidth_folding_on_and_off():
    on = RecMetric(NormalizeConfig(fold_width=True))
    on.update(["ＡＢＣ１２３"], ["ABC123"])
    assert on.compute()["acc"] == 1.0
    off = RecMetric(NormalizeConfig(fold_width=False))
    off.update(["ＡＢＣ１２３"], ["ABC123"])
    r = off.compute()
    assert r["acc"] == 0.0 and r["norm_edit_dis"] == pytest.approx(0.0)  # all 6 characters differ
    # Chinese punctuation in full width folds only under fold_width; 。 has no narrow form and stays
    assert normalize_text("你好，世界。", NormalizeConfig()) == "你好,世界。"
    assert normalize_text("｡", NormalizeConfig()) == "。"  # half-width CJK full stop -> normal form


def test_space_handling():
    pred, truth = "hello  world ", "hello world"
    ignore = RecMetric(NormalizeConfig(spaces="ignore"))
    ignore.update([pred, "helloworld"], [truth, truth])
    assert ignore.compute()["acc"] == 1.0
    collapse = RecMetric(NormalizeConfig(spaces="collapse"))
    collapse.update([pred, "helloworld"], [truth, truth])
    assert collapse.compute()["acc"] == 0.5
    keep = RecMetric(NormalizeConfig(spaces="keep"))
    keep.update([pred], [truth])
    r = keep.compute()
    # "hello  world " vs "hello world": 2 deletions over max length 13
    assert r["acc"] == 0.0 and r["norm_edit_dis"] == pytest.approx(1 - 2 / 13)
    # ideographic space folds to a plain space, then collapses
    assert normalize_text("金额\u3000合计", NormalizeConfig(spaces="collapse")) == "金额 合计"
    with pytest.raises(ValueError):
        NormalizeConfig(spaces="strip")


def test_case_folding_off_by_default():
    default = RecMetric()
    default.update(["abc"], ["ABC"])
    assert default.compute()["acc"] == 0.0
    folded = RecMetric(NormalizeConfig(casefold=True))
    folded.update(["abc"], ["ABC"])
    assert folded.compute()["acc"] == 1.0


def test_normalisation_recorded_in_output():
    cfg = NormalizeConfig(fold_width=False, spaces="collapse", casefold=True)
    assert RecMetric(cfg).compute()["normalization"] == {"fold_width": False, "spaces": "collapse", "casefold": True}
    assert RecMetric({"spaces": "keep"}).normalize == NormalizeConfig(spaces="keep")
    with pytest.raises(TypeError):
        NormalizeConfig.from_dict({"is_filter": True})


def test_per_length_buckets():
    metric = RecMetric()
    truths = ["abc", "abcd", "abcdef", "a" * 20, "b" * 40]
    preds = ["abc", "abce", "abcdef", "a" * 19, "b" * 40]
    metric.update(preds, truths)
    per = metric.compute()["per_length"]
    assert per["1-4"] == {"num": 2, "acc": 0.5}
    assert per["5-8"] == {"num": 1, "acc": 1.0}
    assert per["9-16"] == {"num": 0, "acc": None}
    assert per["17-32"] == {"num": 1, "acc": 0.0}
    assert per["33+"] == {"num": 1, "acc": 1.0}
    assert "0" not in per
    metric.update(["x"], [" "])  # truth normalises to "" -> bucket "0"
    assert metric.compute()["per_length"]["0"] == {"num": 1, "acc": 0.0}


def test_worst_k_with_keys_and_tuple_predictions():
    metric = RecMetric()
    metric.update(
        [("abcd", 0.9), ("abxd", 0.8), ("zzzz", 0.3), ("abcdefgh", 0.7)],
        ["abcd", "abcd", "abcd", "abcdefgx"],
        keys=["ok.jpg", "one.jpg", "all.jpg", "long.jpg"],
    )
    worst = metric.worst(2)
    assert [w["key"] for w in worst] == ["all.jpg", "one.jpg"]  # distances 4/4, 1/4 (long: 1/8)
    assert worst[0]["edit_distance"] == 4 and worst[0]["norm_edit_distance"] == 1.0
    assert worst[0]["truth"] == "abcd" and worst[0]["pred"] == "zzzz" and worst[0]["score"] == 0.3
    assert [w["key"] for w in metric.worst(10)] == ["all.jpg", "one.jpg", "long.jpg"]  # correct lines excluded


def test_empty_metric():
    r = RecMetric().compute()
    assert r["acc"] == 0.0 and r["norm_edit_dis"] == 0.0 and r["num"] == 0


def test_state_merge_for_data_parallel():
    truths = ["增值税", "abc", "hello world", "12345"]
    preds = ["增值税", "abd", "hello world", "1234"]
    whole = RecMetric()
    whole.update(preds, truths)
    a, b = RecMetric(), RecMetric()
    a.update(preds[:2], truths[:2])
    b.update(preds[2:], truths[2:])
    summed = a.state() + b.state()
    assert summed.dtype == np.float64
    from_state, expected = RecMetric().merge(summed).compute(), whole.compute()
    assert from_state["norm_edit_dis"] == pytest.approx(expected["norm_edit_dis"])
    assert {k: v for k, v in from_state.items() if k != "norm_edit_dis"} == {
        k: v for k, v in expected.items() if k != "norm_edit_dis"
    }
    merged = RecMetric().merge(a).merge(b)
    assert merged.compute()["acc"] == whole.compute()["acc"] == 0.5
    assert merged.compute()["norm_edit_dis"] == pytest.approx(whole.compute()["norm_edit_dis"])
    assert len(merged.worst(10)) == 2
    with pytest.raises(ValueError):
        RecMetric(NormalizeConfig(spaces="keep")).merge(a)
