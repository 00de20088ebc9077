"""The token sequences the loop detector (`evaluators.loop`) works on, for a batch of texts at once.

A token is one Han character, one run of letters and digits (a word, "2024年") or one other non-space
character, exactly what `TOKEN_RE` finds: the Han alternative comes first, so each Han character at the
start of a run is a token of its own, and from the run's first other letter on, the rest of the run is one
token ("中文abc中" gives "中", "文", "abc中"). Running that expression costs more than everything else the
detector does (a string per Han character), so characters are classified through a table of the Basic
Multilingual Plane instead (the str predicates `re` uses for ``\\s`` and ``[^\\W_]``) and only word tokens
are cut out as strings; a one-character token is keyed by its code point. The texts of a batch are joined
by newlines and tokenized in one pass: array operations cost little per element and much per call.

Every token also carries the zone of its first character (`PROSE`, `CODE` inside fences or a shell
session, `TABLE`, `LIST`, by the start of its line): legitimate repetition lives in code, tables and lists.

>>> tokens = tokenize(["中文abc中 x_1", "- 谢谢"])
>>> tokens.bounds.tolist(), tokens.starts.tolist(), tokens.zone.tolist()
([0, 6, 9], [0, 1, 2, 7, 8, 9, 0, 2, 3], [0, 0, 0, 0, 0, 0, 3, 3, 3])
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from shadow.core.text import HAN_CLASS

TOKEN_RE = re.compile(rf"[{HAN_CLASS}]|[^\W_]+|\S")
_DIGITS_RE = re.compile(r"\d+")
_FENCE_LINE_RE = re.compile(r"^[ \t]*(```|~~~)", re.MULTILINE)
# Table rows and rules, markdown or box-drawn (│ ├ ┌ ...).
_TABLE_LINE_RE = re.compile(r"^[ \t]*[|+\u2500-\u257f].*$", re.MULTILINE)
# List items: siblings legitimately share a template ("- /var/lib/dpkg/info/x.postinst", "- ...x.preinst").
_LIST_LINE_RE = re.compile(r"^[ \t]*(?:[-*+•·]|\d{1,3}[.)、]|[（(]\d{1,3}[）)])[ \t].*$", re.MULTILINE)
# A paragraph with a shell prompt line ("$ ls -li foo") holds commands and their output.
_SHELL_BLOCK_RE = re.compile(r"(?:^|\n[ \t]*\n)((?:(?![ \t]*\n).*\n)*?[ \t]*\$ .*(?:\n(?![ \t]*\n).*)*)")
# Characters that make separator lines and ellipses: long runs of them are layout, not a loop.
SEPARATOR_CHARS = frozenset("-=_*~—–─━·.…#+|/\\<>•")

PROSE, CODE, TABLE, LIST = 0, 1, 2, 3

_HAN_RANGES = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x3134F))
_BMP = 0x10000
_WORD_KEYS = 0x110000  # one-character tokens are keyed by their code point, words from here on


@dataclass(frozen=True, slots=True)
class Tokens:
    """The tokens of a batch of texts one after another: text t's are `bounds[t]` to `bounds[t + 1]`."""

    bounds: np.ndarray
    exact: np.ndarray  # token ids: equal ids, equal tokens
    digitless: np.ndarray  # ids of the tokens with digit runs normalised to "0", in the same numbering
    content: np.ndarray  # bool: Han character or word (not punctuation)
    numeric: np.ndarray  # bool: a word that is only digits
    separator: np.ndarray  # bool: one of `SEPARATOR_CHARS`
    zone: np.ndarray  # PROSE, CODE, TABLE or LIST
    starts: np.ndarray  # character offsets in the token's own text
    ends: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.bounds)

    def text_of(self) -> np.ndarray:
        """The text each token belongs to."""
        return np.repeat(np.arange(len(self.bounds) - 1), self.lengths)

    def first_appearance_ids(self, first: int, last: int) -> np.ndarray:
        """Exact ids of the tokens `first`..`last` of one text, numbered by first appearance in its
        sequence token 0, its digit-normalised form, token 1, ... (what the compression check renumbers
        by); `first` and `last` index the batch."""
        text = int(np.searchsorted(self.bounds, first, side="right")) - 1
        begin = int(self.bounds[text])
        interleaved = np.empty(2 * (last + 1 - begin), dtype=np.int64)
        interleaved[0::2], interleaved[1::2] = self.exact[begin : last + 1], self.digitless[begin : last + 1]
        _, first_index, inverse = np.unique(interleaved, return_index=True, return_inverse=True)
        rank = np.empty(len(first_index), dtype=np.int64)
        rank[np.argsort(first_index)] = np.arange(len(first_index))
        return rank[inverse[2 * (first - begin) :: 2]]


# Character classes, one bit each; str.isalnum is what `re` means by [^\W_], str.isspace by \s.
_SPACE, _WORD, _LATIN, _DIGIT, _CONTENT, _SEPARATOR, _TABLE_MARK = 1, 2, 4, 8, 16, 32, 64
# _LATIN: a word character that is not Han; _DIGIT: str.isdigit; _CONTENT: word or Han (a Han code point
# not assigned yet is no word character); _TABLE_MARK: "|", "+" or box drawing, what table lines start with.


def tokenize(texts: Sequence[str]) -> Tokens:
    joined = "\n".join(texts)  # a newline ends every token and every line, as the end of a text does
    text_starts = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum([len(text) + 1 for text in texts], out=text_starts[1:])
    codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    flags = _char_flags(codes)
    word = (flags & _WORD) != 0
    # Inside a run of word characters, a character continues the token before it once the run has had a
    # letter that is not Han.
    positions = np.arange(len(codes))
    last_latin = np.maximum.accumulate(np.where(flags & _LATIN, positions, -1))
    last_break = np.maximum.accumulate(np.where(word, -1, positions))
    continues = np.zeros(len(codes) + 1, dtype=bool)
    continues[1:-1] = word[1:] & (last_latin > last_break)[:-1]
    boundaries = (~continues).nonzero()[0]  # where a token or a space begins, and the end
    token_at = ((flags[boundaries[:-1]] & _SPACE) == 0).nonzero()[0]
    starts, ends = boundaries[token_at], boundaries[token_at + 1]
    bounds = starts.searchsorted(text_starts)
    text_begins = np.repeat(text_starts[:-1], np.diff(bounds))
    first_flags = flags[starts]
    digits = np.zeros(len(codes) + 1, dtype=np.int64)
    ((flags & _DIGIT) != 0).cumsum(out=digits[1:])
    digit_count = digits[ends] - digits[starts]
    exact, digitless = _token_ids(codes, continues, starts, (first_flags & _LATIN) != 0, digit_count > 0)
    zones = _zones_of_chars(joined, texts, text_starts, bool((flags & _TABLE_MARK).any()))
    return Tokens(
        bounds,
        exact,
        digitless,
        (first_flags & _CONTENT) != 0,
        digit_count == ends - starts,
        (first_flags & _SEPARATOR) != 0,
        zones[starts],
        starts - text_begins,
        ends - text_begins,
    )


def _token_ids(
    codes: np.ndarray, continues: np.ndarray, starts: np.ndarray, is_word: np.ndarray, has_digit: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Keys in one numbering for the tokens and their digit-normalised forms: the code point of a
    one-character token, a number past all code points for a word (only words hold digits)."""
    exact = codes[starts].astype(np.int64)
    word_at = is_word.nonzero()[0]
    if not word_at.size:
        return exact, exact
    # The words' characters with every other character made a space, split in C.
    in_word = continues[:-1].copy()
    in_word[starts[word_at]] = True
    spaced = np.where(in_word, codes, np.uint32(ord(" "))).astype(np.uint32)
    words = spaced.tobytes().decode("utf-32-le", "surrogatepass").split()
    with_digits = has_digit[word_at].nonzero()[0].tolist()  # str.isdigit holds wherever \d matches
    normalised = {index: _DIGITS_RE.sub("0", words[index]) for index in with_digits}
    changed = [index for index, form in normalised.items() if form != words[index]]
    vocabulary = [*words, *(normalised[index] for index in changed)]
    distinct = dict.fromkeys(vocabulary)
    numbering = dict(zip(distinct, range(_WORD_KEYS, _WORD_KEYS + len(distinct)), strict=True))
    keys = np.fromiter(map(numbering.__getitem__, vocabulary), dtype=np.int64, count=len(vocabulary))
    exact[word_at] = keys[: len(words)]
    if not changed:
        return exact, exact
    digitless = exact.copy()
    digitless[word_at[changed]] = keys[len(words) :]
    return exact, digitless


def _zones_of_chars(joined: str, texts: Sequence[str], text_starts: np.ndarray, tables: bool) -> np.ndarray:
    """PROSE, CODE (inside ``` fences or a shell session), TABLE or LIST (by the start of the line) for
    every character of the joined texts; later kinds override earlier ones. List and table lines are found
    in one pass (a line never spans two texts); sessions and fences span lines, so they are found text by
    text, in the texts that hold their marks."""
    zones = np.full(len(joined) + 1, PROSE, dtype=np.int8)
    for list_line in _LIST_LINE_RE.finditer(joined):
        zones[list_line.start() : list_line.end()] = LIST
    if tables:
        for table_line in _TABLE_LINE_RE.finditer(joined):
            zones[table_line.start() : table_line.end()] = TABLE
    shells = [index for index, text in enumerate(texts) if "$ " in text]
    fenced = [index for index, text in enumerate(texts) if "```" in text or "~~~" in text]
    for index in shells:
        offset = int(text_starts[index])
        for block in _SHELL_BLOCK_RE.finditer(texts[index]):  # an unfenced terminal session and its output
            zones[offset + block.start() : offset + block.end()] = CODE
    for index in fenced:
        offset, text = int(text_starts[index]), texts[index]
        fences = [match.start() for match in _FENCE_LINE_RE.finditer(text)]
        fences.append(len(text))  # an unclosed fence runs to the end
        for opening, closing in zip(fences[0:-1:2], fences[1::2], strict=False):
            zones[offset + opening : offset + closing] = CODE
    return zones


def _char_flags(codes: np.ndarray) -> np.ndarray:
    table = _bmp_flags()
    if not codes.size or codes.max() < _BMP:
        return table.take(codes)
    flags = table.take(np.minimum(codes, _BMP - 1))
    astral = (codes >= _BMP).nonzero()[0]  # emoji, rare Han: few enough to classify one by one
    flags[astral] = _flags_of(codes[astral])
    return flags


@cache
def _bmp_flags() -> np.ndarray:
    return _flags_of(np.arange(_BMP, dtype=np.uint32))


def _flags_of(codes: np.ndarray) -> np.ndarray:
    chars = list(map(chr, codes.tolist()))

    def where(predicate: Callable[[str], bool]) -> np.ndarray:
        return np.fromiter(map(predicate, chars), dtype=bool, count=len(chars))

    han = np.zeros(len(chars), dtype=bool)
    for low, high in _HAN_RANGES:
        han |= (codes >= low) & (codes <= high)
    word = where(str.isalnum)
    table_mark = np.isin(codes, [ord("|"), ord("+")]) | ((codes >= 0x2500) & (codes <= 0x257F))
    flags = np.zeros(len(chars), dtype=np.uint8)
    for flag, members in (
        (_SPACE, where(str.isspace)),
        (_WORD, word),
        (_LATIN, word & ~han),
        (_DIGIT, where(str.isdigit)),
        (_CONTENT, word | han),
        (_SEPARATOR, np.isin(codes, [ord(char) for char in SEPARATOR_CHARS])),
        (_TABLE_MARK, table_mark),
    ):
        flags[members] |= flag
    return flags
