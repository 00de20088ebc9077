"""The coherence domains: fitting and validation never share a document, the held-out domain is never
fitted on, and the splices and shuffles are what they claim to be."""

from __future__ import annotations

import pytest

from shadow.core.text import han_count
from tests import coherence_domains
from tests.corpora import CorpusMissing


def _pools(name: str) -> coherence_domains.DomainPools:
    try:
        return coherence_domains.pools(name)
    except CorpusMissing as missing:
        pytest.skip(str(missing))


@pytest.mark.parametrize("name", [spec.name for spec in coherence_domains.DOMAINS])
def test_fitting_and_validation_share_no_document(name):
    pools = _pools(name)
    validation_documents = {document for document, _ in pools.validation}
    fitted_documents = {document for document, _ in pools.logistic + pools.heads}
    # Clean prose is scarce in some packages (the CTeX FAQ's answers are mostly code): 20 passages at least,
    # whose sample size scripts/validate_evaluators prints beside every number.
    assert len(pools.validation) >= 20, f"{name}: only {len(pools.validation)} validation passages"
    assert not validation_documents & fitted_documents
    assert not {document for document, _ in pools.logistic} & {document for document, _ in pools.heads}
    if name == coherence_domains.HELD_OUT:
        assert not pools.logistic and not pools.heads
    else:
        assert pools.logistic and pools.heads
        assert max(fitted_documents) < min(validation_documents)  # halves in source order
    language = coherence_domains.domain(name).language
    for _, sentences in pools.validation:
        text = coherence_domains.joiner(language).join(sentences)
        assert len(sentences) >= 6 and coherence_domains.MIN_CHARS <= len(text) <= coherence_domains.MAX_CHARS
        assert language != "zh" or han_count(text) >= 200


def test_splices_and_shuffles_are_seeded_and_take_the_other_half_from_another_document():
    pools = _pools("en-news")
    items = coherence_domains.validation_set("en-news", seed=0, limit=20)
    assert [item["kind"] for item in items[:3]] == ["original", "splice", "shuffle"] and len(items) == 60
    original, splice, shuffle = items[:3]
    keep = splice["splice"]
    assert splice["sentences"][:keep] == original["sentences"][:keep]
    sources = [sentences for document, sentences in pools.validation if document != original["document"]]
    assert any(sentences[len(sentences) // 2 :] == splice["sentences"][keep:] for sentences in sources)
    assert sorted(shuffle["sentences"]) == sorted(original["sentences"]) != shuffle["sentences"]
    assert coherence_domains.validation_set("en-news", seed=0, limit=20) == items


def test_no_reserved_package_is_fetched():
    """None of the packages reserved for independent checks is installed or fetched by the set-up."""
    import re
    from pathlib import Path

    reserved = re.compile(r"manpages-zh|installation-guide-|debian-handbook|kicad-doc-|debian-edu-doc-|"
                          r"libreoffice-help-|debian-faq|maint-guide|gimp-help-|developers-reference|"
                          r"python3\.\d+-doc|git-doc|bash-doc")  # fmt: skip
    scripts = Path(__file__).resolve().parent.parent / "scripts"
    fetched = []
    for name in ("setup", "setup_corpora"):
        text = (scripts / name).read_text(encoding="utf-8")
        for listing in re.findall(r"(?:for pkg in|debs=\(|pypi=\()([^;)\n]*)", text):
            fetched += listing.replace('"', " ").split()
    assert "debian-reference-zh-cn" in fetched and "texlive-lang-chinese" in fetched
    assert not [package for package in fetched if reserved.search(package)]


def test_tex_prose_keeps_named_commands_and_ends_paragraphs_at_headings_and_dropped_code():
    from tests.corpora_archives import TEX_GAP, tex_paragraphs

    source = (
        "\\section{交叉引用}\\label{sec:ref}\n"
        "使用 \\cmd{label} 命令标记位置，\\Arg{key} 为标签名%\n"
        "\\footnote{脚注。}：\n"
        "\\begin{command}\n\\cmd{label}\\marg{key}\n\\end{command}\n"
        "之后用 \\cmd{ref}\\oarg{opt} 引用，见表~\\ref{tab:x}。\n"
    )
    assert tex_paragraphs(source) == [
        "交叉引用",
        "使用 \\label 命令标记位置，⟨key⟩ 为标签名：",
        TEX_GAP,
        "之后用 \\ref[⟨opt⟩] 引用，见表 。",
    ]


def test_a_passage_never_spans_a_heading_but_a_turn_is_no_heading():
    paragraphs = ["One is here. Two is here. Three is here.", "Chapter 2", "Four is here. Five. Six is here."]
    assert coherence_domains.passages(paragraphs, "en", min_chars=0, min_sentences=5) == []
    turns = coherence_domains.passages(paragraphs, "en", headings=False, min_chars=0, min_sentences=5)
    assert turns == [[sentence for p in paragraphs for sentence in coherence_domains.split_sentences(p)]]
