"""README.md read as a reader sees it: its fenced blocks and prose lines with their section headings and
line numbers, and the look-ups tests/test_readme.py checks README's names with."""

from __future__ import annotations

import contextlib
import importlib
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent.parent
README = ROOT / "README.md"

#: Where README's bare class names (`WrapError`, `HttpConfig`) may live.
HOMES = (
    "infra",
    "infra.errors",
    "infra.http",
    "infra.cache",
    "infra.ollama",
    "infra.db",
    "infra.server",
    "builtins",
)

#: The HTML comment that marks the block after it as illustrative: README shows it, tests don't run it.
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(.+?)\s*-->")
#: An inline code span.
SPAN = re.compile(r"`([^`\n]+)`")


@dataclass(frozen=True)
class Block:
    section: str
    ordinal: int
    lang: str
    line: int  # README line of the block's first line of code
    code: str
    not_run: str | None

    @property
    def anchor(self) -> str:
        return f"{self.section} #{self.ordinal}"


@dataclass(frozen=True)
class Prose:
    line: int
    section: str
    text: str


def parse(text: str) -> tuple[list[Block], list[Prose]]:
    """README's fenced blocks and its other lines, each with its section heading and line number."""
    blocks: list[Block] = []
    prose: list[Prose] = []
    lines = text.splitlines()
    section = ""
    count: Counter[str] = Counter()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\S*)\s*$", lines[i])
        if fence is None:
            heading = re.match(r"^#{1,6}\s+(.+?)\s*$", lines[i])
            if heading:
                section = heading.group(1)
            prose.append(Prose(i + 1, section, lines[i]))
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        assert end is not None, f"README.md:{i + 1}: code fence never closed"
        before = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        mark = NOT_RUN.search(before)
        count[section] += 1
        code = "\n".join(lines[i + 1 : end]) + "\n"
        blocks.append(Block(section, count[section], fence.group(1) or "text", i + 2, code, mark and mark[1]))
        i = end + 1
    return blocks, prose


def spans() -> Iterator[tuple[Prose, str]]:
    """Every inline code span of the prose with the line it starts on. Spans are found per paragraph, not
    per line: one that wraps (`AsyncPerfClient(retry=...,` / `max_per_host=2)`) is one span, its line
    break read as a space, and doesn't pair the backticks after it wrongly."""
    paragraph: list[Prose] = []
    for p in [*PROSE, Prose(-1, "", "")]:
        if p.text.strip() and (not paragraph or p.line == paragraph[-1].line + 1):
            paragraph.append(p)
            continue
        text = "\n".join(q.text for q in paragraph)
        for match in re.finditer(r"`([^`]+)`", text):
            line = paragraph[text.count("\n", 0, match.start())]
            yield line, " ".join(match[1].split())
        paragraph = [p] if p.text.strip() else []


def where(p: Prose | Block, what: str) -> str:
    return f"README.md:{p.line}: {what}"


def resolve(dotted: str) -> object:
    """The object a dotted name reaches (longest importable module, then attributes); AttributeError or
    ImportError when it doesn't exist."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


def find_home(name: str) -> object | None:
    for home in HOMES:
        with contextlib.suppress(AttributeError, ImportError):
            return resolve(f"{home}.{name}")
    return None


def migration_table() -> list[tuple[Prose, str, str]]:
    """The rows (line, before, now) of README's table of renamed settings classes."""
    rows: list[tuple[Prose, str, str]] = []
    inside = False
    for p in PROSE:
        if re.match(r"^\|\s*before\s*\|\s*now\s*\|", p.text):
            inside = True
        elif inside and p.text.startswith("|"):
            cells = [c.strip() for c in p.text.strip("|").split("|")]
            if not set(cells[0]) <= set("-: "):
                rows.append((p, cells[0], cells[1]))
        else:
            inside = False
    return rows


def resolves(dotted: str) -> object | None:
    with contextlib.suppress(AttributeError, ImportError):
        return resolve(dotted)
    return None


def call_parts(span: str) -> tuple[str, str] | None:
    """`name(args)` (or `@name(args)`) as (name, args) when the span is one call and nothing after it."""
    head = re.match(r"^@?([A-Za-z_][\w.]*)\(", span)
    if head is None:
        return None
    depth = 0
    for i in range(head.end() - 1, len(span)):
        depth += {"(": 1, ")": -1}.get(span[i], 0)
        if depth == 0:
            return (head[1], span[head.end() : i]) if i == len(span) - 1 else None
    return None


def schema_words(node: Any) -> Iterator[str]:
    """Every property name and enum value in a schema subtree."""
    if isinstance(node, dict):
        yield from node.get("properties", {})
        yield from (v for v in node.get("enum", []) if isinstance(v, str))
        for child in node.values():
            yield from schema_words(child)
    elif isinstance(node, list):
        for child in node:
            yield from schema_words(child)


def heading_slugs(markdown: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    heads = re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown.read_text(encoding="utf-8"), re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


BLOCKS, PROSE = parse(README.read_text(encoding="utf-8"))
