"""How personal fields are shown to callers without a grant that unmasks them.

Stdlib only. A display helper must never leak and should not crash a listing, so nothing here
validates: a value that does not look like what its kind expects is masked whole.

Kinds (`Attribute.mask` in the layer specs):

| kind | example | shown |
|---|---|---|
| `id_number` | 210402199005171234 | 210402********1234 (area code and last 4) |
| `name` | 张三丰 / John Smith | 张** / J*** |
| `phone` | 13812341234 | 138****1234 (first 3 and last 4) |
| `date` | 1990-05-17 | 1990-**-** (the year) |
| `secret` | rtsp://user:pw@… | *** (nothing; also what `None` means) |
"""

from __future__ import annotations

import datetime

__all__ = ["MASK_KINDS", "SECRET_MASK", "mask_resident_id", "mask_name", "mask_phone",
           "mask_date", "mask_value", "check_mask_kind", "MASK_SQL", "mask_sql", "SMALL_COUNT"]

MASK_KINDS = frozenset({"id_number", "name", "phone", "date", "secret"})
SECRET_MASK = "***"
# Small-count suppression: a published aggregate of persons below this (and above 0) is
# withheld, in every statistic and process (a count of 1 in a small area is a person).
SMALL_COUNT = 3


def _text(s: object, what: str) -> str:
    if not isinstance(s, str):
        # A ValueError, like layers.codes.CodeError which these functions raised before the move.
        raise ValueError(f"{what}: expected a string, got {type(s).__name__}")
    return s.strip()


def mask_resident_id(s: str) -> str:
    """Keep area code and last 4 ('210402********123X'). Does not validate, so flagged or
    first-generation (15-digit) numbers can still be displayed; anything else is masked whole,
    because a display helper must never leak and should not crash a listing."""
    s = _text(s, "resident id").upper()
    if len(s) in (15, 18):
        return s[:6] + "*" * (len(s) - 10) + s[-4:]
    return "*" * len(s)


def _is_cjk(ch: str) -> bool:
    o = ord(ch)
    return (0x3400 <= o <= 0x4DBF or 0x4E00 <= o <= 0x9FFF or 0xF900 <= o <= 0xFAFF
            or 0x20000 <= o <= 0x3134F)


def mask_name(s: str) -> str:
    """'张三丰' -> '张**'; 'John Smith' -> 'J***'. Compound surnames keep only their first
    character too; a one-character name is masked whole (keeping it would show all of it)."""
    s = _text(s, "name")
    if not s:
        return ""
    if any(_is_cjk(ch) for ch in s):
        return "*" if len(s) == 1 else s[0] + "*" * (len(s) - 1)
    # Fixed-width mask for latin names: the length of a latin name says more than the length
    # of a 2-4 character Chinese one.
    return s[0] + "***"


def mask_phone(s: str) -> str:
    """'13812341234' -> '138****1234': first 3 and last 4 kept. Shorter than 8 characters
    (where that would show most of it) -> masked whole."""
    s = _text(s, "phone")
    if len(s) < 8:
        return "*" * len(s)
    return s[:3] + "*" * (len(s) - 7) + s[-4:]


def mask_date(value: object) -> str:
    """A date (or ISO date/timestamp text) -> 'YYYY-**-**'; anything else -> '***'."""
    if isinstance(value, (datetime.date, datetime.datetime)):
        return f"{value.year:04d}-**-**"
    if isinstance(value, str):
        s = value.strip()
        if len(s) >= 4 and s[:4].isascii() and s[:4].isdigit() and (len(s) == 4 or s[4] == "-"):
            return f"{s[:4]}-**-**"
    return SECRET_MASK


def check_mask_kind(kind: str | None) -> str:
    """The effective kind ('secret' for None); ValueError for an unknown kind, so a typo in a
    layer spec fails when the composition root registers it, not as a leak."""
    if kind is None:
        return "secret"
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {kind!r} (known: {', '.join(sorted(MASK_KINDS))})")
    return kind


def mask_value(kind: str | None, value: object) -> object:
    """Mask one value by kind. None stays None (absence is not personal); None as the kind
    means 'secret'. Non-text values of the text kinds are masked as their str()."""
    kind = check_mask_kind(kind)
    if value is None:
        return None
    if kind == "secret":
        return SECRET_MASK
    if kind == "date":
        return mask_date(value)
    text = value if isinstance(value, str) else str(value)
    if kind == "id_number":
        return mask_resident_id(text)
    if kind == "name":
        return mask_name(text)
    return mask_phone(text)


# SQL twins of mask_value, for masking inside a query (one template per kind, `{c}` the column
# expression, meant for psycopg.sql.SQL(...).format(c=...)). NULL stays NULL, as in Python.
_CJK_RE = r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]"
_T = "btrim(({c})::text)"
MASK_SQL: dict[str, str] = {
    "id_number": (f"case when char_length({_T}) in (15, 18) then left(upper({_T}), 6)"
                  f" || repeat('*', char_length({_T}) - 10) || right(upper({_T}), 4)"
                  f" else repeat('*', char_length({_T})) end"),
    "name": (f"case when {_T} = '' then ''"
             f" when {_T} ~ '{_CJK_RE}' then case when char_length({_T}) = 1 then '*'"
             f" else left({_T}, 1) || repeat('*', char_length({_T}) - 1) end"
             f" else left({_T}, 1) || '***' end"),
    "phone": (f"case when char_length({_T}) < 8 then repeat('*', char_length({_T}))"
              f" else left({_T}, 3) || repeat('*', char_length({_T}) - 7) || right({_T}, 4) end"),
    # for date/timestamp columns (the layers store dates as `date`)
    "date": "to_char({c}, 'YYYY') || '-**-**'",
    "secret": "case when ({c}) is null then null else '***' end",
}


def mask_sql(kind: str | None) -> str:
    """The SQL template masking a column of `kind` (None = secret); `{c}` is the column."""
    return MASK_SQL[check_mask_kind(kind)]
