"""YAML files of the project read strictly: a key given twice in one mapping, which PyYAML
reads as its last value (a row's column set twice, a unit test written twice), and a
character YAML refuses (a NUL byte), which PyYAML reports by offset, are errors at their
line; a date or time that is no real one (``2024-02-30``), on which PyYAML's SafeLoader
fails with no line, is text as written, as in a CSV seed (``loader``). Used by YAML seeds
(``dbluigi.seeds``) and unit test files (``dbluigi.testfiles``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from dbluigi.lazy import yaml

_MERGE_TAG = "tag:yaml.org,2002:merge"  # ``<<: *base`` may come again: each merges a mapping


def refuse_duplicate_keys(node: yaml.Node | None) -> None:
    """Raise a ``MarkedYAMLError`` at the second of two equal keys of a mapping anywhere in
    ``node``'s tree (its ``problem`` says where the first one is)."""
    seen: set[int] = set()
    stack = [node] if node is not None else []
    while stack:
        current = stack.pop()
        if id(current) in seen:  # an alias: read once
            continue
        seen.add(id(current))
        if isinstance(current, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key_node, value_node in current.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != _MERGE_TAG:
                    key = (key_node.tag, key_node.value)
                    line = key_node.start_mark.line + 1
                    if key in first:
                        raise yaml.constructor.ConstructorError(
                            None,
                            None,
                            f"key {key_node.value!r} appears twice in this mapping (lines "
                            f"{first[key]} and {line}); the second would replace the first",
                            key_node.start_mark,
                        )
                    first[key] = line
                stack.extend((key_node, value_node))
        elif isinstance(current, yaml.SequenceNode):
            stack.extend(current.value)


def problem(exc: yaml.YAMLError) -> str:
    """What is wrong, without PyYAML's ``in "<unicode string>"`` lines."""
    if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.character, int):
        # the code point of a character of text YAML does not allow
        what = "a NUL byte" if exc.character == 0 else f"character #x{exc.character:04x}"
        return f"{what} is not allowed in YAML"
    return getattr(exc, "problem", None) or str(exc)


def error_line(text: str, exc: yaml.YAMLError) -> int | None:
    """The line (from 1) of ``text`` that ``exc`` is about, when it says."""
    if isinstance(exc, yaml.reader.ReaderError):
        return text.count("\n", 0, exc.position) + 1
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    return mark.line + 1 if mark is not None else None


def read(
    text: str,
    loader_class: type[yaml.SafeLoader],
    part: Callable[[yaml.Node | None], yaml.Node | None] | None = None,
) -> tuple[yaml.Node | None, Any]:
    """The one document of ``text`` (or the ``part`` of its node tree asked for): its node
    and its value, a key given twice refused. Parsed once; raises ``yaml.YAMLError``."""
    reader = loader_class(text)  # a character YAML refuses (a NUL byte) raises here
    try:
        node = reader.get_single_node()
        if part is not None:
            node = part(node)
        refuse_duplicate_keys(node)
        return node, (reader.construct_document(node) if node is not None else None)
    finally:
        reader.dispose()


@functools.cache
def loader() -> type[yaml.SafeLoader]:
    """PyYAML's SafeLoader, but for a date or time that is no real one: its text. Made on
    first use, so that YAML's parser loads with the first YAML file read."""

    class StrictLoader(yaml.SafeLoader):
        pass

    StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_or_text)
    return StrictLoader


def _timestamp_or_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    try:
        return loader.construct_yaml_timestamp(node)
    except ValueError:
        return loader.construct_scalar(node)
