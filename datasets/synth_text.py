"""Built-in text corpus and random string generators for synthetic OCR data.

Why built in: synthetic data must be generated offline and reproducibly (tests, demo, CI), so the words live
here rather than in a downloaded corpus. Every character used is in PaddleOCR's ``ppocr_keys_v1`` (checked by
``tests/test_synth.py``), so the recogniser's charset can label everything generated.

Generators take a ``numpy.random.Generator`` and return one line of text; :func:`make_text` picks one for a
language (``ch``, ``en``, ``mixed``) and kind (``scene``, ``invoice``, ``shifted``).

A second text mode, ``random-rare`` (:func:`random_rare_text`), is the charset-extension "hard set": 3-8
characters drawn uniformly from :func:`rare_pool`, ~3,000 dictionary characters the corpus never uses, so a
recogniser can lean neither on word context nor on characters it has just been fine-tuned on.
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np

__all__ = ["CH_WORDS", "EN_WORDS", "LANGS", "KINDS", "TEXT_MODES", "RARE_POOL_SIZE", "RARE_LENGTH", "make_text",
           "GENERATORS", "corpus_chars", "rare_pool", "random_rare_text"]

LANGS = ("ch", "en", "mixed")
KINDS = ("scene", "invoice", "shifted")
#: what a line's text is made of: the word corpus (``make_text``) or random rare characters (``random_rare_text``)
TEXT_MODES = ("corpus", "random-rare")
RARE_POOL_SIZE = 3000
RARE_LENGTH = (3, 8)  # characters per random-rare line, inclusive

# Common invoice / shipping / shop / street words (Simplified Chinese).
CH_WORDS: tuple[str, ...] = tuple("""
增值税 专用发票 普通发票 电子发票 发票代码 发票号码 开票日期 校验码 购买方 销售方 名称 纳税人识别号 地址 电话
开户行 账号 货物 服务 规格型号 单位 数量 单价 金额 税率 税额 合计 价税合计 大写 小写 备注 收款人 复核 开票人
销售单位 盖章 密码区 机器编号 快递 物流 运单号 收件人 寄件人 联系电话 详细地址 邮政编码 重量 件数 运费 保价
代收货款 签收 派送 中转 到付 寄付 包裹 仓库 出库 入库 订单 订单号 商品 条形码 批次 生产日期 保质期 有效期 产地
超市 便利店 餐厅 饭店 咖啡 奶茶 面包 水果 蔬菜 药店 银行 医院 学校 酒店 宾馆 书店 花店 理发 洗衣 停车场 加油站
地铁站 公交站 出口 入口 禁止吸烟 小心地滑 营业时间 欢迎光临 谢谢惠顾 优惠 特价 折扣 会员 积分 现金 微信 支付宝
找零 收银员 小票 流水号 人民路 中山路 解放路 建设路 和平街 东大街 西大街 南京路 北京路 长江路 黄河路 世纪大道
科技园 工业园 大厦 广场 中心 社区 小区 街道 公司 有限公司 股份有限公司 集团 分公司 办事处 工厂 门店 总店
上海 北京 广州 深圳 杭州 南京 成都 武汉 西安 重庆 天津 苏州 长沙 郑州 青岛 厦门 合肥 福州 济南 昆明
电子 科技 贸易 实业 发展 投资 管理 咨询 服务部 维修 安装 工程 材料 设备 配件 办公用品 日用品 食品 饮料 服装
""".split())

EN_WORDS: tuple[str, ...] = tuple("""
invoice total amount tax date order number shipping address phone customer service receipt cash change
open closed welcome exit entrance parking hotel coffee tea bread market pharmacy bank station street road
avenue center plaza tower express delivery package weight price quantity item unit payment card balance
discount member points store office hours daily fresh special sale new free limited quality
""".split())

_SURNAMES = tuple("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤")
_GIVEN = tuple("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍鹏辉建国文红梅林斌宇浩凯")
_ROAD_NAMES = ("人民", "中山", "解放", "建设", "和平", "长江", "黄河", "南京", "北京", "文化", "新华", "光明")
_ROAD_SUFFIXES = ("路", "街", "大道", "巷")
#: gen_invoice_field's labels, indexed by its form draw (the order is part of the seeded output)
_FIELD_LABELS = ("金额", "开票日期", "发票号码", "价税合计", "收件人", "运单号", "税率", "数量")
#: the CJK units written inside the generators' format strings (house number, dates, yuan)
_FORMAT_UNITS = "号年月日元"
_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
_DIGITS = "0123456789"

Gen = Callable[[np.random.Generator], str]


def _pick(rng: np.random.Generator, seq) -> str:
    return seq[int(rng.integers(len(seq)))]


def _digits(rng: np.random.Generator, n: int) -> str:
    return "".join(_DIGITS[int(d)] for d in rng.integers(0, 10, size=n))


def _money(rng: np.random.Generator) -> str:
    value = float(np.round(10 ** rng.uniform(0, 5.5), 2))
    text = f"{value:,.2f}" if rng.random() < 0.6 else f"{value:.2f}"
    return text


def gen_ch_phrase(rng: np.random.Generator) -> str:
    n = int(rng.choice([1, 1, 2, 2, 3]))
    return "".join(_pick(rng, CH_WORDS) for _ in range(n))


def gen_en_phrase(rng: np.random.Generator) -> str:
    words = [_pick(rng, EN_WORDS) for _ in range(int(rng.integers(1, 4)))]
    case = rng.random()
    if case < 0.3:
        words = [w.upper() for w in words]
    elif case < 0.6:
        words = [w.capitalize() for w in words]
    return " ".join(words)


def gen_amount(rng: np.random.Generator) -> str:
    form = int(rng.integers(5))
    money = _money(rng)
    return (f"¥{money}", f"￥{money}", f"{money}元", f"RMB {money}", f"${money}")[form]


def gen_amount_en(rng: np.random.Generator) -> str:
    money = _money(rng)
    return (f"${money}", f"USD {money}", f"Total: {money}", f"¥{money}")[int(rng.integers(4))]


def gen_date(rng: np.random.Generator) -> str:
    y, m, d = int(rng.integers(2015, 2031)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    form = int(rng.integers(5))
    return (f"{y}-{m:02d}-{d:02d}", f"{y}/{m:02d}/{d:02d}", f"{y}年{m}月{d}日", f"{y}.{m:02d}.{d:02d}",
            f"{y}年{m:02d}月{d:02d}日")[form]


def gen_date_en(rng: np.random.Generator) -> str:
    y, m, d = int(rng.integers(2015, 2031)), int(rng.integers(1, 13)), int(rng.integers(1, 29))
    return (f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{y}.{m:02d}.{d:02d}")[int(rng.integers(3))]


def gen_code(rng: np.random.Generator) -> str:
    form = int(rng.integers(6))
    if form == 0:  # invoice number
        return f"No.{_digits(rng, 8)}"
    if form == 1:  # express tracking number
        return _pick(rng, ("SF", "YT", "ZTO", "JD")) + _digits(rng, int(rng.integers(10, 14)))
    if form == 2:  # unified social credit code (18 chars)
        return _digits(rng, 2) + _digits(rng, 6) + "".join(_pick(rng, _LETTERS + _DIGITS) for _ in range(10))
    if form == 3:  # order id
        return f"ORD-{int(rng.integers(2018, 2031))}-{_digits(rng, 5)}"
    if form == 4:  # phone
        return f"1{_pick(rng, '35789')}{_digits(rng, 1)}-{_digits(rng, 4)}-{_digits(rng, 4)}"
    return _digits(rng, int(rng.integers(4, 13)))


def gen_number(rng: np.random.Generator) -> str:
    form = int(rng.integers(4))
    if form == 0:
        return str(int(rng.integers(0, 100000)))
    if form == 1:
        return f"{rng.uniform(0, 1000):.{int(rng.integers(1, 3))}f}"
    if form == 2:
        return f"{int(rng.integers(1, 100))}%"
    return f"x{int(rng.integers(1, 50))}"


def gen_street(rng: np.random.Generator) -> str:
    road = _pick(rng, _ROAD_NAMES)
    suffix = _pick(rng, _ROAD_SUFFIXES)
    return f"{road}{suffix}{int(rng.integers(1, 999))}号"


def gen_name(rng: np.random.Generator) -> str:
    return _pick(rng, _SURNAMES) + "".join(_pick(rng, _GIVEN) for _ in range(int(rng.integers(1, 3))))


def gen_invoice_field(rng: np.random.Generator) -> str:
    colon = _pick(rng, ("：", ":", " "))
    form = int(rng.integers(len(_FIELD_LABELS)))
    label = _FIELD_LABELS[form] + colon
    if form == 0:
        return label + gen_amount(rng)
    if form == 1:
        return label + gen_date(rng)
    if form == 2:
        return label + _digits(rng, 8)
    if form == 3:
        return f"{label}¥{_money(rng)}"
    if form == 4:
        return label + gen_name(rng)
    if form == 5:
        return label + gen_code(rng)
    if form == 6:
        return label + _pick(rng, ("3%", "6%", "9%", "13%"))
    return f"{label}{int(rng.integers(1, 500))}"


GENERATORS: dict[str, Gen] = {
    "ch_phrase": gen_ch_phrase, "en_phrase": gen_en_phrase, "amount": gen_amount, "amount_en": gen_amount_en,
    "date": gen_date, "date_en": gen_date_en, "code": gen_code, "number": gen_number, "street": gen_street,
    "name": gen_name, "invoice_field": gen_invoice_field,
}

# (generator, weight) mixtures per (lang, kind)
_MIX: dict[tuple[str, str], tuple[tuple[str, float], ...]] = {
    ("ch", "scene"): (("ch_phrase", 5), ("street", 1.5), ("name", 0.5), ("amount", 1), ("date", 1), ("number", 1)),
    ("en", "scene"): (("en_phrase", 5), ("amount_en", 1), ("date_en", 1), ("code", 1), ("number", 1.5)),
    ("mixed", "scene"): (("ch_phrase", 4), ("en_phrase", 2), ("street", 1), ("amount", 1), ("date", 1),
                         ("code", 1), ("number", 1)),
    ("ch", "invoice"): (("invoice_field", 4), ("ch_phrase", 2), ("amount", 1.5), ("date", 1), ("code", 1)),
    ("en", "invoice"): (("amount_en", 2), ("date_en", 1.5), ("code", 2), ("en_phrase", 1.5), ("number", 1)),
    ("mixed", "invoice"): (("invoice_field", 3), ("amount", 2), ("date", 1.5), ("code", 1.5), ("ch_phrase", 1),
                           ("en_phrase", 0.5)),
    # the "shifted distribution": almost only amounts, dates and codes
    ("ch", "shifted"): (("amount", 3), ("date", 2), ("invoice_field", 2), ("code", 1)),
    ("en", "shifted"): (("amount_en", 3), ("date_en", 2), ("code", 2)),
    ("mixed", "shifted"): (("amount", 3), ("date", 2), ("code", 2), ("invoice_field", 1.5), ("amount_en", 0.5)),
}


def make_text(rng: np.random.Generator, lang: str = "mixed", kind: str = "scene", max_chars: int | None = None) -> str:
    """One line of text for ``lang`` × ``kind`` (``max_chars`` truncates, keeping it non-empty)."""
    if lang not in LANGS:
        raise ValueError(f"lang must be one of {LANGS}, got {lang!r}")
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    mix = _MIX[(lang, kind)]
    weights = np.array([w for _, w in mix], dtype=np.float64)
    name = mix[int(rng.choice(len(mix), p=weights / weights.sum()))][0]
    text = GENERATORS[name](rng).strip()
    if max_chars is not None and len(text) > max_chars:
        cut = text[:max_chars + 1].rfind(" ")  # prefer whole words
        text = text[:cut].strip() if cut > 0 else text[:max_chars].strip()
    return text


# ---------------------------------------------------------------------------------------------- random-rare
def _is_cjk_ideograph(ch: str) -> bool:
    """CJK Unified Ideographs (U+4E00-U+9FFF): the block ppocr_keys_v1's Chinese characters live in."""
    return len(ch) == 1 and 0x4E00 <= ord(ch) <= 0x9FFF


def corpus_chars() -> frozenset[str]:
    """Every CJK character the word corpus can produce (words, names, and the generators' own literals)."""
    text = "".join(CH_WORDS + _SURNAMES + _GIVEN + _ROAD_NAMES + _ROAD_SUFFIXES + _FIELD_LABELS) + _FORMAT_UNITS
    return frozenset(ch for ch in text if _is_cjk_ideograph(ch))


@functools.lru_cache(maxsize=1)
def rare_pool() -> tuple[str, ...]:
    """The fixed pool of :data:`RARE_POOL_SIZE` characters random-rare lines are drawn from.

    Candidates: the CJK ideographs of ``ppocr_keys_v1`` (the PP-OCRv4 rec dict) that every bundled font face
    renders (the Noto CJK SC faces :func:`datasets.fonts.available_fonts` gives without system fonts, so the
    pool does not depend on what else the machine has installed) and that the word corpus never uses.
    Selection: sorted by code point, then evenly spaced picks over the whole range. Why this way: Unicode
    orders CJK ideographs by radical and stroke count, so even spacing spreads the pool over all radicals
    instead of a few radical groups, and it needs no character-frequency table (nothing to download). "Rare"
    here means rare in what the fine-tuning data shows the model: the corpus lines never contain them, so
    the hard set measures the whole dictionary the pretrained model knew, not the few hundred characters the
    synthetic training lines repeat.
    """
    from datasets.charset import Charset
    from datasets.fonts import available_fonts

    fonts = available_fonts(include_system=False)
    excluded = corpus_chars()
    candidates = sorted({ch for ch in Charset.default().chars if _is_cjk_ideograph(ch) and ch not in excluded
                         and all(f.covers(ch) for f in fonts)})
    if len(candidates) < RARE_POOL_SIZE:
        raise ValueError(f"only {len(candidates)} dictionary characters are renderable and outside the corpus; "
                         f"the random-rare pool needs {RARE_POOL_SIZE}")
    step = len(candidates) / RARE_POOL_SIZE
    return tuple(candidates[int(i * step)] for i in range(RARE_POOL_SIZE))


def random_rare_text(rng: np.random.Generator) -> str:
    """3-8 characters drawn uniformly (with replacement) from :func:`rare_pool`: no word context at all."""
    pool = rare_pool()
    n = int(rng.integers(RARE_LENGTH[0], RARE_LENGTH[1] + 1))
    return "".join(pool[int(i)] for i in rng.integers(0, len(pool), size=n))
