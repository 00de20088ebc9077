"""The semantic validation's corpus helpers: long texts, DocBook paragraphs, translation alignment, edits.

Fast and encoder-free; the real Debian Reference check skips where the package is not installed.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import random
from pathlib import Path
from types import ModuleType

import pytest

from tests import corpora
from tests.corpora import HtmlParagraph, align_parallel_paragraphs, parse_docbook_paragraphs

ZH_PAGE = """
<h2 class="title"><a id="_intro"></a>1. 简介</h2>
<p>这是 <a href="https://www.debian.org">Debian</a> 的第一段，它说明了 <code class="literal">apt</code>
命令怎样安装软件包，以及为什么要先更新软件包列表再安装新的软件包。</p>
<p>第二段没有翻译完，只有很短的内容。</p>
<h3 class="title"><a id="_next"></a>1.1. 下一节</h3>
<p>This paragraph was left untranslated, so it is English on both sides of the pair, every word.</p>
"""
EN_PAGE = """
<h2 class="title"><a id="_intro"></a>1. Introduction</h2>
<p>This is the first paragraph of <a href="https://www.debian.org">Debian</a>; it explains how the
<code class="literal">apt</code> command installs packages, and why the package list is updated first.</p>
<p>The second paragraph is short but complete in English, with enough words to count as prose here.</p>
<h3 class="title"><a id="_next"></a>1.1. Next section</h3>
<p>This paragraph was left untranslated, so it is English on both sides of the pair, every word.</p>
"""


def _script() -> ModuleType:
    path = Path(__file__).resolve().parent.parent / "scripts" / "validate_evaluators"
    loader = importlib.machinery.SourceFileLoader("validate_evaluators", str(path))
    spec = importlib.util.spec_from_loader("validate_evaluators", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def test_parse_docbook_paragraphs_sections_text_and_markup() -> None:
    paragraphs = parse_docbook_paragraphs(ZH_PAGE, "ch01")
    assert [(p.section, p.index) for p in paragraphs] == [("_intro", 0), ("_intro", 1), ("_next", 0)]
    first = paragraphs[0]
    assert first.links == ("https://www.debian.org",)
    assert first.literals == ("apt",)
    # the line break inside Chinese text is wrapping, not a space
    assert "apt 命令怎样" in first.text and "\n" not in first.text


def test_align_keeps_translations_and_drops_short_untranslated_and_mismatched() -> None:
    zh = parse_docbook_paragraphs(ZH_PAGE, "ch01")
    en = parse_docbook_paragraphs(EN_PAGE, "ch01")
    pairs = align_parallel_paragraphs(zh, en, min_han=20)
    assert [(pair.section, pair.index) for pair in pairs] == [("_intro", 0)]
    assert pairs[0].zh.startswith("这是") and pairs[0].en.startswith("This is")

    # a paragraph whose code literals differ is not the same paragraph, whatever its position
    shifted = [HtmlParagraph(p.page, p.section, p.index, p.text, p.links, ("dpkg",)) for p in en]
    assert align_parallel_paragraphs(zh, shifted, min_han=20) == []
    # a section with a different number of paragraphs on the two sides is skipped whole
    assert align_parallel_paragraphs(zh, en[1:], min_han=20) == []


def test_join_into_long_texts_does_not_overlap() -> None:
    texts = corpora.join_into_long_texts(["a" * 5, "b" * 5, "c" * 30, "d" * 7], min_chars=10, max_chars=20)
    assert texts == ["aaaaa\n\nbbbbb"]  # "c" * 30 alone passes max_chars; "d" * 7 never reaches min_chars


def test_late_divergent_keeps_the_start_and_replaces_the_rest() -> None:
    script = _script()
    text = "".join(f"原文第{i}句话。" for i in range(10))
    other = "".join(f"别的文章第{i}句。" for i in range(10))
    candidate = script.late_divergent(text, other)
    kept = candidate.split("别的")[0]
    assert text.startswith(kept) and 0.3 <= len(kept) / len(text) <= 0.5
    assert "原文第9句" not in candidate and candidate.endswith("别的文章第9句。")


def test_near_identical_edits_lightly() -> None:
    script = _script()
    text = "\n\n".join(
        " ".join(f"Sentence {p}.{s} says we can use the system well." for s in range(4)) for p in range(3)
    )
    candidate, edits = script.near_identical(text, random.Random(0))
    assert set(edits) >= {"drop", "swap", "paraphrase", "punctuation-whitespace"}
    assert "utilize" in candidate and candidate != text
    assert 0.7 * len(text) < len(candidate) < 1.1 * len(text)


def test_real_debian_reference_alignment() -> None:
    try:
        pairs = corpora.parallel_debian_reference_paragraphs()
    except corpora.CorpusMissing as missing:
        pytest.skip(str(missing))
    assert len(pairs) >= 300
    # translations keep the English side's numbers and commands: spot-check that structure carried over
    assert all(corpora.HAN_RE.search(pair.zh) and not corpora.HAN_RE.search(pair.en) for pair in pairs)
