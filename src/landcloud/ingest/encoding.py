"""Which text encoding a submission's attributes are in.

Chinese shapefiles are usually GBK without a `.cpg`; newer tools write UTF-8; GDAL falls back to
ISO-8859-1 when nothing is declared, which turns 哈尔滨市 into mojibake. So the order is: what the
user says > what the `.cpg` says > what the bytes say (read from the DBF's character fields,
streamed, never the whole file) > the DBF header's language driver id.

Every decision carries a bilingual sentence that says which encoding was chosen and why; it ends
up in the quality report.
"""

from __future__ import annotations

import codecs
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from landcloud.messages import Message

EncodingHow = Literal["cpg", "given", "detected", "ascii", "ldid"]

DEFAULT_SAMPLE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class EncodingDecision:
    """The encoding to read text attributes with, and why.

    `encoding` is a name both Python and GDAL (iconv) understand ("UTF-8", "GBK", "GB18030",
    "latin1", "CP1252", …). `uncertain` is True when the choice is a guess the user should check
    (a fallback, or declared bytes that do not decode).
    """

    encoding: str
    how: EncodingHow
    message_zh: str
    message_en: str
    uncertain: bool = False

    def to_message(self) -> Message:
        code = "encoding.uncertain" if self.uncertain else f"encoding.{self.how}"
        return Message(code, self.message_zh, self.message_en)


# --------------------------------------------------------------------------- code page names

_ALIASES: dict[str, str] = {
    "utf8": "UTF-8",
    "utf-8": "UTF-8",
    "utf_8": "UTF-8",
    "65001": "UTF-8",
    "cp65001": "UTF-8",
    "utf-8-sig": "UTF-8",
    "gbk": "GBK",
    "936": "GBK",
    "cp936": "GBK",
    "ms936": "GBK",
    "windows-936": "GBK",
    "ansi 936": "GBK",
    "gb2312": "GBK",  # GBK is a superset; reading GB2312 data as GBK is lossless
    "euc-cn": "GBK",
    "gb18030": "GB18030",
    "54936": "GB18030",
    "big5": "BIG5",
    "950": "BIG5",
    "cp950": "BIG5",
    "latin1": "latin1",
    "latin-1": "latin1",
    "iso-8859-1": "latin1",
    "iso8859-1": "latin1",
    "88591": "latin1",
    "28591": "latin1",
    "1252": "CP1252",
    "cp1252": "CP1252",
    "windows-1252": "CP1252",
    "ansi 1252": "CP1252",
}

# DBF "language driver id" (byte 29 of the header) → code page; only the ones we act on.
_LDID: dict[int, str] = {
    0x4D: "GBK",  # 936 Chinese (PRC) GBK
    0x7A: "GBK",  # 936 PRC GBK (Visual FoxPro)
    0x4F: "BIG5",  # 950 Chinese Big5
    0x78: "BIG5",  # 950 Big5 (Visual FoxPro)
    0x57: "CP1252",  # ANSI
    0x03: "CP1252",  # 1252 Windows ANSI
    0x01: "CP437",
    0x02: "CP850",
}


def normalize_encoding(name: str) -> str | None:
    """Map a code-page spelling to the name we use, or None when neither we nor Python know it."""
    raw = name.strip().strip("\x00").strip()
    if not raw:
        return None
    key = raw.lower()
    if key in _ALIASES:
        return _ALIASES[key]
    key_nospace = re.sub(r"\s+", "", key)
    if key_nospace in _ALIASES:
        return _ALIASES[key_nospace]
    if key_nospace.isdigit():
        # ESRI writes bare Windows code pages ("1251") and ISO parts ("88595")
        m = re.fullmatch(r"8859(\d{1,2})", key_nospace)
        candidates = [f"ISO-8859-{m.group(1)}"] if m else []
        candidates.append(f"CP{key_nospace}")
        for cand in candidates:
            try:
                codecs.lookup(cand)
                return cand
            except LookupError:
                continue
        return None
    try:
        info = codecs.lookup(raw)
    except LookupError:
        return None
    # the Python canonical name may differ from what iconv knows; keep common ones readable
    canonical = {"utf-8": "UTF-8", "gbk": "GBK", "gb18030": "GB18030", "gb2312": "GBK", "big5": "BIG5"}
    return canonical.get(info.name, raw)


def _find_sidecar(path: Path, ext: str) -> Path | None:
    """The file next to `path` with the same stem and extension `ext` (case-insensitive)."""
    path = Path(path)
    want = ext.lower()
    exact = path.with_suffix(ext)
    if exact.exists():
        return exact
    try:
        for sibling in path.parent.iterdir():
            if sibling.stem == path.stem and sibling.suffix.lower() == want and sibling.is_file():
                return sibling
        for sibling in path.parent.iterdir():
            if sibling.stem.lower() == path.stem.lower() and sibling.suffix.lower() == want and sibling.is_file():
                return sibling
    except OSError:
        return None
    return None


def find_dbf(shp_path: str | Path) -> Path | None:
    """The .dbf of a shapefile (any case of the extension), or None."""
    p = Path(shp_path)
    if p.suffix.lower() == ".dbf":
        return p if p.exists() else None
    return _find_sidecar(p, ".dbf")


def read_cpg(path: str | Path) -> str | None:
    """The encoding named by the `.cpg` next to a .shp/.dbf (or the .cpg itself), or None.

    None when there is no .cpg, or when it names a code page we do not know (then
    `read_cpg_raw` still tells what it said).
    """
    raw = read_cpg_raw(path)
    if raw is None:
        return None
    return normalize_encoding(raw)


def read_cpg_raw(path: str | Path) -> str | None:
    """The stripped text of the `.cpg` next to `path`, or None when there is none."""
    p = Path(path)
    cpg = p if p.suffix.lower() == ".cpg" else _find_sidecar(p, ".cpg")
    if cpg is None or not cpg.exists():
        return None
    try:
        data = cpg.read_bytes()[:256]
    except OSError:
        return None
    return data.decode("ascii", errors="replace").strip().strip("\x00").strip()


# --------------------------------------------------------------------------- byte classification

def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (
        0x4E00 <= o <= 0x9FFF
        or 0x3400 <= o <= 0x4DBF
        or 0x3000 <= o <= 0x303F  # CJK punctuation
        or 0xFF00 <= o <= 0xFFEF  # full-width forms
        or 0xF900 <= o <= 0xFAFF
        or 0x2E80 <= o <= 0x2FDF
        or 0x20000 <= o <= 0x3FFFF
    )


def _is_latin_letter(ch: str) -> bool:
    o = ord(ch)
    return (0xC0 <= o <= 0x24F) and o not in (0xD7, 0xF7)


def _decode_values(values: list[bytes], encoding: str) -> list[str] | None:
    """Decode each value strictly, tolerating only an incomplete sequence at its very end.

    DBF character fields are truncated at their byte width, which may cut a multi-byte
    character in two; that must not make the whole column look undecodable.
    """
    joined = b"\x00".join(values)
    try:
        return [joined.decode(encoding)]
    except UnicodeDecodeError:
        pass
    out: list[str] = []
    factory = codecs.getincrementaldecoder(encoding)
    for v in values:
        try:
            out.append(factory(errors="strict").decode(v, final=False))
        except UnicodeDecodeError:
            return None
    return out


@dataclass(frozen=True)
class _Guess:
    encoding: str | None  # None → undecided (neither UTF-8 nor GB18030)
    how: Literal["ascii", "detected"]
    detail_zh: str
    detail_en: str


def classify_bytes(values: Iterable[bytes]) -> _Guess:
    """Decide between ASCII / UTF-8 / GBK / GB18030 from sample byte strings.

    Each item is one text value (a DBF cell, a CSV chunk). Returns encoding None when neither
    UTF-8 nor GB18030 decodes the bytes.
    """
    vals = [v for v in values if v]
    if all(v.isascii() for v in vals):
        return _Guess("UTF-8", "ascii", "文本全部为 ASCII 字符，按 UTF-8 读取", "all text is ASCII; reading as UTF-8")
    non_ascii = [v for v in vals if not v.isascii()]
    utf8 = _decode_values(non_ascii, "utf-8")
    gb = _decode_values(non_ascii, "gb18030")
    if utf8 is not None:
        utf8_chars = [c for s in utf8 for c in s if ord(c) > 0x7F]
        two_byte = [c for c in utf8_chars if ord(c) < 0x800]
        prefer_gb = False
        if two_byte and gb is not None:
            # GBK bytes can happen to be valid UTF-8 for a character or two (录 = C2 BC = "¼").
            # Prefer GB when its reading is all Chinese and the UTF-8 reading is not plain
            # accented Latin text.
            gb_chars = [c for s in gb for c in s if ord(c) > 0x7F]
            gb_all_cjk = bool(gb_chars) and all(_is_cjk(c) for c in gb_chars)
            utf8_all_latin = all(_is_latin_letter(c) for c in utf8_chars)
            utf8_has_cjk = any(_is_cjk(c) for c in utf8_chars)
            prefer_gb = gb_all_cjk and not utf8_all_latin and not utf8_has_cjk
        if not prefer_gb:
            return _Guess("UTF-8", "detected", "按字节检测为 UTF-8 编码", "detected UTF-8 from the bytes")
    if gb is not None:
        if _decode_values(non_ascii, "gbk") is not None:
            return _Guess("GBK", "detected", "按字节检测为 GBK 编码", "detected GBK from the bytes")
        return _Guess(
            "GB18030",
            "detected",
            "按字节检测为 GB18030 编码（含 GBK 以外的字符）",
            "detected GB18030 from the bytes (characters outside GBK)",
        )
    return _Guess(None, "detected", "字节既不是 UTF-8 也不是 GBK/GB18030", "the bytes are neither UTF-8 nor GBK/GB18030")


def _fallback(ldid: int | None, detail_zh: str, detail_en: str) -> EncodingDecision:
    if ldid is not None and ldid in _LDID:
        enc = _LDID[ldid]
        return EncodingDecision(
            enc,
            "ldid",
            f"{detail_zh}；按 DBF 文件头的语言驱动标识（0x{ldid:02X}）使用 {enc} 编码，中文属性可能显示为乱码，请核对或用 --encoding 指定",
            f"{detail_en}; using {enc} from the DBF language driver id (0x{ldid:02X}); text may be garbled, "
            "check it or give --encoding",
            uncertain=True,
        )
    return EncodingDecision(
        "latin1",
        "detected",
        f"{detail_zh}；无法确定编码，按 latin1 读取，中文属性可能显示为乱码，请用 --encoding 指定编码",
        f"{detail_en}; could not tell the encoding, reading as latin1; text may be garbled, give --encoding",
        uncertain=True,
    )


# --------------------------------------------------------------------------- DBF

@dataclass(frozen=True)
class DbfField:
    name_bytes: bytes
    type: str
    offset: int  # within the record, after the deletion flag byte
    length: int


@dataclass(frozen=True)
class DbfHeader:
    version: int
    record_count: int
    header_length: int
    record_length: int
    ldid: int
    fields: tuple[DbfField, ...]


def read_dbf_header(dbf_path: str | Path) -> DbfHeader:
    """Parse a dBASE III/IV header (as used by shapefiles). Raises ValueError when malformed."""
    with open(dbf_path, "rb") as f:
        head = f.read(32)
        if len(head) < 32:
            raise ValueError("DBF header shorter than 32 bytes")
        version = head[0]
        record_count, header_length, record_length = struct.unpack("<IHH", head[4:12])
        ldid = head[29]
        if header_length < 33 or record_length < 1:
            raise ValueError("DBF header/record length out of range")
        desc = f.read(header_length - 32)
    fields: list[DbfField] = []
    offset = 1  # byte 0 of every record is the deletion flag
    for i in range(0, len(desc) - 31, 32):
        d = desc[i : i + 32]
        if d[0] == 0x0D:
            break
        name = d[:11].split(b"\x00", 1)[0]
        ftype = chr(d[11])
        length = d[16]
        if ftype == "C" and version in (0x30, 0x31, 0xF5, 0x8B):  # FoxPro: decimals byte extends width
            length += d[17] << 8
        fields.append(DbfField(name, ftype, offset, length))
        offset += length
    return DbfHeader(version, record_count, header_length, record_length, ldid, tuple(fields))


def _dbf_sample(dbf_path: Path, header: DbfHeader, sample_bytes: int) -> list[bytes]:
    """Field names and character-field values from the first records, up to `sample_bytes`."""
    values: list[bytes] = [f.name_bytes for f in header.fields]
    char_fields = [f for f in header.fields if f.type in ("C", "V")]
    if not char_fields or header.record_count == 0:
        return values
    rec_len = header.record_length
    per_chunk = max(1, (1 << 20) // rec_len)
    total = 0
    read_records = 0
    with open(dbf_path, "rb") as f:
        f.seek(header.header_length)
        while read_records < header.record_count and total < sample_bytes:
            n = min(per_chunk, header.record_count - read_records)
            chunk = f.read(n * rec_len)
            if not chunk:
                break
            got = len(chunk) // rec_len
            for r in range(got):
                rec = chunk[r * rec_len : (r + 1) * rec_len]
                if rec[:1] == b"*":  # deleted
                    continue
                for fld in char_fields:
                    v = rec[fld.offset : fld.offset + fld.length].rstrip(b" \x00")
                    if v:
                        values.append(v)
                        total += len(v)
                if total >= sample_bytes:
                    return values
            read_records += got
            if got < n:
                break
    return values


def detect_dbf_encoding(dbf_path: str | Path, sample_bytes: int = DEFAULT_SAMPLE_BYTES) -> EncodingDecision:
    """Detect the encoding of a DBF from its field names and character fields (streamed)."""
    dbf_path = Path(dbf_path)
    try:
        header = read_dbf_header(dbf_path)
    except (OSError, ValueError, struct.error) as exc:
        return _fallback(None, f"无法读取 DBF 文件头（{exc}）", f"cannot read the DBF header ({exc})")
    values = _dbf_sample(dbf_path, header, sample_bytes)
    guess = classify_bytes(values)
    if guess.encoding is None:
        return _fallback(
            header.ldid or None,
            "DBF 字符字段的字节既不是 UTF-8 也不是 GBK/GB18030",
            "the DBF character bytes are neither UTF-8 nor GBK/GB18030",
        )
    return EncodingDecision(
        guess.encoding,
        guess.how,
        guess.detail_zh.replace("按字节", "按 DBF 字节").replace("文本全部", "DBF 文本全部"),
        guess.detail_en.replace("from the bytes", "from the DBF bytes").replace("all text", "all DBF text"),
    )


def _check_declared(decision: EncodingDecision, dbf: Path | None, sample_bytes: int) -> EncodingDecision:
    """Warn when declared bytes do not decode with the declared encoding."""
    if dbf is None:
        return decision
    try:
        header = read_dbf_header(dbf)
        values = [v for v in _dbf_sample(dbf, header, sample_bytes) if not v.isascii()]
    except (OSError, ValueError, struct.error):
        return decision
    if not values:
        return decision
    try:
        ok = _decode_values(values, decision.encoding) is not None
    except LookupError:
        ok = True  # a code page Python does not know but GDAL may
    if ok:
        return decision
    return EncodingDecision(
        decision.encoding,
        decision.how,
        decision.message_zh + f"；但 DBF 中部分字节不是有效的 {decision.encoding}，部分属性可能为乱码",
        decision.message_en + f"; but some DBF bytes are not valid {decision.encoding}, some text may be garbled",
        uncertain=True,
    )


def decide_shapefile_encoding(
    shp_path: str | Path, given: str | None, sample_bytes: int = DEFAULT_SAMPLE_BYTES
) -> EncodingDecision:
    """given > .cpg > detection from the DBF bytes > DBF LDID > latin1."""
    shp_path = Path(shp_path)
    dbf = find_dbf(shp_path)
    if given:
        enc = normalize_encoding(given)
        if enc is None:
            raise ValueError(f"unknown encoding: {given!r}")
        return _check_declared(
            EncodingDecision(enc, "given", f"按指定的编码 {enc} 读取属性", f"reading attributes as {enc}, as given"),
            dbf,
            sample_bytes,
        )
    raw_cpg = read_cpg_raw(shp_path)
    prefix_zh, prefix_en = "未找到 .cpg 文件，", "no .cpg file; "
    if raw_cpg is not None:
        enc = normalize_encoding(raw_cpg)
        if enc is not None:
            return _check_declared(
                EncodingDecision(enc, "cpg", f"按 .cpg 文件（{raw_cpg}）使用 {enc} 编码", f"using {enc} from the .cpg file ({raw_cpg})"),
                dbf,
                sample_bytes,
            )
        prefix_zh = f".cpg 文件内容“{raw_cpg}”不是可识别的编码，"
        prefix_en = f"the .cpg says {raw_cpg!r}, which is not a known code page; "
    if dbf is None:
        return EncodingDecision(
            "UTF-8", "ascii", prefix_zh + "且没有 .dbf 属性文件，按 UTF-8 处理", prefix_en + "no .dbf attribute file; assuming UTF-8"
        )
    d = detect_dbf_encoding(dbf, sample_bytes)
    return EncodingDecision(d.encoding, d.how, prefix_zh + d.message_zh, prefix_en + d.message_en, d.uncertain)


# --------------------------------------------------------------------------- plain text (CSV)

UTF8_BOM = b"\xef\xbb\xbf"


def detect_text_encoding(path: str | Path, given: str | None = None, sample_bytes: int = DEFAULT_SAMPLE_BYTES) -> EncodingDecision:
    """Encoding of a text file such as CSV: given > BOM > byte test on the first `sample_bytes`."""
    path = Path(path)
    if given:
        enc = normalize_encoding(given)
        if enc is None:
            raise ValueError(f"unknown encoding: {given!r}")
        return EncodingDecision(enc, "given", f"按指定的编码 {enc} 读取", f"reading as {enc}, as given")
    with open(path, "rb") as f:
        head = f.read(sample_bytes)
    if head.startswith(UTF8_BOM):
        return EncodingDecision("UTF-8", "detected", "文件以 UTF-8 BOM 开头，按 UTF-8 读取", "the file starts with a UTF-8 BOM; reading as UTF-8")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return EncodingDecision("UTF-16", "detected", "文件以 UTF-16 BOM 开头，按 UTF-16 读取", "the file starts with a UTF-16 BOM; reading as UTF-16")
    # lines as values; the last one may be cut by the sample boundary (tolerated by the decoder)
    values = head.split(b"\n")
    guess = classify_bytes(values)
    if guess.encoding is None:
        return _fallback(None, "文件字节既不是 UTF-8 也不是 GBK/GB18030", "the file's bytes are neither UTF-8 nor GBK/GB18030")
    return EncodingDecision(guess.encoding, guess.how, guess.detail_zh, guess.detail_en)
