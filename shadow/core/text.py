"""Plain-string helpers shared by the evaluators: sentence splitting, length units, language.

Everything here is a pure function of a string, for Chinese and English alike.

>>> split_sentences("你好。今天天气不错！Is it? Yes.")
['你好。', '今天天气不错！', 'Is it?', 'Yes.']
>>> count_units("我用 Python 3 写了 2 个脚本")
10
>>> language_of("今天天气很好"), language_of("The weather is fine."), language_of("1234")
('zh', 'en', 'other')
"""

from __future__ import annotations

import re

# CJK Unified Ideographs, extension A, compatibility ideographs, and the supplementary planes (ext. B+).
HAN_CLASS = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
HAN_RE = re.compile(f"[{HAN_CLASS}]")

# Closing quotes and brackets that belong to the sentence they close: 他说：“走吧。”
_CLOSERS = "”’」』）)》〉】\"'"
# A Chinese terminator needs no following space; a run such as "……" or "？！" ends one sentence.
# An English terminator ends a sentence only before whitespace or the end, so "3.14" and "a.b" stay whole.
_SENTENCE_END_RE = re.compile(
    rf"(?:[。！？；…]+|(?:\.\.\.|[.!?;])+(?=[{_CLOSERS}]*(?:\s|$)))[{_CLOSERS}]*",
)
_FENCE_RE = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n.*?(?:^[ \t]*\1[ \t]*$|\Z)", re.MULTILINE | re.DOTALL)
# An ordered-list marker or a one-letter initial: its period does not end a sentence.
_LIST_MARKER_RE = re.compile(r"(?:[-*+>#]\s*)*(?:\d{1,3}|[A-Za-z]|[ivxIVX]{1,4})[.)]")
# A word of a non-Han script (letters or digits), allowing inner apostrophes, hyphens and decimal points.
_WORD_RE = re.compile(r"[^\W_]+(?:['’.\-][^\W_]+)*")


def split_sentences(text: str) -> list[str]:
    """Split Chinese and English text into sentences.

    Rules: 。！？；… (runs like …… or ？！ count once) end a sentence anywhere; ``.!?;`` end one only
    before whitespace or the end of the text; closing quotes and brackets stay with their sentence; a newline
    always ends a sentence; a fenced code block (```) is one unit. No sentence is empty, and the sentences
    joined back cover the text apart from whitespace.

    >>> split_sentences("他说：“走吧。”我们就走了……然后呢？")
    ['他说：“走吧。”', '我们就走了……', '然后呢？']
    >>> split_sentences("Pi is 3.14. Done")
    ['Pi is 3.14.', 'Done']
    >>> split_sentences("Code:\\n```py\\nx = 1. \\ny = 2\\n```\\nEnd.")
    ['Code:', '```py\\nx = 1. \\ny = 2\\n```', 'End.']
    """
    sentences: list[str] = []
    position = 0
    for fence in _FENCE_RE.finditer(text):
        sentences.extend(_split_prose(text[position : fence.start()]))
        block = fence.group(0).strip()
        if block:
            sentences.append(block)
        position = fence.end()
    sentences.extend(_split_prose(text[position:]))
    return sentences


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of `split_sentences(text)` in `text`, in order.

    >>> sentence_spans("一。二。")
    [(0, 2), (2, 4)]
    """
    spans: list[tuple[int, int]] = []
    cursor = 0
    for sentence in split_sentences(text):
        start = text.find(sentence, cursor)
        if start < 0:  # cannot happen: sentences are stripped substrings, in order
            start = cursor
        end = start + len(sentence)
        spans.append((start, end))
        cursor = end
    return spans


def _split_prose(text: str) -> list[str]:
    sentences: list[str] = []
    for line in text.splitlines():
        start = 0
        for end_match in _SENTENCE_END_RE.finditer(line):
            piece = line[start : end_match.end()].strip()
            if _LIST_MARKER_RE.fullmatch(piece):  # "1. First point" is one sentence, not two
                continue
            if piece:
                sentences.append(piece)
            start = end_match.end()
        tail = line[start:].strip()
        if tail:
            sentences.append(tail)
    return sentences


def han_count(text: str) -> int:
    """Number of Han (Chinese) characters."""
    return len(HAN_RE.findall(text))


def count_units(text: str) -> int:
    """Length in units: Han characters plus words of other scripts (numbers count as words).

    >>> count_units("Hello, world! 你好")
    4
    >>> count_units("")
    0
    """
    return han_count(text) + len(_WORD_RE.findall(HAN_RE.sub(" ", text)))


def han_ratio(text: str) -> float:
    """Share of Han characters among the letters of `text` (digits, punctuation, spaces not counted).

    >>> han_ratio("中文 ab")
    0.5
    >>> han_ratio("...")
    0.0
    """
    letters = sum(1 for char in text if char.isalpha())
    return han_count(text) / letters if letters else 0.0


def language_of(text: str, *, zh_threshold: float = 0.2, en_threshold: float = 0.5) -> str:
    """``"zh"``, ``"en"`` or ``"other"`` from the share of Han characters among letters.

    `zh_threshold` is low because Chinese technical answers quote many English words (one word is
    several letters but one Han character is one); `en_threshold` is the share of ASCII letters required
    for ``"en"`` when the text is not Chinese.

    >>> language_of("用 pandas 读取 CSV 文件")
    'zh'
    """
    letters = [char for char in text if char.isalpha()]
    if not letters:
        return "other"
    if han_count(text) / len(letters) >= zh_threshold:
        return "zh"
    ascii_letters = sum(1 for char in letters if char.isascii())
    return "en" if ascii_letters / len(letters) >= en_threshold else "other"
