"""YAML that remembers where things were written, so a file's errors can say ``file:line``.

``load(text)`` is ``yaml.safe_load`` whose mappings are :class:`Lined` dicts and whose lists
are :class:`LinedList` lists: both answer ``line_of(key_or_index)`` and ``line`` (where they
start). A key written twice in one mapping is an error naming both lines. The allocations
file and the dataset catalogue read their files with it.
"""

from __future__ import annotations

import yaml


class Lined(dict):
    """A mapping with the line of each key (1-based)."""

    def __init__(self, mapping=(), lines=None, line: int = 0):
        super().__init__(mapping)
        self.lines = dict(lines or {})
        self.line = line

    def line_of(self, key) -> int:
        return self.lines.get(key, self.line)


class LinedList(list):
    """A list with the line of each item (1-based)."""

    def __init__(self, items=(), lines=None, line: int = 0):
        super().__init__(items)
        self.lines = list(lines or [])
        self.line = line

    def line_of(self, index) -> int:
        return self.lines[index] if 0 <= index < len(self.lines) else self.line


class LineLoader(yaml.SafeLoader):
    """A safe loader building :class:`Lined` mappings and :class:`LinedList` lists."""


def _construct_mapping(loader, node):
    loader.flatten_mapping(node)
    lines: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, (list, dict)):  # `? [a, b]`: safe_load refuses it too
            raise yaml.constructor.ConstructorError(
                None, None, f"a key must be a name or a number, not a "
                f"{'list' if isinstance(key, list) else 'mapping'}", key_node.start_mark)
        if key in lines:
            raise yaml.constructor.ConstructorError(
                None, None, f"{key!r} is written twice (first on line {lines[key]})",
                key_node.start_mark)
        lines[key] = key_node.start_mark.line + 1
    return Lined(loader.construct_mapping(node, deep=True), lines, node.start_mark.line + 1)


def _construct_sequence(loader, node):
    return LinedList(loader.construct_sequence(node, deep=True),
                     [n.start_mark.line + 1 for n in node.value], node.start_mark.line + 1)


LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load(text: str):
    """Parse YAML ``text`` safely, keeping lines (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=LineLoader)  # noqa: S506 (a SafeLoader subclass)
