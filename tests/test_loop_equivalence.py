"""The batched loop detector (`evaluators.loop` and its `loop_*` helpers) against a straightforward reference.

The reference below is the detector as it was written before it was vectorised: one text at a time, the
token regular expression, and a Python loop over every period and every n-gram. It is kept here, and only
here, as the definition the fast code must match: on real text from `tests/corpora.py` with loops injected
(sentences, paragraphs, runaways, counters, varying words, numbered lists, tables, code, separators),
results must be identical, bit for bit: flag, span, score, reason and period.
"""

from __future__ import annotations

import random
import re
import zlib
from collections import defaultdict
from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

from evaluators.loop import LoopResult, LoopThresholds, loop_score, loop_scores
from evaluators.loop_tokens import tokenize
from shadow.core.text import HAN_RE, split_sentences
from tests import corpora

# ---------------------------------------------------------------- the reference, one text at a time

TOKEN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]|[^\W_]+|\S")
DIGITS_RE = re.compile(r"\d+")
FENCE_LINE_RE = re.compile(r"^[ \t]*(```|~~~)", re.MULTILINE)
TABLE_LINE_RE = re.compile(r"^[ \t]*[|+\u2500-\u257f].*$", re.MULTILINE)
LIST_LINE_RE = re.compile(r"^[ \t]*(?:[-*+•·]|\d{1,3}[.)、]|[（(]\d{1,3}[）)])[ \t].*$", re.MULTILINE)
SHELL_BLOCK_RE = re.compile(r"(?:^|\n[ \t]*\n)((?:(?![ \t]*\n).*\n)*?[ \t]*\$ .*(?:\n(?![ \t]*\n).*)*)")
SEPARATOR_CHARS = frozenset("-=_*~—–─━·.…#+|/\\<>•")
PROSE, CODE, TABLE, LIST = 0, 1, 2, 3


@dataclass(frozen=True)
class Tokens:
    texts: list[str]
    exact: np.ndarray
    digitless: np.ndarray
    content: np.ndarray
    numeric: np.ndarray
    zone: np.ndarray
    starts: np.ndarray
    ends: np.ndarray


@dataclass(frozen=True)
class Finding:
    strength: float
    first: int
    last: int
    reason: str
    period: int | None = None


def reference_loop_score(text: str, finish_reason: str | None, limits: LoopThresholds) -> LoopResult:
    tokens = reference_tokenize(text)
    if len(tokens.exact) < 2:
        return LoopResult(0.0, False, None)
    at_length_limit = finish_reason == "length"
    findings = periodic(tokens, limits, at_length_limit)
    if limits.fuzzy_match is not None:
        findings.extend(fuzzy_periodic(tokens, limits, at_length_limit))
    if limits.ngram_density is not None:
        findings.extend(ngrams(tokens, limits))
    if not findings:
        return LoopResult(0.0, False, None)
    best = max(findings, key=lambda finding: finding.strength)
    score = best.strength / (1.0 + best.strength)
    if best.strength < 1.0:
        return LoopResult(score, False, None)
    first = best.first
    while first < best.last and not tokens.content[first] and tokens.content[first : best.last + 1].any():
        first += 1
    return LoopResult(
        score, True, (int(tokens.starts[first]), int(tokens.ends[best.last])), best.reason, best.period
    )


def reference_tokenize(text: str) -> Tokens:
    zones = np.full(len(text) + 1, PROSE, dtype=np.int8)
    for line in LIST_LINE_RE.finditer(text):
        zones[line.start() : line.end()] = LIST
    for line in TABLE_LINE_RE.finditer(text):
        zones[line.start() : line.end()] = TABLE
    for block in SHELL_BLOCK_RE.finditer(text):
        zones[block.start() : block.end()] = CODE
    fences = [match.start() for match in FENCE_LINE_RE.finditer(text)] + [len(text)]
    for opening, closing in zip(fences[0:-1:2], fences[1::2], strict=False):
        zones[opening:closing] = CODE
    ids: dict[str, int] = {}
    columns: list[list] = [[] for _ in range(8)]
    for match in TOKEN_RE.finditer(text):
        token = match.group(0)
        for column, value in zip(
            columns,
            (
                token,
                ids.setdefault(token, len(ids)),
                ids.setdefault(DIGITS_RE.sub("0", token), len(ids)),
                token[0].isalnum() or bool(HAN_RE.match(token)),
                token.isdigit(),
                zones[match.start()],
                match.start(),
                match.end(),
            ),
            strict=True,
        ):
            column.append(value)
    texts, *arrays = columns
    dtypes = (np.int64, np.int64, bool, bool, np.int8, np.int64, np.int64)
    return Tokens(
        texts, *(np.asarray(values, dtype=dtype) for values, dtype in zip(arrays, dtypes, strict=True))
    )


def periodic(tokens: Tokens, limits: LoopThresholds, at_length_limit: bool) -> list[Finding]:
    n = len(tokens.exact)
    findings = []
    for ids, digit_normalised in ((tokens.exact, False), (tokens.digitless, True)):
        for period in range(1, min(limits.max_period_units, n // 2) + 1):
            run = longest_true_run(ids[period:] == ids[:-period])
            if run is None or run[1] - run[0] < period:
                continue
            first, last = run[0], run[1] + period - 1
            zone = zone_of_region(tokens, first, last)
            if digit_normalised and zone in (CODE, TABLE):
                continue
            strength = period_strength(tokens, limits, first, last, period, zone, at_length_limit)
            pattern = slice(first, first + period)
            if digit_normalised and (tokens.content[pattern] & ~tokens.numeric[pattern]).sum() < 3:
                continue
            findings.append(
                Finding(strength, first, last, "numbered-period" if digit_normalised else "period", period)
            )
    return findings


def period_strength(
    tokens: Tokens,
    limits: LoopThresholds,
    first: int,
    last: int,
    period: int,
    zone: int,
    at_length_limit: bool,
) -> float:
    covered = last - first + 1
    count = covered / period
    count_needed, units_needed = limits.min_count, float(limits.min_loop_units)
    if zone in (CODE, TABLE):
        count_needed, units_needed = limits.code_min_count, float(limits.code_min_loop_units)
    pattern = slice(first, first + period)
    if not tokens.content[pattern].any() and all(token in SEPARATOR_CHARS for token in tokens.texts[pattern]):
        units_needed = max(units_needed, limits.min_symbol_units)
    if at_length_limit and last == len(tokens.exact) - 1:
        count_needed *= limits.length_relief
        units_needed *= limits.length_relief
    strength = min(count / count_needed, covered / units_needed)
    distinct = len({tokens.texts[i] for i in range(first, first + period) if tokens.content[i]})
    if zone not in (CODE, TABLE) and distinct >= 3:
        content_units = int(tokens.content[first : last + 1].sum())
        sentence = min(count / limits.short_sentence_count, content_units / limits.short_sentence_content)
        strength = max(strength, sentence)
    return strength


def fuzzy_periodic(tokens: Tokens, limits: LoopThresholds, at_length_limit: bool) -> list[Finding]:
    assert limits.fuzzy_match is not None
    n, ids = len(tokens.digitless), tokens.digitless
    findings = []
    for period in range(
        limits.fuzzy_min_period, min(limits.max_period_units, int(n / limits.fuzzy_min_count)) + 1
    ):
        window = int(round((limits.fuzzy_min_count - 1) * period))
        same = (ids[period:] == ids[:-period]) & tokens.content[period:]
        if same.sum() < limits.fuzzy_match * window / 2:
            continue
        matched = np.concatenate(([0], np.cumsum(same)))
        content = np.concatenate(([0], np.cumsum(tokens.content[period:])))
        matched, content = matched[window:] - matched[:-window], content[window:] - content[:-window]
        rate = matched / np.maximum(content, 1)
        run = longest_true_run((rate >= limits.fuzzy_match) & (content >= window / 2))
        if run is None:
            continue
        first, last = run[0], run[1] - 1 + window - 1 + period
        if zone_of_region(tokens, first, last) != PROSE:
            continue
        match = float(rate[run[0] : run[1]].mean()) / limits.fuzzy_match
        content_units = int(tokens.content[first : last + 1].sum())
        relief = limits.length_relief if at_length_limit and last == n - 1 else 1.0
        strength = min(match, content_units / (limits.min_loop_units * relief))
        if len({tokens.texts[i] for i in range(first, first + period) if tokens.content[i]}) >= 3:
            strength = max(strength, min(match, content_units / limits.short_sentence_content))
        findings.append(Finding(strength, first, last, "near-period", period))
    return findings


def zone_of_region(tokens: Tokens, first: int, last: int) -> int:
    zones, content = tokens.zone[first : last + 1], tokens.content[first : last + 1]
    return int(np.bincount(zones[content] if content.any() else zones).argmax())


def longest_true_run(mask: np.ndarray) -> tuple[int, int] | None:
    if not mask.any():
        return None
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
    longest = int(np.argmax(edges[1::2] - edges[0::2]))
    return int(edges[0::2][longest]), int(edges[1::2][longest])


def ngrams(tokens: Tokens, limits: LoopThresholds) -> list[Finding]:
    assert limits.ngram_density is not None
    ngram, threshold, window = limits.ngram, limits.ngram_density, limits.min_loop_units
    n = len(tokens.digitless)
    if n < window + ngram:
        return []
    ids = tokens.digitless.tolist()
    eligible = (tokens.zone == PROSE) & tokens.content
    seen: dict[tuple[int, ...], list[int]] = defaultdict(list)
    repeated = np.zeros(n, dtype=np.float64)
    origin = np.arange(n)
    for position in range(n - ngram + 1):
        gram = tuple(ids[position : position + ngram])
        recent = [start for start in seen[gram] if position - start <= 4 * window * ngram]
        if len(recent) >= limits.ngram_min_earlier and eligible[position : position + ngram].any():
            repeated[position] = 1.0
            origin[position] = recent[0]
        recent.append(position)
        seen[gram] = recent[-4:]
    density = np.convolve(repeated, np.ones(window) / window, mode="valid")
    run = longest_true_run(density >= threshold)
    if run is None:
        return []
    first, last = run[0], min(n - 1, run[1] - 1 + window - 1)
    strength = min(float(density[run[0] : run[1]].mean()) / threshold, (last - first + 1) / window)
    first = int(origin[first : last + 1].min())
    if limits.min_compression_gain is not None:
        strength = min(
            strength, compression_gain(tokens.exact[first : last + 1]) / limits.min_compression_gain
        )
    return [Finding(strength, first, last, "repeated-ngrams")]


def compression_gain(ids: np.ndarray) -> float:
    _, renumbered = np.unique(ids, return_inverse=True)
    raw = renumbered.astype(np.uint16).tobytes()
    half = len(raw) // 4 * 2
    whole, first_half, second_half = (len(zlib.compress(part, 9)) for part in (raw, raw[:half], raw[half:]))
    return float(np.clip(1.0 - (whole - first_half) / second_half, 0.0, 1.0))


# ---------------------------------------------------------------- texts: real answers, loops injected


@cache
def _sources() -> tuple[list[str], list[str], list[str]]:
    try:
        zh = corpora.people_daily_paragraphs(min_chars=40)
        en = corpora.debian_reference_paragraphs("en", min_chars=80)
        structured = [
            section
            for language in ("zh-cn", "en")
            for section in corpora.debian_reference_sections(language)
            if section.count("\n|") >= 4 or section.count("\n  * ") >= 3 or "\n$ " in section
        ]
    except corpora.CorpusMissing as missing:
        pytest.skip(str(missing))
    return zh, en, structured


def generated_texts(seed: int, count: int) -> list[tuple[str, str | None]]:
    """`count` texts with finish reasons: untouched answers and answers with a loop of some kind."""
    zh, en, structured = _sources()
    code = corpora.stdlib_functions(limit=60)
    rng = random.Random(seed)
    texts: list[tuple[str, str | None]] = []
    while len(texts) < count:
        language = rng.choice(("zh", "en"))
        pool, joiner = (zh, "") if language == "zh" else (en, " ")
        start = rng.randrange(len(pool) - 4)
        base = "\n\n".join(pool[start : start + rng.randint(1, 3)])[: rng.randint(40, 1600)]
        sentences = [s for s in split_sentences(base) if len(s) >= 6] or [base]
        sentence = rng.choice(sentences)
        kind = rng.randrange(13)
        if kind == 0:
            texts.append((base, rng.choice(("stop", "length", None))))
        elif kind == 1:
            texts.append((base + joiner + joiner.join([sentence] * rng.randint(2, 6)), "stop"))
        elif kind == 2:
            runaway = (sentence[: rng.randint(2, 30)] + rng.choice(("，", ", ", "", "！"))) * 300
            texts.append((base + runaway[: rng.randint(20, 1500)], "length"))
        elif kind == 3:  # a counter or a changing word
            variants = [sentence.replace(sentence[:1], str(i), 1) for i in range(rng.randint(3, 9))]
            words = sentence.split() if language == "en" else list(sentence)
            variants += [
                sentence.replace(rng.choice(words), rng.choice(words), 1) for _ in range(rng.randint(0, 6))
            ]
            texts.append((base + joiner.join(variants), rng.choice(("stop", "length"))))
        elif kind == 4:
            numbered = "\n".join(f"{i}. {sentence}" for i in range(1, rng.randint(3, 12)))
            texts.append((base + "\n" + numbered, "stop"))
        elif kind == 5:
            texts.append((rng.choice(structured)[: rng.randint(200, 3000)], "stop"))
        elif kind == 6:
            fence = rng.choice(("```", "~~~"))
            texts.append(
                (base + f"\n{fence}python\n" + rng.choice(code) * rng.randint(1, 3) + f"\n{fence}\n", "stop")
            )
        elif kind == 7:
            rows = "\n".join(
                f"| {i} | {sentence[:10]} | {len(sentence) * i} |" for i in range(rng.randint(2, 15))
            )
            texts.append((base + "\n\n| a | b | c |\n|---|---|---|\n" + rows, "stop"))
        elif kind == 8:
            separator = rng.choice(("\n---\n", "=" * 40, "……" * 20, "* * * " * 10, "—" * 60, "\n\n"))
            texts.append((separator.join([base[: len(base) // 2]] * rng.randint(1, 4)) + separator, "stop"))
        elif kind == 9:
            token = rng.choice(("的", "好的", "哈", "是的，", "，", "！", "对对", " the", "😀", "𠀀"))
            texts.append((base + token * rng.randint(2, 400), rng.choice(("stop", "length"))))
        elif kind == 10:
            cycle = joiner.join(sentences[-2:])
            texts.append((base + joiner + joiner.join([cycle] * rng.randint(2, 5)), "stop"))
        elif kind == 11:
            shell = "\n\n$ ls -l\n" + "\n".join(
                f"-rw-r--r-- 1 root {i} file{i}" for i in range(rng.randint(2, 20))
            )
            texts.append((base + shell, "stop"))
        else:
            texts.append((base[: rng.randint(0, 12)], None))  # empty, one token, tiny
    return texts


def _as_tuple(result: LoopResult) -> tuple:
    return (result.score, result.flag, result.span, result.reason, result.period_units)


# ---------------------------------------------------------------- the tests


def test_the_batch_matches_the_reference_on_real_text_with_loops():
    texts = generated_texts(seed=0, count=320)
    limits = LoopThresholds()
    fast = loop_scores([text for text, _ in texts], [reason for _, reason in texts])
    expected = [_as_tuple(reference_loop_score(text, reason, limits)) for text, reason in texts]
    assert [_as_tuple(result) for result in fast] == expected
    assert sum(result.flag for result in fast) >= 80  # the set holds loops, not only prose
    assert len({result.reason for result in fast}) >= 4


def test_one_text_at_a_time_matches_the_batch():
    texts = generated_texts(seed=1, count=40)
    batch = loop_scores([text for text, _ in texts], [reason for _, reason in texts])
    assert [_as_tuple(loop_score(text, reason)) for text, reason in texts] == [_as_tuple(r) for r in batch]


@pytest.mark.parametrize(
    "thresholds",
    [
        {"fuzzy_match": None, "ngram_density": None},
        {"min_compression_gain": None, "max_period_units": 40},
        {"ngram": 3, "ngram_min_earlier": 2, "min_count": 2.0, "fuzzy_min_period": 4},
        {"ngram": 6, "fuzzy_min_count": 3.0, "fuzzy_match": 0.7, "min_loop_units": 20},
        {"ngram": 1, "length_relief": 0.5, "short_sentence_count": 3.0},
    ],
)
def test_other_thresholds_match_the_reference(thresholds):
    texts = generated_texts(seed=2, count=60)
    limits = LoopThresholds(**thresholds)
    fast = loop_scores([text for text, _ in texts], [reason for _, reason in texts], limits)
    expected = [_as_tuple(reference_loop_score(text, reason, limits)) for text, reason in texts]
    assert [_as_tuple(result) for result in fast] == expected


def test_tokens_match_the_regular_expression_on_any_characters():
    rng = random.Random(3)
    pools = [
        "中文字",
        "abc",
        "123",
        "١٢٣²",
        " \t\n\u3000\x1c",
        "_-=.…|+│$`~",
        "\ufa6e𠀀😀",
        "e\u0301",
        "\ud800",
    ]
    pools.append(["\n- ", "\n| ", "\n```\n", "\n$ ", "\n\n", "1. ", "~~~", "（2） "])
    texts = ["".join(rng.choice(rng.choice(pools)) for _ in range(rng.randint(0, 40))) for _ in range(300)]
    texts.append(
        "".join(chr(code) + "a" + chr(code) + " 1" for code in range(0x10000))
    )  # every BMP character
    texts.append("".join("x" + chr(code) + "中" for code in range(0x10000, 0x110000, 97)))
    tokens = tokenize(texts)
    for index, text in enumerate(texts):
        expected = reference_tokenize(text)
        chosen = slice(tokens.bounds[index], tokens.bounds[index + 1])
        assert tokens.starts[chosen].tolist() == expected.starts.tolist()
        assert tokens.ends[chosen].tolist() == expected.ends.tolist()
        assert tokens.content[chosen].tolist() == expected.content.tolist()
        assert tokens.numeric[chosen].tolist() == expected.numeric.tolist()
        assert tokens.zone[chosen].tolist() == expected.zone.tolist()
        for ids, reference_ids in ((tokens.exact, expected.exact), (tokens.digitless, expected.digitless)):
            pairs = set(zip(ids[chosen].tolist(), reference_ids.tolist(), strict=True))
            assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})  # same partition
