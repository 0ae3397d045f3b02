"""Reading a user's YAML file safely: size, encoding, syntax, aliases, nesting; positions of every key.

Parsing follows the official agent (PyYAML `safe_load`, YAML 1.1), so `yes`, `on` and friends
mean what they mean to the agent. Every problem carries the file and the line.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from generator.problems import InputError, Problem, key_path

MAX_BYTES = 1024 * 1024  # the most a ConfigMap (and so a mounted agent config) can hold
MAX_NODES = 100_000  # after alias expansion; protects against alias bombs
MAX_TAB_REPORTS = 10

Pos = tuple[int, int]


@dataclass
class Document:
    """A parsed YAML file: its text, data, and the line/column of every key and value."""

    file: str
    text: str
    data: Any
    values: dict[tuple[Any, ...], Pos] = field(default_factory=dict)
    keys: dict[tuple[Any, ...], Pos] = field(default_factory=dict)
    line_offset: int = 0
    col_offset: int = 0  # for a document embedded as an indented block scalar in another file

    def where(self, path: Sequence[Any], *, key: bool = False) -> Pos:
        """Line and column (1-based) of the value at `path` (of its key with key=True), else the nearest parent."""
        p = tuple(path)
        table = self.keys if key else self.values
        if p in table:
            line, col = table[p]
            return line + self.line_offset, col + self.col_offset
        while p:
            p = p[:-1]
            if p in self.values:
                line, col = self.values[p]
                return line + self.line_offset, col + self.col_offset
        return 1 + self.line_offset, 1 + self.col_offset

    def problem(self, path: Sequence[Any], message: str, *, key: bool = False) -> Problem:
        line, col = self.where(path, key=key)
        return Problem(self.file, message, line, col, key_path(path))


def read_text(path: str | os.PathLike[str], *, max_bytes: int = MAX_BYTES) -> str:
    """The file's text; InputError for a missing file, a directory, a huge or a binary file."""
    name = os.fspath(path)
    try:
        st = os.stat(name)
    except FileNotFoundError:
        raise InputError([Problem(name, "no such file")]) from None
    except OSError as exc:
        raise InputError([Problem(name, f"cannot read: {exc.strerror or exc}")]) from None
    if stat.S_ISDIR(st.st_mode):
        raise InputError([Problem(name, "is a directory; expected a YAML file")])
    if not stat.S_ISREG(st.st_mode):
        raise InputError([Problem(name, "not a regular file; expected a YAML file")])
    if st.st_size > max_bytes:
        raise InputError([Problem(name, f"{st.st_size} bytes is too large: a config file may be at most "
                                        f"{max_bytes // 1024} KiB (the limit of a Kubernetes ConfigMap)")])
    try:
        with open(name, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InputError([Problem(name, f"cannot read: {exc.strerror or exc}")]) from None
    if len(raw) > max_bytes:
        raise InputError([Problem(name, f"too large: a config file may be at most {max_bytes // 1024} KiB")])
    return decode(name, raw)


def _line_col(raw: bytes, offset: int) -> Pos:
    before = raw[:offset]
    line = before.count(b"\n") + 1
    return line, offset - (before.rfind(b"\n") + 1) + 1


def decode(name: str, raw: bytes) -> str:
    nul = raw.find(b"\x00")
    if nul >= 0:
        line, col = _line_col(raw, nul)
        raise InputError([Problem(name, "binary data (NUL byte); expected a UTF-8 YAML text file", line, col)])
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(raw, exc.start)
        raise InputError([Problem(name, f"not UTF-8 text (byte 0x{raw[exc.start]:02x}); expected a YAML "
                                        "text file", line, col)]) from None
    return text.removeprefix("\ufeff").replace("\r\n", "\n")


def _tab_problems(name: str, text: str) -> list[Problem]:
    out = []
    for n, line in enumerate(text.split("\n"), start=1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            out.append(Problem(name, "tab character in indentation; YAML indents with spaces only",
                               n, indent.index("\t") + 1))
    return out[:MAX_TAB_REPORTS]


def _mark_problem(name: str, exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).split("\n")[0]
    context = getattr(exc, "context", None)
    msg = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    if isinstance(exc, yaml.reader.ReaderError):
        return Problem(name, f"character U+{exc.character:04X} is not allowed in YAML text")
    if mark is None:
        return Problem(name, msg)
    return Problem(name, msg, mark.line + 1, mark.column + 1)


def parse(name: str, text: str, *, allow_empty: bool = False) -> Document:
    """Parse one YAML document; InputError with positions for every problem."""
    try:
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.reader.ReaderError as exc:
        before = text[: exc.position]
        line, col = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        raise InputError([Problem(name, f"character U+{exc.character:04X} is not allowed in YAML text",
                                  line, col)]) from None
    except yaml.YAMLError as exc:
        tabs = _tab_problems(name, text)
        problem = _mark_problem(name, exc)
        if problem.line is not None:
            lines = text.split("\n")
            near = lines[max(problem.line - 2, 0): problem.line]
            if any("{{" in line for line in near):
                problem = Problem(name, f"{problem.message}; quote template variables: '{{{{name}}}}'",
                                  problem.line, problem.col)
        raise InputError(tabs or [problem]) from None
    except RecursionError:
        raise InputError([Problem(name, "nested too deeply to be a config file")]) from None
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. an unhashable key, a bad timestamp
        raise InputError([Problem(name, f"YAML value error: {exc}")]) from None
    if node is None or data is None:
        if allow_empty:
            return Document(name, text, None)
        raise InputError([Problem(name, "the file is empty", 1, 1)])
    doc = Document(name, text, data)
    problems: list[Problem] = []
    _index(doc, node, (), problems)
    if problems:
        raise InputError(problems)
    return doc


def _index(doc: Document, root: yaml.Node, path0: tuple[Any, ...], problems: list[Problem]) -> None:
    """Record positions of every key and value; refuse alias bombs and duplicate keys."""
    key_loader = yaml.SafeLoader("")
    visits = 0
    stack: list[tuple[yaml.Node, tuple[Any, ...]]] = [(root, path0)]
    while stack:
        node, path = stack.pop()
        visits += 1
        if visits > MAX_NODES:
            line, col = node.start_mark.line + 1, node.start_mark.column + 1
            problems.append(Problem(doc.file, f"more than {MAX_NODES} values after expanding aliases "
                                              "(an alias bomb?)", line, col))
            return
        doc.values.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for knode, vnode in node.value:
                if knode.tag == "tag:yaml.org,2002:merge":
                    stack.append((vnode, path))
                    continue
                try:
                    key = key_loader.construct_object(knode, deep=True) if isinstance(knode, yaml.ScalarNode) \
                        else f"<{knode.id}>"
                except yaml.YAMLError:
                    key = knode.value if isinstance(knode.value, str) else "<key>"
                kline = knode.start_mark.line + 1
                if isinstance(key, str | int | float | bool) and key in seen:
                    problems.append(Problem(doc.file, f"duplicate key {key!r} (first at line {seen[key]})",
                                            kline, knode.start_mark.column + 1, key_path((*path, key))))
                    continue
                if isinstance(key, str | int | float | bool):
                    seen[key] = kline
                doc.keys.setdefault((*path, key), (kline, knode.start_mark.column + 1))
                stack.append((vnode, (*path, key)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                stack.append((item, (*path, i)))


def load(path: str | os.PathLike[str], *, allow_empty: bool = False) -> Document:
    name = os.fspath(path)
    return parse(name, read_text(name), allow_empty=allow_empty)


def display_name(path: str | os.PathLike[str]) -> str:
    return os.fspath(Path(path))
