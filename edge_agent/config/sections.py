"""One top-level section of a configuration file, read on its own: what a command needs
(the socket, the language) from a file that may be invalid elsewhere, even a YAML syntax
error outside that section. No pydantic: `edge-agent status` imports this."""

from __future__ import annotations

import re

import yaml


def top_level_section(text: str, key: str) -> object:
    """The value of `key:` at the top of `text`, parsed alone (None: no such section, or
    that section itself does not parse)."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if re.match(rf"{re.escape(key)}\s*:", line):
            end = index + 1
            while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t#"):
                end += 1
            try:
                section = yaml.safe_load("\n".join(lines[index:end]))
            except yaml.YAMLError:
                return None
            return section.get(key) if isinstance(section, dict) else None
    return None
