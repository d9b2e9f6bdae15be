"""`edge-agent install-service`: the system user, the configuration's directory, the unit
file, daemon-reload, enable.

Every step checks first whether it is already done (so running it twice is harmless),
prints what it does, and `--dry-run` prints the same plan without changing anything.
`root` is the filesystem root (a temp dir in tests); the account tools get `--root` then.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from edge_agent import SITE_CONFIG, exit_codes
from edge_agent.i18n import _

USER = GROUP = "edge-agent"
SERIAL_GROUP = "dialout"
HOME = "/var/lib/edge-agent"
UNIT_NAME = "edge-agent.service"
UNIT_DIR = "etc/systemd/system"
WANTS_DIR = "etc/systemd/system/multi-user.target.wants"
DEFAULT_CONFIG = Path(SITE_CONFIG)
CONFIG_DIR_MODE = 0o750
# The agent may write its configuration's directory (config_apply): never one it shares with
# the system or with the root-owned certificates and password files.
SHARED_DIRS = frozenset({Path("/"), Path("/etc"), Path("/etc/edge-agent")})
# Package data (a link to systemd/ in the checkout; a copy in a wheel), so that an installed
# agent finds its unit template without the source tree.
TEMPLATE = Path(__file__).resolve().parent / "units" / UNIT_NAME

# What the hardened unit (systemd/edge-agent.service) hides from the agent: an installation,
# an interpreter or a configuration there cannot be run by the service.
HIDDEN = {
    Path("/home"): "ProtectHome=yes",
    Path("/root"): "ProtectHome=yes",
    Path("/run/user"): "ProtectHome=yes",
    Path("/tmp"): "PrivateTmp=yes",
    Path("/var/tmp"): "PrivateTmp=yes",
}

EXIT_FAILED = exit_codes.ERROR
EXIT_NOT_ROOT = exit_codes.NOT_ROOT
EXIT_NO_SYSTEMD = exit_codes.NO_SYSTEMD
EXIT_HIDDEN = exit_codes.HIDDEN


class InstallError(Exception):
    """One line for the operator, and the exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


@dataclasses.dataclass
class Step:
    what: str  # "group edge-agent"
    done: bool  # already in place: nothing to do
    command: list[str] | None = None  # run to do it, or
    action: Callable[[], None] | None = None  # a file change made here


def executable_in(prefix: Path) -> Path:
    """This installation's `edge-agent`: PREFIX/bin (a venv) or PREFIX/.venv/bin (a checkout)."""
    for candidate in (prefix / "bin" / "edge-agent", prefix / ".venv" / "bin" / "edge-agent"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate.absolute()
    text = _("no edge-agent executable in {prefix}/bin or {prefix}/.venv/bin")
    raise InstallError(text.format(prefix=prefix))


def hidden_from_the_service(path: Path) -> str | None:
    """Why the service cannot see `path` (after symlinks), or None."""
    real = path.resolve()
    for top, setting in HIDDEN.items():
        if real == top or top in real.parents:
            text = _("{path} is under {top}, which the service does not see ({setting})")
            return text.format(path=real, top=top, setting=setting)
    return None


def interpreter_of(executable: Path) -> Path | None:
    """The Python an installed console script runs (its #! line), if it names one."""
    try:
        with open(executable, "rb") as script:
            first = script.readline(4096)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    command = first[2:].decode(errors="replace").split()
    return Path(command[0]) if command and command[0].startswith("/") else None


def unseen_installation(executable: Path, config: Path) -> InstallError | None:
    """The agent, its interpreter (a venv's python links to the one it was made from) and
    its configuration must be where the hardened unit can see them."""
    interpreter = interpreter_of(executable)
    for what, path in ((_("the installation"), executable), (_("its Python"), interpreter),
                       (_("the configuration"), config)):  # fmt: skip
        why = None if path is None else hidden_from_the_service(path)
        if why is not None:
            text = _(
                "{what} cannot run as the service: {why}; install it elsewhere "
                "(e.g. python3 -m venv /opt/edge-agent/.venv with a Python outside /home, "
                "/root and /tmp, and the config under /etc/edge-agent)"
            )
            return InstallError(text.format(what=what, why=why), EXIT_HIDDEN)
    return None


def render_unit(template: str, executable: Path, config: Path) -> str:
    """The packaged unit with ExecStart pointing at this installation and site file, and
    the file's directory writable."""
    for path in (executable, config):
        if any(c.isspace() for c in str(path)):
            text = _("paths with whitespace are not supported in the unit: {path}")
            raise InstallError(text.format(path=path))
    lines = []
    for line in template.splitlines():
        if line.startswith("ExecStart="):
            line = f"ExecStart={executable} run --config {config}"
        elif line.startswith("ReadWritePaths="):
            line = f"ReadWritePaths={config.parent}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _entries(path: Path) -> dict[str, list[str]]:
    """name -> fields of /etc/passwd or /etc/group (the local files useradd writes)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    return {
        fields[0]: fields for fields in (line.split(":") for line in text.splitlines()) if fields
    }


def plan(root: Path, executable: Path, config: Path, template: str) -> list[Step]:
    chroot = [] if root == Path("/") else ["--root", str(root)]
    groups = _entries(root / "etc/group")
    users = _entries(root / "etc/passwd")
    if SERIAL_GROUP not in groups:
        text = _("group {group} does not exist (serial ports need it)")
        raise InstallError(text.format(group=SERIAL_GROUP))
    serial_members = groups[SERIAL_GROUP][3].split(",") if len(groups[SERIAL_GROUP]) > 3 else []

    unit_path = root / UNIT_DIR / UNIT_NAME
    unit = render_unit(template, executable, config)
    current = unit_path.read_text() if unit_path.is_file() else None

    config_dir = root / str(config.parent).lstrip("/")

    def own_config_dir() -> None:
        # The user exists by now (an earlier step); look it up in this root's files.
        user = _entries(root / "etc/passwd")[USER]
        config_dir.mkdir(parents=True, exist_ok=True)
        os.chown(config_dir, int(user[2]), int(user[3]))
        config_dir.chmod(CONFIG_DIR_MODE)

    def write_unit() -> None:
        unit_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = unit_path.with_suffix(".tmp")
        tmp.write_text(unit)
        tmp.chmod(0o644)
        tmp.replace(unit_path)

    return [
        Step(
            _("group {group}").format(group=GROUP),
            GROUP in groups,
            ["groupadd", *chroot, "--system", GROUP],
        ),
        Step(
            _("system user {user}").format(user=USER),
            USER in users,
            [
                "useradd",
                *chroot,
                "--system",
                "--gid",
                GROUP,
                "--home-dir",
                HOME,
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--comment",
                "edge-agent plant-room gateway",
                USER,
            ],
        ),
        Step(
            _("{user} in group {group} (serial ports)").format(user=USER, group=SERIAL_GROUP),
            USER in serial_members,
            ["usermod", *chroot, "--append", "--groups", SERIAL_GROUP, USER],
        ),
        Step(
            _("{directory} owned by {user}, mode {mode}").format(
                directory=config.parent, user=USER, mode=f"{CONFIG_DIR_MODE:o}"
            ),
            _owned_by(config_dir, users.get(USER)),
            action=own_config_dir,
        ),
        Step(_("unit {path}").format(path=unit_path), current == unit, action=write_unit),
        # Only needed when the unit changed; a custom root has no running manager to reload.
        Step(
            _("systemd reloaded the unit"),
            current == unit or bool(chroot),
            ["systemctl", "daemon-reload"],
        ),
        Step(
            _("{unit} enabled at boot").format(unit=UNIT_NAME),
            (root / WANTS_DIR / UNIT_NAME).exists(),
            ["systemctl", *chroot, "enable", UNIT_NAME],
        ),
    ]


def _owned_by(directory: Path, user: list[str] | None) -> bool:
    if user is None or not directory.is_dir():
        return False
    st = directory.stat()
    return (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (
        int(user[2]),
        int(user[3]),
        CONFIG_DIR_MODE,
    )


def _run(command: list[str]) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise InstallError(_("{tool} not found on PATH").format(tool=command[0])) from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()
        text = (
            _("'{command}' failed (exit {code}): {why}")
            if detail
            else _("'{command}' failed (exit {code})")
        )
        why = detail[-1] if detail else ""
        raise InstallError(
            text.format(command=shlex.join(command), code=result.returncode, why=why)
        )


def install_service(
    *,
    prefix: Path,
    config: Path,
    dry_run: bool,
    root: Path = Path("/"),
    echo: Callable[[str], None] = print,
    euid: int | None = None,
    template: Path = TEMPLATE,
) -> None:
    """Raises InstallError; prints one line per step."""
    if not config.is_absolute():
        text = _("--config must be an absolute path (the service runs in /): {config}")
        raise InstallError(text.format(config=config))
    if config.parent in SHARED_DIRS:
        text = _(
            "--config needs a directory of its own, which the agent may write (config_apply): "
            "{directory} is shared; use e.g. {example}"
        )
        raise InstallError(text.format(directory=config.parent, example=DEFAULT_CONFIG))
    euid = os.geteuid() if euid is None else euid
    executable = executable_in(prefix)
    problems = []
    if euid != 0 and root == Path("/"):
        text = _("must run as root (try: sudo edge-agent install-service)")
        problems.append(InstallError(text, EXIT_NOT_ROOT))
    # Only at the real root: with --root (an image being prepared) these host paths are not
    # the ones the service will see.
    unseen = unseen_installation(executable, config) if root == Path("/") else None
    if unseen is not None:
        problems.append(unseen)
    if not (root / "run/systemd/system").is_dir():
        where = root / "run/systemd/system"
        text = _("systemd is not running here (no {path})").format(path=where)
        problems.append(InstallError(text, EXIT_NO_SYSTEMD))
    if problems and not dry_run:
        raise problems[0]
    for problem in problems:
        echo(_("note: {problem} - a real run would stop here").format(problem=problem))
    try:
        template_text = template.read_text()
    except OSError as exc:
        text = _("cannot read the unit template {path}: {problem}")
        raise InstallError(text.format(path=template, problem=exc.strerror)) from None
    if not (root / str(config).lstrip("/")).is_file():
        text = _("note: {config} does not exist yet; the service will not start until it does")
        echo(text.format(config=config))
    for step in plan(root, executable, config, template_text):
        if step.done:
            echo(_step(_("ok"), step.what))
            continue
        how = shlex.join(step.command) if step.command else _("write file")
        line = _("{what}: {how}").format(what=step.what, how=how)
        if dry_run:
            echo(_step(_("would"), line))
            continue
        echo(_step(_("doing"), line))
        if step.command:
            _run(step.command)
        elif step.action:
            try:
                step.action()
            except OSError as exc:
                text = _("{what}: {problem}").format(what=step.what, problem=exc.strerror or exc)
                raise InstallError(text) from None
    if not dry_run:
        echo(_("installed; start it with: systemctl start {unit}").format(unit=UNIT_NAME))


STEP_COLUMN = 9  # the steps' texts start in this cell: "would    group edge-agent"


def _step(state: str, text: str) -> str:
    """One step's line: its state ("ok", "would", "doing", or their translation) padded
    to STEP_COLUMN terminal cells (a Chinese character takes two), then what it is."""
    from rich.cells import cell_len

    return state + " " * max(1, STEP_COLUMN - cell_len(state)) + text


def main(prefix: Path | None, config: Path, dry_run: bool, root: Path) -> int:
    """The CLI entry: exit code, errors as one line on stderr."""
    try:
        install_service(
            prefix=prefix or Path(sys.prefix), config=config, dry_run=dry_run, root=root
        )
    except InstallError as exc:
        print(_("error: {message}").format(message=exc), file=sys.stderr)
        return exc.code
    except OSError as exc:  # e.g. /etc/group unreadable: still one line, no traceback
        message = f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")
        print(_("error: {message}").format(message=message), file=sys.stderr)
        return EXIT_FAILED
    return 0
