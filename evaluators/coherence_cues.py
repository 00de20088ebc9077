"""Text-only measures of coherence, no embeddings: shared words between sentences and discourse cues.

Embeddings ignore order cues that a shuffle breaks and lexical overlap that a splice loses; these pure
functions supply both to `evaluators.coherence`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from functools import lru_cache, wraps
from typing import TypeVar

import numpy as np

from shadow.core.text import HAN_CLASS, HAN_RE

T = TypeVar("T")

# Words that tie a sentence to the one before: they cannot open a paragraph that makes sense on its own.
CONNECTIVES = ("因此", "所以", "但是", "但", "然而", "可是", "不过", "同时", "此外", "另外", "而且", "并且",
               "其次", "最后", "总之", "因而", "于是", "从而", "否则", "那么", "可见", "由此", "相反", "反之",
               "而", "却", "也", "还", "就", "再", "并", "例如", "比如", "尤其", "特别是", "换句话说",
               "也就是说", "这样", "这就", "为此", "对此", "其中", "另一方面")  # fmt: skip
# English function words of three letters or more: shared by any two sentences, they carry no topic.
_FUNCTION_WORDS = (
    "the and for are but not you all any can had her was one our out has have his how its may new now "
    "see two who did get him let put say she too use that with this from they will would there their what "
    "about which when make like than then them these some could other into more only also been were does "
    "your each such where most very just over should while those because between both after before under "
    "being through"
)
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())
ANAPHORS = ("这", "那", "该", "其", "此", "他", "她", "它", "上述", "以上", "前者", "后者")
ORDINAL_SERIES = (
    ("首先", "其次", "再次", "最后"),
    ("一是", "二是", "三是", "四是", "五是", "六是"),
    ("第一，", "第二，", "第三，", "第四，", "第五，", "第六，"),
    ("一、", "二、", "三、", "四、", "五、", "六、", "七、", "八、", "九、", "十、"),
    ("其一", "其二", "其三", "其四"),
)
_OPENING_PUNCTUATION = "“「『（(—-　 \"'"
_OPEN_QUOTES, _CLOSE_QUOTES = "“「『", "”」』"
_OPEN_ENDINGS = ("；", ";", "：", ":", "，", ",")
_CLOSERS = "”’」』）)》\"'"
# A Han character, or a run of letters of another script; digits are left out: dates and figures recur
# across unrelated news.
_UNIT_RE = re.compile(f"[{HAN_CLASS}]|[^\\W\\d_{HAN_CLASS}]+")
# A reference back to something said before: a pronoun, or 该/这/那/其/此 + a noun ("该矿", "这些", "其中").
_ANAPHORA_RE = re.compile(
    r"他们|她们|它们|[他她它]|该[^\W\d_]|这[些个种一项是类位样里时]|那[些个种]|此[次外前后时]|其[^次一二三四他余实]"
    r"|上述|以上|前者|后者"
)
# Ranks that continue a list; a list opens with a first rank (第一, 首先, ...) before them.
_LATER_RANKS = tuple(word for series in ORDINAL_SERIES for word in series[1:4])
_FIRST_RANKS = tuple(series[0] for series in ORDINAL_SERIES)
_YEAR_RE = re.compile(r"(1[89]\d\d|20\d\d)年")
_FULL_WIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")


CACHED_SENTENCE_CHARS = 1000


def sentence_cache(maxsize: int) -> Callable[[Callable[[str], T]], Callable[[str], T]]:
    """An `lru_cache` of `maxsize` for a function of one sentence, kept to sentences of up to
    `CACHED_SENTENCE_CHARS` characters: an edited answer, a secondary and a replay share most of their
    sentences, while a longer one (a code block, a blob) is computed each time, so the cache's memory stays
    bounded. The cache itself is the wrapper's `cache` (for `cache_info`, `cache_clear`)."""

    def wrap(function: Callable[[str], T]) -> Callable[[str], T]:
        cached = lru_cache(maxsize=maxsize)(function)

        @wraps(function)
        def read(sentence: str) -> T:
            return cached(sentence) if len(sentence) <= CACHED_SENTENCE_CHARS else function(sentence)

        read.cache = cached  # type: ignore[attr-defined]
        return read

    return wrap


@sentence_cache(8192)
def lexical_units(sentence: str) -> tuple[str, ...]:
    """The units shared words are counted in: each Han character, and each word of another script
    (lowercased, cut to its first six letters as a crude stem) that is not a function word.

    Counting letters as Han characters are counted makes any two English sentences share most of their
    bigrams ("th", "he", "in"): the overlap across a splice was 0.42 on English against 0.04 on Chinese.

    >>> lexical_units("用 Pandas 读取 the files")
    ('用', 'pandas', '读', '取', 'files')
    """
    units = []
    for token in _UNIT_RE.findall(sentence.lower()):
        if HAN_RE.match(token):
            units.append(token)
        elif len(token) > 2 and token not in FUNCTION_WORDS:
            units.append(token[:6])
    return tuple(units)


def bigram_similarity(sentences: Sequence[str]) -> np.ndarray:
    """Cosine of the bigram counts of every pair of sentences: Han character bigrams, and for other
    scripts single content words (a word already carries what a bigram of Han characters does).

    >>> bigram_similarity(["北京天气晴朗。", "北京天气转阴。", "足球比赛。"]).round(2)[0].tolist()
    [1.0, 0.6, 0.0]
    """
    return TextUnits(sentences).bigram_similarity()


def tfidf_similarity(sentences: Sequence[str], size: int) -> np.ndarray:
    """Cosine of n-grams of `lexical_units` weighted by log((n + 1) / document frequency) within the text
    itself: words every sentence shares (the topic) fade, the ones a neighbour picks up (a local chain of
    words) stay.

    >>> tfidf_similarity(["北京下雨。", "北京天晴。", "足球比赛。"], 1).round(2)[0].tolist()
    [1.0, 0.2, 0.0]
    """
    return TextUnits(sentences).tfidf_similarity(size)


class TextUnits:
    """The `lexical_units` of a text's sentences as one array of integer ids (one per distinct unit of
    the text) with the sentence each came from, read once for all the word similarities of the text:
    n-grams become integer codes counted with numpy rather than joined strings counted in Python
    dictionaries, which was the cost of the word measures on long texts."""

    def __init__(self, sentences: Sequence[str]) -> None:
        ids: dict[str, int] = {}
        per_sentence = [lexical_units(sentence) for sentence in sentences]
        self.sentences = len(sentences)
        self.ids = np.fromiter(
            (ids.setdefault(unit, len(ids)) for units in per_sentence for unit in units), dtype=np.int64
        )
        self.vocabulary = max(1, len(ids))
        self.rows = np.repeat(np.arange(len(sentences)), [len(units) for units in per_sentence])
        # Han units are single characters; every other unit is a word of at least three letters.
        self.han = np.fromiter((len(unit) == 1 for units in per_sentence for unit in units), dtype=bool)

    def bigram_similarity(self) -> np.ndarray:
        """See `bigram_similarity`."""
        bigrams, bigram_rows = self.grams(2)
        words = ~self.han
        # Bigram codes lie above every unit id, so a bigram never counts as a word.
        codes = np.concatenate([bigrams + self.vocabulary, self.ids[words]])
        return _cosines(self._counts(codes, np.concatenate([bigram_rows, self.rows[words]])))

    def tfidf_similarity(self, size: int) -> np.ndarray:
        """See `tfidf_similarity`."""
        counts = self._counts(*self.grams(size))
        frequency = (counts > 0).sum(axis=0)  # sentences each n-gram occurs in
        return _cosines(counts * np.log((self.sentences + 1) / np.maximum(frequency, 1)))

    def grams(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(code, sentence) of every run of `size` units within one sentence; a code identifies the run."""
        count = len(self.ids) - size + 1
        if count <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        within = self.rows[:count] == self.rows[size - 1 :]
        windows = [self.ids[offset : offset + count] for offset in range(size)]
        if self.vocabulary**size < 2**62:
            codes = np.zeros(count, dtype=np.int64)
            for window in windows:
                codes = codes * self.vocabulary + window
        else:  # a vocabulary of millions (a huge blob): number the distinct n-grams instead
            codes = np.unique(np.stack(windows, axis=1), axis=0, return_inverse=True)[1].reshape(-1)
        return codes[within], self.rows[:count][within]

    def _counts(self, codes: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(sentences, distinct codes): how often each code occurs in each sentence."""
        distinct, columns = np.unique(codes, return_inverse=True)
        width = max(1, len(distinct))
        flat = np.bincount(rows * width + columns, minlength=self.sentences * width)
        return flat.reshape(self.sentences, width).astype(np.float64)


def _cosines(counts: np.ndarray) -> np.ndarray:
    unit = counts / np.maximum(np.linalg.norm(counts, axis=1, keepdims=True), 1e-12)
    return unit @ unit.T


def _opening(sentence: str) -> str:
    return sentence.lstrip(_OPENING_PUNCTUATION)


def ordinals_out_of_order(sentences: Sequence[str]) -> int:
    """Successive ordinals of one series in the wrong order (二是 before 一是), read anywhere in the text:
    a list often opens inside a sentence ("三个方面：一是……").

    >>> ordinals_out_of_order(["一是加强管理。", "二是完善制度。", "最后，总结经验。"])
    0
    >>> ordinals_out_of_order(["其次，完善制度。", "首先，加强管理。", "最后，总结经验。"])
    1
    >>> ordinals_out_of_order(["作用有二：一是推广技术。", "三、总结。", "二是传播文明。"])
    0
    """
    text = "".join(sentences)
    violations = 0
    for series in ORDINAL_SERIES:
        found = sorted(
            (match.start(), rank)
            for rank, word in enumerate(series)
            for match in re.finditer(re.escape(word), text)
        )
        ranks = [rank for _, rank in found]
        violations += sum(earlier > later for earlier, later in zip(ranks, ranks[1:], strict=False))
    return violations


def unbalanced_quotes(sentences: Sequence[str]) -> int:
    """Chinese quotes closed before they were opened, plus one if a quote is left open at the end.

    >>> unbalanced_quotes(["他说：“走吧。", "我们走。”", "天黑了。"]), unbalanced_quotes(["我们走。”", "他说：“走吧。"])
    (0, 2)
    """
    depth = unmatched = 0
    for char in "".join(sentences):
        if char in _OPEN_QUOTES:
            depth += 1
        elif char in _CLOSE_QUOTES:
            if depth == 0:
                unmatched += 1
            depth = max(0, depth - 1)
    return unmatched + (depth > 0)


def first_sentence_anaphora(sentences: Sequence[str]) -> float:
    """References back (他, 该矿, 这些, ...) per 50 characters in the first sentence, minus that rate in the
    whole text: a lead introduces its subjects, the sentences after it refer back to them.

    >>> round(first_sentence_anaphora(["刘桥一矿办起了电厂。", "该矿还办了农场。"]), 2)
    -2.78
    """
    text = "".join(sentences)
    if not text or not sentences[0]:
        return 0.0
    first_rate = len(_ANAPHORA_RE.findall(sentences[0])) / len(sentences[0])
    return 50.0 * (first_rate - len(_ANAPHORA_RE.findall(text)) / len(text))


def orphan_ordinals(sentences: Sequence[str]) -> int:
    """Sentences after the first that continue a list (第二, 其次, 三是) no first rank opened before them.

    >>> orphan_ordinals(["作用有二。", "一是推广技术。", "二是传播文明。"]), orphan_ordinals(["作用有二。", "其次，传播文明。"])
    (0, 1)
    """
    orphans = 0
    for index, sentence in enumerate(sentences[1:], start=1):
        positions = [sentence.find(word) for word in _LATER_RANKS if word in sentence]
        if positions:
            before = "".join(sentences[:index]) + sentence[: min(positions)]
            orphans += not any(word in before for word in _FIRST_RANKS)
    return orphans


def years_out_of_order(sentences: Sequence[str]) -> int:
    """Years mentioned (１９９７年, 2024年) that come after a later year: news and histories run forward.

    >>> years_out_of_order(["１９３８年１月，他发表文章。", "１９３７年８月，他当选。"])
    1
    """
    years = [int(year) for year in _YEAR_RE.findall("".join(sentences).translate(_FULL_WIDTH_DIGITS))]
    return sum(earlier > later for earlier, later in zip(years, years[1:], strict=False))


def sentence_endings(sentences: Sequence[str]) -> list[str]:
    return [sentence.rstrip(_CLOSERS)[-1:] for sentence in sentences]


def order_cues(sentences: Sequence[str]) -> dict[str, float]:
    """Discourse cues a shuffle breaks and an embedding ignores; each is 0 in a well-formed text.

    Besides the opening and the ending: a list continued with no first rank (`orphan_ordinals`), years
    running backwards (`years_out_of_order`), a "。" inside a run of "；" clauses (a list cut in two), a
    text opening with a "；" clause (the middle of a list).

    >>> order_cues(["因此，我们要加强管理。", "二是完善制度。", "一是提高认识；"])["opens_with_connective"]
    1.0
    """
    first = _opening(sentences[0]) if sentences else ""
    last = sentences[-1].rstrip(_CLOSERS) if sentences else ""
    endings = sentence_endings(sentences)
    return {
        "opens_with_connective": float(first.startswith(CONNECTIVES)),
        "opens_with_anaphor": float(first.startswith(ANAPHORS)),
        "ordinals_out_of_order": float(ordinals_out_of_order(sentences)),
        "unbalanced_quotes": float(unbalanced_quotes(sentences)),
        "ends_open": float(last.endswith(_OPEN_ENDINGS)),
        "orphan_ordinals": float(orphan_ordinals(sentences)),
        "years_out_of_order": float(years_out_of_order(sentences)),
        "period_in_clause_run": float(
            sum(
                (before, ending, after) == ("；", "。", "；")
                for before, ending, after in zip(endings, endings[1:], endings[2:], strict=False)
            )
        ),
        "opens_with_clause": float(endings[:1] == ["；"]),
    }
