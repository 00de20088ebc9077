"""Sentence splitting, length units and language detection (shadow/core/text.py)."""

import re

from shadow.core.text import count_units, han_ratio, language_of, split_sentences


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_chinese_terminators_and_closing_quotes():
    text = "他说：“走吧。”我们就走了……然后呢？好！「真的吗？」是的；当然。"
    assert split_sentences(text) == [
        "他说：“走吧。”",
        "我们就走了……",
        "然后呢？",
        "好！",
        "「真的吗？」",
        "是的；",
        "当然。",
    ]


def test_english_terminators_need_a_following_space():
    assert split_sentences("Pi is 3.14. Really? Yes! See a.b; done") == [
        "Pi is 3.14.",
        "Really?",
        "Yes!",
        "See a.b;",
        "done",
    ]


def test_newlines_split_and_list_markers_stay():
    assert split_sentences("1. 第一点\n2. 第二点\n\n- third") == ["1. 第一点", "2. 第二点", "- third"]


def test_fenced_code_block_is_one_unit():
    text = "Run this:\n```python\nx = 1. \nprint(x)\n```\nDone."
    assert split_sentences(text) == ["Run this:", "```python\nx = 1. \nprint(x)\n```", "Done."]


def test_sentences_cover_the_text_and_are_never_empty():
    text = "  第一句。。 \n\n  Second one!  ……\n```\ncode\n```\n最后"
    sentences = split_sentences(text)
    assert all(sentence.strip() for sentence in sentences)
    assert _compact("".join(sentences)) == _compact(text)
    assert split_sentences("") == [] and split_sentences("   \n ") == []


def test_count_units():
    assert count_units("我用 Python 3 写了 2 个脚本") == 10
    assert count_units("Don't stop, it's 3.5 km.") == 5
    assert count_units("") == 0


def test_language_of_and_han_ratio():
    assert language_of("今天天气很好") == "zh"
    assert language_of("用 pandas 读取 CSV 文件") == "zh"
    assert language_of("The weather is fine.") == "en"
    assert language_of("Привет, мир") == "other"
    assert language_of("12345 !!") == "other"
    assert han_ratio("中文 ab") == 0.5
