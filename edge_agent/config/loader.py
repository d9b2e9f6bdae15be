"""Loads a site configuration from YAML files into a validated `AgentConfig`.

The YAML is composed into nodes (SafeLoader semantics) and turned into plain data here,
so that every value keeps the file and line it came from: pydantic's error locations and
the cross-checks can then point a technician at `file:line key.path`. Everything wrong is
collected and raised at once as one `ConfigError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from pydantic import ValidationError
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from edge_agent.config.checks import cross_check
from edge_agent.config.errors import (
    ConfigError,
    ConfigIssue,
    Loc,
    format_path,
    ordered,
    problems_from,
    show,
)
from edge_agent.config.models import AgentConfig, Local
from edge_agent.config.sections import top_level_section
from edge_agent.i18n import _

INCLUDE_TAG = "!include"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
# Aliases can multiply a small document into a huge one ("billion laughs"); configs
# pushed over MQTT must not be able to exhaust the gateway's memory.
MAX_VALUES = 1_000_000


@dataclass
class Where:
    """Where a value was written, and where each of its keys or items was written."""

    file: str
    line: int | None
    raw: str | None = None  # a scalar's text as written (for "put it in quotes" hints)
    children: dict[str | int, Where] = field(default_factory=dict)

    def find(self, path: Loc) -> Where:
        """The deepest known position along `path` (the parent's for a missing key)."""
        where = self
        for part in path:
            if part not in where.children:
                break
            where = where.children[part]
        return where

    def exact(self, path: Loc) -> Where | None:
        """The position of exactly `path`, if it was written."""
        where: Where | None = self
        for part in path:
            where = where.children.get(part) if where is not None else None
        return where


@dataclass(frozen=True)
class _Root:
    """The folder a configuration's includes must stay within: the top-level file's own
    (for a pushed config, the running file's). Nothing outside it is ever read."""

    name: str  # as shown in messages
    real: Path | None  # symlinks and ".." resolved; None: it cannot be resolved


@dataclass(frozen=True)
class _Source:
    name: str  # as shown in messages
    base_dir: Path | None  # includes are relative to this; None: includes are not possible
    root: _Root | None = None  # includes must resolve to a file within it


class _Unreadable(Exception):
    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.reason, self.line = reason, line


class _TooLarge(Exception):
    pass


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _Unreadable(_("not found")) from None
    except IsADirectoryError:
        raise _Unreadable(_("is a directory")) from None
    except PermissionError:
        raise _Unreadable(_("is not readable (permission denied)")) from None
    except OSError as exc:
        raise _Unreadable(_("cannot be read ({error})").format(error=exc.strerror or exc)) from None
    except ValueError:  # e.g. a NUL character in the name
        raise _Unreadable(_("is not a valid path")) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise _Unreadable("is not UTF-8 text", line) from None


def _resolve(path: Path) -> Path | None:
    """The real path, to recognise a file included again through another name."""
    try:
        return path.resolve()
    except (OSError, ValueError, RuntimeError):  # NUL in the name, a symlink loop
        return None


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def _tag_name(tag: str) -> str:
    return tag.replace("tag:yaml.org,2002:", "!!")


class _Reader:
    """Turns YAML nodes into plain data and a `Where` tree, collecting issues."""

    def __init__(self) -> None:
        self.issues: list[ConfigIssue] = []
        self.warnings: list[ConfigIssue] = []  # legal but suspicious (the cross-checks')
        # Paths whose model errors only repeat an include failure already reported.
        self.quiet_at: set[Loc] = set()
        self.quiet_under: set[Loc] = set()
        self._including: list[tuple[Path, str]] = []  # (resolved path, name) being read
        self._parsed: dict[Path, Node | str | None] = {}
        self._active: set[int] = set()  # collection nodes being converted (alias cycles)
        self._scalars = SafeConstructor()
        self._count = 0

    def issue(self, file: str, line: int | None, path: Loc, message: str) -> None:
        self.issues.append(ConfigIssue(file, line, format_path(path), message))

    def parse(self, text: str, name: str) -> Node | None:
        """Compose one YAML document; syntax errors become issues (and None)."""
        try:
            return yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = _syntax_mark(exc)
            self.issue(name, mark.line + 1 if mark else None, (), _syntax_message(exc))
        except yaml.reader.ReaderError as exc:
            line = text.count("\n", 0, exc.position) + 1
            char = f"U+{exc.character:04X}" if isinstance(exc.character, int) else exc.character
            self.issue(name, line, (), _syntax(f"{exc.reason} ({char})"))
        except yaml.YAMLError as exc:
            self.issue(name, None, (), _syntax(str(exc)))
        except RecursionError:
            self.issue(name, None, (), _syntax(_("values are nested too deeply")))
        return None

    # --- values ----------------------------------------------------------------------

    def value(self, node: Node, src: _Source, path: Loc) -> tuple[object, Where]:
        self._count += 1
        if self._count > MAX_VALUES:
            raise _TooLarge
        if node.tag == INCLUDE_TAG:
            found: list[tuple[object, Where]] = []
            if self._include(
                node, src, path, lambda root, inc: found.append(self.value(root, inc, path))
            ):
                return found[0]
            self.quiet_at.add(path)  # its model errors would only repeat the include failure
            return None, Where(src.name, _line(node))
        if isinstance(node, ScalarNode):
            return self._scalar(node, src, path)
        if id(node) in self._active:
            return self._unreadable(
                node, src, path, _("an alias refers to the value it is part of")
            )
        self._active.add(id(node))
        try:
            if isinstance(node, MappingNode):
                self._check_tag(node, _MAP_TAG, src, path)
                return self._mapping(node, src, path)
            # PyYAML composes scalars, mappings and sequences only.
            assert isinstance(node, SequenceNode), f"unexpected YAML node {type(node).__name__}"
            self._check_tag(node, _SEQ_TAG, src, path)
            where, items = Where(src.name, _line(node)), list[object]()
            self._fill(node, src, path, where, items)
            return items, where
        finally:
            self._active.discard(id(node))

    def _check_tag(self, node: Node, expected: str, src: _Source, path: Loc) -> None:
        if node.tag != expected:
            self.issue(
                src.name,
                _line(node),
                path,
                _("unsupported tag {tag}").format(tag=_tag_name(node.tag)),
            )

    def _scalar(self, node: ScalarNode, src: _Source, path: Loc) -> tuple[object, Where]:
        if node.tag not in SafeConstructor.yaml_constructors:
            return self._unreadable(
                node, src, path, _("unknown tag {tag}").format(tag=_tag_name(node.tag))
            )
        try:
            value = self._scalars.construct_object(node)
        except Exception:  # SafeConstructor raises ValueError, TypeError, YAMLError...
            message = _("cannot read {value!r} as {tag}").format(
                value=node.value, tag=_tag_name(node.tag)
            )
            return self._unreadable(node, src, path, message)
        return value, Where(src.name, _line(node), raw=node.value)

    def _unreadable(self, node: Node, src: _Source, path: Loc, message: str) -> tuple[None, Where]:
        """A value that YAML cannot give: report it, and not again as a model error."""
        self.issue(src.name, _line(node), path, message)
        self.quiet_at.add(path)
        return None, Where(src.name, _line(node))

    def _fill(
        self, node: SequenceNode, src: _Source, path: Loc, where: Where, items: list[object]
    ) -> None:
        """Append a list's items; an included file holding a list is spliced into it."""
        for child in node.value:
            if child.tag != INCLUDE_TAG:
                self._append(child, src, path, where, items)
                continue

            def splice(root: Node, inc: _Source) -> None:
                if isinstance(root, SequenceNode) and root.tag == _SEQ_TAG:
                    self._fill(root, inc, path, where, items)
                else:
                    self._append(root, inc, path, where, items)

            if not self._include(child, src, path, splice):
                self.quiet_at.add(path)  # e.g. "must have at least 1 item": already explained

    def _append(
        self, node: Node, src: _Source, path: Loc, where: Where, items: list[object]
    ) -> None:
        index = len(items)
        value, where.children[index] = self.value(node, src, (*path, index))
        items.append(value)

    def _mapping(self, node: MappingNode, src: _Source, path: Loc) -> tuple[object, Where]:
        data: dict[str, object] = {}
        where = Where(src.name, _line(node))
        merges: list[tuple[Node, Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append((key_node, value_node))
                continue
            key = self._key(key_node, src, path)
            if key is None:
                continue
            if key in data:
                first = where.children[key].line
                self.issue(
                    src.name,
                    _line(key_node),
                    (*path, key),
                    _("duplicate key {key!r} (first at line {first})").format(key=key, first=first),
                )
                continue
            data[key], child = self.value(value_node, src, (*path, key))
            where.children[key] = Where(src.name, _line(key_node), child.raw, child.children)
        for merge_key, merge_value in merges:
            self._merge(merge_key, merge_value, src, path, data, where)
        return data, where

    def _key(self, node: Node, src: _Source, path: Loc) -> str | None:
        if isinstance(node, ScalarNode):
            return node.value  # as written: "on:" or "1:" are names here, not true or 1
        self.issue(src.name, _line(node), path, "a key must be a plain name, not a list or mapping")
        return None

    def _merge(
        self, key: Node, node: Node, src: _Source, path: Loc, data: dict, where: Where
    ) -> None:
        """YAML merge keys (`<<: *defaults`): keys written in the mapping itself win."""
        value, merged = self.value(node, src, path)
        if value is None and path in self.quiet_at:
            self.quiet_under.add(path)  # a failed `<<: !include`: its keys look missing
            return
        sources = [(value, merged)] if isinstance(value, dict) else []
        if isinstance(value, list):
            sources = [(item, merged.children[i]) for i, item in enumerate(value)]
        if not sources or not all(isinstance(item, dict) for item, _where in sources):
            self.issue(src.name, _line(node), path, "'<<' expects a mapping or a list of mappings")
            return
        for item, item_where in sources:
            for name, item_value in item.items():
                if name not in data:
                    # Inherited values are reported at the `<<:` line that brought them in.
                    inherited = item_where.children[name]
                    data[name] = item_value
                    where.children[name] = Where(
                        src.name, _line(key), inherited.raw, inherited.children
                    )

    # --- includes ----------------------------------------------------------------------

    def _include(
        self, node: Node, src: _Source, path: Loc, convert: Callable[[Node, _Source], None]
    ) -> bool:
        """Read the file named by an `!include` node and convert its content with `convert`."""
        site = (src.name, _line(node), path)
        target = node.value if isinstance(node, ScalarNode) else None
        if not target or not isinstance(target, str):
            self.issue(*site, "!include expects a file path, e.g. !include points/chiller.yaml")
            return False
        if src.base_dir is None:
            self.issue(*site, "!include is not possible in a configuration given as text")
            return False
        # Resolve the path as joined (a lexical "a/../" is wrong across symlinks); show it
        # tidied. What is read is the resolved path, once it is known to be in the root.
        path_as_joined = Path(src.base_dir, target)
        name = os.path.normpath(path_as_joined)
        resolved = _resolve(path_as_joined)
        if resolved is None:
            self.issue(*site, _("included file {name!r} is not a valid path").format(name=name))
            return False
        root = src.root
        if root is None or root.real is None or not resolved.is_relative_to(root.real):
            folder = root.name if root is not None else os.path.normpath(src.base_dir)
            message = _(
                "included file {name!r} is outside the configuration's folder {folder!r}: an "
                "!include must stay within it (through '..' and symbolic links too)"
            )
            self.issue(*site, message.format(name=name, folder=folder))
            return False
        if any(resolved == seen for seen, _name in self._including):
            chain = " -> ".join([*(seen_name for _path, seen_name in self._including), name])
            self.issue(*site, _("include cycle: {chain}").format(chain=chain))
            return False
        if resolved not in self._parsed:
            self._parsed[resolved] = self._parse_file(resolved, name)
        content = self._parsed[resolved]
        if isinstance(content, str):
            self.issue(*site, content)  # reported at every include of the file
        if not isinstance(content, Node):
            return False
        with self.reading(resolved, name):
            convert(content, _Source(name, path_as_joined.parent, root))
        return True

    def _parse_file(self, path: Path, name: str) -> Node | str | None:
        """The file's root node, or why it has none: a message for the including site,
        or None when the problem was reported in the file itself (e.g. a syntax error)."""
        try:
            text = _read_text(path)
        except _Unreadable as exc:
            if exc.line is None:
                return _("included file {name!r} {reason}").format(name=name, reason=exc.reason)
            self.issue(name, exc.line, (), _("file {reason}").format(reason=exc.reason))
            return None
        before = len(self.issues)
        root = self.parse(text, name)
        if root is None and len(self.issues) == before:
            return _("included file {name!r} is empty").format(name=name)
        return root

    @contextmanager
    def reading(self, resolved: Path | None, name: str) -> Iterator[None]:
        """Mark a file as being read, so that including it again is a cycle."""
        if resolved is not None:
            self._including.append((resolved, name))
        try:
            yield
        finally:
            if resolved is not None:
                self._including.pop()


# The usual causes of PyYAML's more cryptic complaints.
_SYNTAX_HINTS = {
    "'\\t'": "indent with spaces, not tabs",
    "mapping values are not allowed here": "a value containing ': ' must be in quotes",
}


def _syntax_mark(exc: yaml.MarkedYAMLError) -> yaml.Mark | None:
    """Where to send the technician: for an unclosed bracket or quote, PyYAML notices only
    at the end of the file; the line that opened it is the one to fix."""
    at_end = "<stream end>" in (exc.problem or "") or "end of stream" in (exc.problem or "")
    if at_end and exc.context_mark is not None:
        return exc.context_mark
    return exc.problem_mark or exc.context_mark


def _syntax(problem: str) -> str:
    """PyYAML's own words (English) after ours."""
    return _("YAML syntax error: {problem}").format(problem=problem)


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    problem, context = exc.problem or "invalid YAML", exc.context
    if context and exc.context_mark and exc.problem_mark:
        at = f"at line {exc.context_mark.line + 1}"
        if "first occurrence" in context:  # "found duplicate anchor 'x'; first occurrence"
            problem = f"{context} {at}"
        elif problem.startswith("but "):  # the second half of a sentence
            problem = f"{context} {at}, {problem}"
        else:
            problem = f"{problem} ({context} {at})"
    hints = [hint for text, hint in _SYNTAX_HINTS.items() if text in problem]
    return _syntax("; ".join([problem, *hints]))


# --- public API --------------------------------------------------------------------------


@dataclass(frozen=True)
class Loaded:
    """A valid configuration and what is legal but suspicious in it (sorted by file, line)."""

    config: AgentConfig
    warnings: list[ConfigIssue]


def load_config(path: str | os.PathLike[str]) -> AgentConfig:
    """Load and validate a configuration file; raise ConfigError listing every problem."""
    return load_with_warnings(path).config


def load_config_text(
    text: str, name: str = "<string>", base_dir: Path | None = None
) -> AgentConfig:
    """Validate configuration text (e.g. pushed over MQTT); includes are relative to base_dir."""
    return load_text_with_warnings(text, name, base_dir).config


def load_with_warnings(path: str | os.PathLike[str]) -> Loaded:
    """`load_config`, and the warnings (ConfigError carries them too, beside the errors)."""
    name = os.fspath(path)
    try:
        text = _read_text(Path(name))
    except _Unreadable as exc:
        raise ConfigError(
            [ConfigIssue(name, exc.line, "", _("file {reason}").format(reason=exc.reason))]
        ) from None
    folder = Path(name).parent
    return _load(text, _Source(name, folder, _root(folder)), _resolve(Path(name)))


def load_text_with_warnings(
    text: str, name: str = "<string>", base_dir: Path | None = None
) -> Loaded:
    """`load_config_text`, and the warnings."""
    root = _root(base_dir) if base_dir is not None else None
    return _load(text, _Source(name, base_dir, root), None)


@dataclass(frozen=True)
class SocketLookup:
    """Where a configuration file says the technician's socket is (`local.socket`), read
    without validating the rest: a file with a mistake elsewhere still names it."""

    socket: Path | None  # None: the file does not say (unreadable, or not a path there)
    problem: str | None = None  # why not, or what else was wrong (a YAML syntax error)


def read_local_socket(path: str | os.PathLike[str]) -> SocketLookup:
    """`local.socket` of a configuration file (its default if the file has no `local:`
    section), even when the file is invalid elsewhere or a YAML syntax error spoils it."""
    name = os.fspath(path)
    try:
        text = _read_text(Path(name))
    except _Unreadable as exc:
        return SocketLookup(
            None, str(ConfigIssue(name, exc.line, "", _("file {reason}").format(reason=exc.reason)))
        )
    folder = Path(name).parent
    reader = _Reader()
    data, _where = _read_document(reader, text, _Source(name, folder, _root(folder)), None)
    if data is None:  # a YAML syntax error: the `local:` section may still be readable
        problem = str(reader.issues[0]) if reader.issues else f"{name}: unreadable"
        local = top_level_section(text, "local")
        if local is None:
            return SocketLookup(None, problem)
        return _socket_of(local, name, problem)
    return _socket_of(data.get("local", {}), name, None)


def _socket_of(local: object, name: str, problem: str | None) -> SocketLookup:
    if local is None or (isinstance(local, dict) and "socket" not in local):
        return SocketLookup(Local().socket, problem)  # what the agent uses without one
    socket = local.get("socket") if isinstance(local, dict) else None
    if not isinstance(socket, str) or not socket:
        return SocketLookup(None, problem or f"{name}: local.socket is not a path")
    return SocketLookup(Path(socket), problem)


def _root(folder: Path) -> _Root:
    return _Root(os.path.normpath(folder), _resolve(folder))


def _load(text: str, src: _Source, resolved: Path | None) -> Loaded:
    reader = _Reader()
    data, where = _read_document(reader, text, src, resolved)
    if data is not None:
        config = _validate(reader, data, where)
        if config is not None and not reader.issues:
            return Loaded(config, ordered(reader.warnings))
    if not reader.issues:  # unreachable unless a step forgot to report why it stopped
        reader.issue(src.name, None, (), "configuration could not be loaded")
    raise ConfigError(reader.issues, reader.warnings)


def _read_document(
    reader: _Reader, text: str, src: _Source, resolved: Path | None
) -> tuple[dict | None, Where]:
    where = Where(src.name, None)
    root = reader.parse(text, src.name)
    if root is None:
        if not reader.issues:  # no syntax error: nothing but blanks and comments
            reader.issue(src.name, None, (), _("file is empty"))
        return None, where
    try:
        with reader.reading(resolved, src.name):
            data, where = reader.value(root, src, ())
    except _TooLarge:
        message = _("too many values (more than {n}, after expanding aliases)").format(n=MAX_VALUES)
        reader.issue(src.name, None, (), message)
        return None, where
    except RecursionError:
        reader.issue(src.name, None, (), _("values are nested too deeply"))
        return None, where
    if isinstance(data, dict):
        return data, where
    if () not in reader.quiet_at:
        message = _(
            "expected a mapping of sections (site, gateway, uplink, ...), got {got}"
        ).format(got=show(data))
        reader.issue(src.name, where.line, (), message)
    return None, where


def _validate(reader: _Reader, data: dict, where: Where) -> AgentConfig | None:
    def raw(path: Loc) -> str | None:
        found = where.exact(path)
        return found.raw if found else None

    try:
        config = AgentConfig.model_validate(data)
    except ValidationError as exc:
        for problem in problems_from(exc, AgentConfig, raw):
            if _quiet(reader, problem.path):
                continue
            place = where.find(problem.path)
            reader.issue(place.file, place.line, problem.path, problem.message)
        return None
    for finding in cross_check(config):
        place = where.find(finding.path)
        message = finding.message
        if finding.first is not None:
            first = where.find(finding.first)
            at = (
                _("line {n}").format(n=first.line)
                if first.file == place.file
                else f"{first.file}:{first.line}"
            )
            message += _(" (first at {place})").format(place=at)
        found = ConfigIssue(
            place.file, place.line, format_path(finding.path), message, finding.level
        )
        (reader.warnings if finding.level == "warning" else reader.issues).append(found)
    return config


def _quiet(reader: _Reader, path: Loc) -> bool:
    if path in reader.quiet_at:
        return True
    return any(path[: len(q)] == q for q in reader.quiet_under)
