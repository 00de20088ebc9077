"""Personal data out before anything is stored: e-mail addresses, phone numbers, Chinese resident IDs and
bank card numbers become typed placeholders such as ``[PHONE]``.

Pure string work, no I/O. The patterns are written for mixed Chinese/English text: Han characters count
as word characters, so ``\\b`` never fires between ``号是`` and ``138...``; digit lookarounds
(``(?<!\\d)``, ``(?!\\d)``) mark where a number starts and ends instead.

Numbers that merely look like IDs or cards are checked before they are replaced (ISO 7064 check digit and
birth date for IDs, Luhn for cards), so order numbers, prices and years survive.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from typing import Any

PLACEHOLDERS = {
    "email": "[EMAIL]",
    "phone": "[PHONE]",
    "cn_id": "[CN_ID]",
    "bank_card": "[BANK_CARD]",
}
"""Every kind of personal data we know, with the text that replaces it."""

KINDS = tuple(PLACEHOLDERS)

# Applied in this order whatever order the caller names them in. Placeholders contain no digits and no
# "@", so text replaced by an earlier rule can never be matched again by a later one: one span, one label.
# - e-mail first: "13812345678@qq.com" is an address, not a phone number followed by junk;
# - CN ID before bank card: an 18-digit ID may pass the Luhn check by chance and must stay an ID;
# - bank card before phone: a phone rule could otherwise take 11 digits out of a grouped card number.
_ORDER = ("email", "cn_id", "bank_card", "phone")

# A number must not continue a longer number on either side, nor be the fractional part of a decimal
# ("13812345678.5", "0.13812345678").
_NUM_START = r"(?<!\d)(?<!\d\.)"
_NUM_END = r"(?!\d)(?!\.\d)"

# Possessive quantifiers (``++``) keep a long run of letters without "@" or "." from backtracking.
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])"
    r"[A-Za-z0-9._%+-]++"
    r"@"
    r"(?:[A-Za-z0-9-]++\.)+[A-Za-z]{2,63}"
    r"(?![A-Za-z0-9-])"
)

_CN_ID = re.compile(_NUM_START + r"[1-9]\d{16}[\dXx]" + r"(?![\dXx])(?!\.\d)")

# Contiguous 13-19 digits, or the groupings printed on cards: 4-4-4-4 (up to a fifth group of 1-3 digits
# for 19-digit UnionPay cards), 4-4-4-1..3 for short ones, and Amex/Diners 4-6-5 / 4-6-4. Each grouped
# form uses one separator throughout, and must not be the middle of a longer run of groups.
_BANK_CARD = re.compile(
    _NUM_START
    + r"(?<!\d[ -])"
    + r"(?:"
    + r"\d{13,19}(?![\dXx])"
    + r"|\d{4}(?P<sep>[ -])\d{4}(?P=sep)\d{4}(?P=sep)(?:\d{4}(?:(?P=sep)\d{1,3})?|\d{1,3})(?![ -]?\d)"
    + r"|\d{4}(?P<amex_sep>[ -])\d{6}(?P=amex_sep)\d{4,5}(?![ -]?\d)"
    + r")"
    + r"(?!\.\d)"
)

_PHONE_PATTERNS = (
    # Mainland-China mobile: 1[3-9] and nine more digits, optionally +86 / 86 / 0086 in front and grouped
    # 3-4-4 by spaces or dashes.
    re.compile(r"(?<![\d+])(?<!\d\.)" + r"(?:(?:\+|00)?86[ -]?)?" + r"1[3-9]\d(?:[ -]?\d{4}){2}" + _NUM_END),
    # Mainland-China landline with its area code: 010-12345678, 0755-1234567. The dash is required, so
    # a bare run of digits is left to the other rules.
    re.compile(_NUM_START + r"(?<!-)0[1-9]\d{1,2}-[2-9]\d{6,7}" + r"(?![\d-])(?!\.\d)"),
    # International E.164 written with a leading "+": "+44 20 7946 0958", "+44 (0)20 7946 0958",
    # "+49-30-1234567". Digits are counted afterwards (8-15), which keeps "+1 2" and similar arithmetic
    # out. Possessive quantifiers: a long run of digit groups cannot make the engine backtrack.
    re.compile(r"(?<![0-9A-Za-z+])\+[1-9]\d*+(?:[ .-]?\(\d++\) ?\d++|[ .-]\d++)*+" + _NUM_END),
    # North-American numbers with separators: (415) 555-0132, 415-555-0132, 415.555.0132, +1 415 555 0132.
    # Area code and exchange start with 2-9 (NANP), which also spares most dashed order numbers.
    re.compile(
        r"(?<![\d.-])"
        + r"(?:\+?1[ .-]?)?"
        + r"(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .-])"
        + r"[2-9]\d{2}[ .-]\d{4}"
        + r"(?![\d-])(?!\.\d)"
    ),
)

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK_CHARS = "10X98765432"
_EARLIEST_BIRTH = date(1900, 1, 1)


def cn_id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character for the first 17 digits of a resident ID."""
    total = sum(int(digit) * weight for digit, weight in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK_CHARS[total % 11]


def is_valid_cn_id(text: str, *, today: date | None = None) -> bool:
    """An 18-character resident ID whose check character is right and whose birth date could be real."""
    if len(text) != 18 or not text[:17].isdecimal():
        return False
    if cn_id_check_char(text[:17]) != text[17].upper():
        return False
    try:
        birth = date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return False
    return _EARLIEST_BIRTH <= birth <= (today or date.today())


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum that every payment card number satisfies."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _digits(text: str) -> str:
    return "".join(char for char in text if char.isdecimal())


def _is_bank_card(text: str) -> bool:
    digits = _digits(text)
    # Payment cards start with 2-6 (Mastercard 2-series, Amex/JCB/Diners 3, Visa 4, Mastercard 5,
    # UnionPay/Discover 6). Checking it spares millisecond timestamps ("1700000000000") and other ids that
    # pass Luhn by chance, as one number in ten does. A run of one repeated digit is filler, not a card.
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and len(set(digits)) > 1 and luhn_ok(digits)


def _is_phone(text: str) -> bool:
    return 8 <= len(_digits(text)) <= 15


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: re.Pattern[str]
    placeholder: str
    accept: Callable[[str], bool] | None = None

    def apply(self, text: str) -> str:
        if self.accept is None:
            return self.pattern.sub(self.placeholder, text)
        accept = self.accept
        return self.pattern.sub(
            lambda match: self.placeholder if accept(match.group(0)) else match.group(0), text
        )


def _rules_for(kind: str) -> list[_Rule]:
    placeholder = PLACEHOLDERS[kind]
    if kind == "email":
        return [_Rule(_EMAIL, placeholder)]
    if kind == "cn_id":
        return [_Rule(_CN_ID, placeholder, is_valid_cn_id)]
    if kind == "bank_card":
        return [_Rule(_BANK_CARD, placeholder, _is_bank_card)]
    return [_Rule(pattern, placeholder, _is_phone) for pattern in _PHONE_PATTERNS]


class Redactor:
    """Replaces the configured kinds of personal data with typed placeholders.

    >>> Redactor(["phone"]).redact("我的手机号是13812345678，请联系")
    '我的手机号是[PHONE]，请联系'
    """

    def __init__(self, kinds: Iterable[str]) -> None:
        requested = tuple(dict.fromkeys(kinds))
        unknown = [kind for kind in requested if kind not in PLACEHOLDERS]
        if unknown:
            raise ValueError(
                f"unknown redaction kind(s) {', '.join(map(repr, unknown))}; "
                f"valid kinds are {', '.join(KINDS)} (an empty list turns redaction off)"
            )
        self._kinds = tuple(kind for kind in _ORDER if kind in requested)
        self._rules = [rule for kind in self._kinds for rule in _rules_for(kind)]

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds this redactor replaces, in the order it applies them."""
        return self._kinds

    def redact(self, text: str) -> str:
        for rule in self._rules:
            text = rule.apply(text)
        return text

    def redact_obj(self, obj: Any) -> Any:
        """A copy of a JSON-like value with every string in it redacted; keys and non-strings are kept.

        Keys stay as they are because they are the request's structure ("role", "content"), not user text.
        """
        if not self._rules:
            return obj
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, dict):
            return {key: self.redact_obj(value) for key, value in obj.items()}
        if isinstance(obj, list):
            return [self.redact_obj(item) for item in obj]
        if isinstance(obj, tuple):
            return tuple(self.redact_obj(item) for item in obj)
        return obj
