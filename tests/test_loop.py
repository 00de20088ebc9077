"""Loop detection (evaluators/loop.py): real loops flagged, legitimate repetition spared."""

import pytest

from evaluators.base import ScoringContext
from evaluators.loop import LoopEvaluator, LoopThresholds, loop_score

ANSWER = (
    "量子计算利用量子比特的叠加和纠缠来处理信息。与经典比特不同，量子比特可以同时处于多个状态。"
    "这使得某些问题，例如大数分解和分子模拟，可以在理论上得到指数级的加速。"
)
ENGLISH = (
    "Photosynthesis converts light energy into chemical energy. Plants capture sunlight with chlorophyll "
    "and use it to turn water and carbon dioxide into glucose and oxygen."
)


@pytest.mark.parametrize(
    ("text", "finish_reason"),
    [
        (ANSWER + "我们需要继续努力学习。" * 3, "stop"),  # caught early: three copies of a sentence
        (ANSWER + "\n\n" + "\n\n".join([ANSWER] * 3), "stop"),  # a paragraph repeated
        (ANSWER + ("量子比特可以同时处于多个状态，" * 200)[:1500], "length"),  # runaway to the limit
        (ANSWER + "的" * 120, "length"),  # a single token
        (ENGLISH + " It is important to note that this matters." * 4, "stop"),
        (ANSWER + "".join(f"第{i}天：继续休息并且按时吃药。" for i in range(1, 7)), "stop"),  # a counter
        (ANSWER + "，" * 150, "length"),  # punctuation running away
    ],
)
def test_loops_are_flagged_with_a_span(text, finish_reason):
    result = loop_score(text, finish_reason)
    assert result.flag and result.score >= 0.5
    assert result.span is not None
    start, end = result.span
    assert len(text) - 2 <= end <= len(text)  # every loop here runs to the end of the text
    appended = len(text) - (len(ENGLISH) if text.startswith(ENGLISH) else len(ANSWER))
    assert end - start >= 0.7 * appended


def test_a_word_that_changes_between_copies_is_still_a_loop():
    copies = [f"我们会继续改进{word}服务质量，为用户提供更好的体验。" for word in "的我你他它的我你"]
    assert loop_score(ANSWER + "".join(copies)).flag


@pytest.mark.parametrize(
    "text",
    [
        ANSWER,
        ANSWER + ANSWER,  # a restatement once is not a loop
        "| 名称 | 数量 | 状态 |\n|---|---|---|\n"
        + "\n".join(f"| 项目{i} | {i * 3} | 正常 |" for i in range(12)),
        "主要有以下几点：\n1. 注意安全。\n2. 注意卫生。\n3. 按时休息。\n\n"
        "总结：\n- 注意安全。\n- 注意卫生。\n- 按时休息。",
        "```python\n" + "\n".join(f"x{i} = compute(x{i - 1}, step={i})" for i in range(1, 15)) + "\n```",
        "床前明月光，疑是地上霜。\n举头望明月，低头思故乡。",
        "采苓采苓，首阳之巅。人之为言，苟亦无信。舍旃舍旃，苟亦无然。人之为言，胡得焉！\n"
        "采苦采苦，首阳之下。人之为言，苟亦无与。舍旃舍旃，苟亦无然。人之为言，胡得焉！\n"
        "采葑采葑，首阳之东。人之为言，苟亦无从。舍旃舍旃，苟亦无然。人之为言，胡得焉！",
        "故不可得而亲，不可得而疏；不可得而利，不可得而害；不可得而贵，不可得而贱。",
        ANSWER + "……\n\n" + "=" * 60 + "\n\n" + ANSWER + "\n\n---\n\n" + "—" * 30,
        "\n\n".join(f"## 注意事项\n\n{sentence}" for sentence in ANSWER.split("。") if sentence),
        "哈哈哈哈哈，谢谢！谢谢！谢谢！",
    ],
)
def test_legitimate_repetition_is_not_a_loop(text):
    result = loop_score(text, "stop")
    assert not result.flag and result.span is None and result.score < 0.5


def test_empty_and_tiny_texts():
    assert loop_score("").flag is False
    assert loop_score("a").score == 0.0


def test_thresholds_are_keyword_arguments_and_none_turns_a_check_off():
    text = ANSWER + "".join(
        f"我们会继续改进{word}服务质量，为用户提供更好的体验。" for word in "的我你他它的我你"
    )
    off = LoopThresholds(fuzzy_match=None, ngram_density=None)
    assert loop_score(text, thresholds=off).flag is False
    evaluator = LoopEvaluator(fuzzy_match=None, ngram_density=None)
    assert evaluator.score_texts([text], [None], ScoringContext())[0]["flag"] is False


def test_evaluator_output_shape():
    evaluator = LoopEvaluator()
    results = evaluator.score_texts([ANSWER, ANSWER + "的" * 300], [None, "length"], ScoringContext())
    assert results[0]["flag"] is False and results[0]["span"] is None
    assert results[1]["flag"] is True and len(results[1]["span"]) == 2
    assert set(results[1]) >= {"score", "flag", "span"}
    assert LoopEvaluator.metadata()["higher_is_better"] is False
