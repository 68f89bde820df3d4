"""The subcommands of ``serversession`` (DESIGN.md section 4), as click commands.

``cli.run`` is the entry point: it turns every error into one line and an exit code, and runs
``list --format json`` without importing click (cli.py).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
from collections.abc import Callable
from typing import Any

import click

from . import __version__
from .api import MAX_TIMEOUT
from .cli import PROG, emit, list_text
from .errors import ServerSessionError
from .formats import FORMATS, render, visible
from .sources import DEFAULT_TIMEOUT, SOURCE_NAMES

MAX_TABLE_WIDTH = 10000  # characters: a terminal (COLUMNS) claiming more gets this


class Seconds(click.ParamType):
    """A number of seconds in [minimum, maximum]: finite (not nan or inf), as a float."""

    name = "seconds"

    def __init__(self, minimum: float, maximum: float) -> None:
        self.minimum = minimum
        self.maximum = maximum

    def get_metavar(self, param: click.Parameter) -> str:
        return "SECONDS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        else:
            text = str(value).strip()
            try:  # float() also reads '1_0' and other scripts' digits ('\u0663'): ASCII digits only
                if not text.isascii() or "_" in text:
                    raise ValueError(text)
                number = float(text)
            except ValueError:
                self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(number) or not self.minimum <= number <= self.maximum:
            self.fail(f"{value!r} is not a number of seconds from {self.minimum:g} to {self.maximum:g}", param, ctx)
        return number


def _not_empty(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """An option given as an empty string (``--smb-conf "$UNSET"``) is a mistake, not the default."""
    values = value if isinstance(value, tuple) else (value,)
    if any(isinstance(v, str) and not v.strip() for v in values):
        raise click.BadParameter("must not be empty", ctx=ctx, param=param)
    return value


def source_options(
    command: Callable[..., Any] | None = None,
    *,
    port_flags: tuple[str, ...] = ("--port", "--smb-port"),
    user_flags: tuple[str, ...] = ("--user",),
) -> Any:
    """The options every reading command takes (``@source_options``, or with ``port_flags``
    for a command whose own ``--port`` is something else, ``user_flags`` for one whose own
    ``--user`` is something else)."""
    if command is None:
        return lambda function: source_options(function, port_flags=port_flags, user_flags=user_flags)
    options = [
        click.option(
            "--source",
            type=click.Choice(SOURCE_NAMES),
            default="auto",
            show_default=True,
            help="Where sessions are read from.",
        ),
        click.option(
            "--smb-conf",
            metavar="PATH",
            envvar="SERVERSESSION_SMB_CONF",
            callback=_not_empty,
            help="Samba configuration (default: Samba's own default path).",
        ),
        click.option(
            "--timeout",
            type=Seconds(0.1, MAX_TIMEOUT),
            default=DEFAULT_TIMEOUT,
            show_default=True,
            help=f"Seconds to wait for the source (for each host), 0.1 to {MAX_TIMEOUT:g}.",
        ),
        click.option(
            "--host",
            "hosts",
            metavar="HOST[:PORT]",
            multiple=True,
            help="SMB server to ask over MS-SRVS (srvsvc); repeat for several.",
        ),
        click.option(
            "--hosts-file",
            metavar="FILE",
            callback=_not_empty,
            help="File of hosts for srvsvc, one per line (# comments).",
        ),
        click.option(
            *port_flags,
            "smb_port",
            type=click.IntRange(1, 65535),
            default=445,
            show_default=True,
            help="SMB port of the hosts given without one.",
        ),
        click.option(
            *user_flags,
            "user",
            metavar="DOMAIN\\USER",
            callback=_not_empty,
            help="Account for srvsvc (USER or USER@DOMAIN work too).",
        ),
        click.option(
            "--password-file",
            metavar="FILE",
            callback=_not_empty,
            help="File whose first line is the password (default: env SERVERSESSION_PASSWORD).",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name=PROG)
def main() -> None:
    """Win32_ServerSession everywhere: who is connected to this file server."""


@main.command("list")
@click.argument("classname", metavar="[CLASS]", required=False)
@source_options
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Output format.")
def list_command(classname: str | None, fmt: str, **source: Any) -> None:
    """List the sessions that remote users have established with this server (or with --host HOST),
    or the instances of another CLASS of the family: Win32_ServerConnection, Win32_Share,
    Win32_SessionConnection, Win32_ConnectionShare, MSFT_SmbSession, MSFT_SmbOpenFile.

    With several hosts, a host that fails gets an error line and the others are listed;
    the exit code is 1 only if every host failed. An unknown CLASS is exit 1, as for `get`.
    """
    emit(list_text(fmt, _table_width(fmt), source, _encoding(), classname), utf8=fmt != "table")


@main.command("schema")
@click.argument("classname", required=False)
@click.option("--format", "fmt", type=click.Choice(("mof", "json")), default="mof", show_default=True)
def schema_command(classname: str | None, fmt: str) -> None:
    """Print the schema: one class (CLASSNAME) or all of them."""
    from .model import load_schema
    from .model.schema import class_mof

    schema = load_schema()
    names = [schema.get(classname).name] if classname else list(schema.classes)
    if fmt == "mof":
        blocks, namespace = [], None
        for name in names:
            if not classname and schema.classes[name].namespace != namespace:  # all: compiles back as it is
                namespace = schema.classes[name].namespace
                blocks.append(f'#pragma namespace ("{namespace}")\n')
            blocks.append(class_mof(name))
        emit("\n".join(blocks), utf8=True)
        return
    out = []
    for name in names:
        cls = schema.classes[name]
        out.append(
            {
                "name": cls.name,
                "namespace": cls.namespace,
                "superclass": cls.superclass,
                "qualifiers": cls.qualifiers,
                "keys": list(cls.keys),
                "properties": [
                    {
                        "name": p.name,
                        "type": p.type,
                        "is_array": p.is_array,
                        "class_origin": p.class_origin,
                        "qualifiers": p.qualifiers,
                        **({"reference_class": p.reference_class} if p.reference_class else {}),
                    }
                    for p in cls.properties.values()
                ],
                "methods": [
                    {
                        "name": m.name,
                        "return_type": m.return_type,
                        "parameters": m.parameters,
                        "class_origin": m.class_origin,
                        "qualifiers": m.qualifiers,
                    }
                    for m in cls.methods.values()
                ],
            }
        )
    emit(json.dumps(out[0] if classname else out, indent=2) + "\n", utf8=True)


sandbox_dir = click.option(
    "--dir",
    "directory",
    default=lambda: os.environ.get("SERVERSESSION_SANDBOX") or "/tmp/serversession-sandbox",
    show_default="/tmp/serversession-sandbox",
    type=click.Path(file_okay=False),
    callback=_not_empty,
    help="Directory holding the sandbox (also env SERVERSESSION_SANDBOX).",
)


@main.group("sandbox")
def sandbox_group() -> None:
    """A self-contained Samba on 127.0.0.1 for demos and tests."""


@sandbox_group.command("start")
@sandbox_dir
@click.option("--port", type=click.IntRange(1, 65535), default=4445, show_default=True)
def sandbox_start(directory: str, port: int) -> None:
    """Create (or reuse) the sandbox in DIR and start its smbd."""
    from .sandbox import Sandbox

    try:
        sandbox = Sandbox.load(directory)
        sandbox.port = port
    except ServerSessionError:
        sandbox = Sandbox(directory, port)
    sandbox.start()
    _print_status(sandbox.status())


@sandbox_group.command("stop")
@sandbox_dir
def sandbox_stop(directory: str) -> None:
    """Stop the sandbox's smbd (the directory is kept)."""
    from .sandbox import Sandbox

    was_running = Sandbox.load(directory).stop()
    emit("stopped\n" if was_running else "not running\n")


@sandbox_group.command("status")
@sandbox_dir
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def sandbox_status(directory: str, as_json: bool) -> None:
    """Say whether the sandbox runs, where, and with which users. Exit 1 if it does not run."""
    from .sandbox import Sandbox

    status = Sandbox.load(directory).status()
    if as_json:
        emit(json.dumps(status, indent=2) + "\n", utf8=True)
    else:
        _print_status(status)
    if not status["running"]:
        sys.exit(1)


def _print_status(status: dict[str, Any]) -> None:
    state = f"running (pid {status['pid']})" if status["running"] else "stopped"
    lines = [f"sandbox {state} at {status['address']}"]
    for key in ("smb_conf", "share", "credentials"):
        lines.append(f"  {key.replace('_', '.') if key == 'smb_conf' else key}: {visible(str(status[key]))}")
    users = ", ".join(visible(user) for user in status["users"])
    lines.append(f"  users: {users} (passwords in the credentials file; guests allowed)")
    emit("".join(f"{text}\n" for text in lines))


@main.command("demo")
@click.option(
    "--hold",
    type=Seconds(0, 600),
    default=3.0,
    show_default=True,
    help="Seconds the demo clients wait before listing (the idle user's IdleTime).",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
def demo_command(hold: float, fmt: str) -> None:
    """Start a sandbox, open real client sessions, list them, and clean up."""
    from .demo import run_demo

    run_demo(hold=hold, fmt=fmt, echo=lambda text: emit(f"{text}\n"), encoding=_encoding())


@main.command("query")
@click.argument("wql")
@source_options
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Output format.")
def query_command(wql: str, fmt: str, **source: Any) -> None:
    """Answer a WQL query, e.g. "SELECT * FROM Win32_ServerSession WHERE IdleTime > 600", or
    'ASSOCIATORS OF {Win32_ServerSession.ComputerName="10.0.0.7",UserName="alice"}' (also
    REFERENCES OF; WHERE AssocClass=, ResultClass=, Role=, ResultRole=, KeysOnly, ClassDefsOnly ...).

    Results of several classes: json and csv hold them all (__CLASS tells them apart; null or
    empty where a class lacks a property), the table shows one table per class. ClassDefsOnly
    and SchemaOnly give classes: their names (table), WMI's system properties of each class
    (json, csv), their MOF (mof) or CIM-XML CLASS elements (xml).

    Exit 2 if the query is not valid WQL (the message names the position), 1 if the object
    path of ASSOCIATORS/REFERENCES OF names no instance.
    """
    from .api import query
    from .model import load_schema
    from .wql import ClassDefsResult

    result = query(wql, **source)
    if isinstance(result, ClassDefsResult):
        from .model.instances import SYSTEM_PROPERTIES
        from .model.schema import cim_classes, class_mof
        from .wql.evaluate import class_system_properties

        rows = [class_system_properties(cls) for cls in result]
        if fmt == "json":
            text = json.dumps(rows, indent=2) + "\n"
        elif fmt == "csv":
            import csv
            import io

            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(SYSTEM_PROPERTIES)
            for row in rows:
                writer.writerow(["" if row[p] is None else ";".join(row[p]) if isinstance(row[p], list) else row[p]
                                 for p in SYSTEM_PROPERTIES])  # fmt: skip
            text = out.getvalue()
        elif fmt == "mof":
            text = "\n".join(class_mof(cls.name) for cls in result)
        elif fmt == "xml":
            classes = "".join(f"<VALUE.OBJECT>{cim_classes()[cls.name].tocimxmlstr()}</VALUE.OBJECT>" for cls in result)
            text = (
                '<?xml version="1.0" encoding="utf-8" ?>\n<CIM CIMVERSION="2.0" DTDVERSION="2.0">\n'
                f"<DECLARATION><DECLGROUP>{classes}</DECLGROUP></DECLARATION></CIM>\n"
            )
        else:  # a table of the classes, as wbemtest lists them
            table = [("Class", "Superclass", "Namespace")]
            table += [(c.name, c.superclass or "-", c.namespace.replace("/", "\\")) for c in result]
            widths = [max(len(row[i]) for row in table) for i in range(3)]
            lines = ["   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
            lines.insert(1, "   ".join("-" * w for w in widths))
            lines.append(f"{len(result)} class{'es' if len(result) != 1 else ''}")
            text = "".join(f"{line}\n" for line in lines)
        emit(text, utf8=fmt != "table")
        return
    schema = load_schema()
    width, encoding = _table_width(fmt), _encoding()
    runs: list[list[Any]] = []  # the instances in order, in runs of one class
    for instance in result:
        if runs and runs[-1][0].classname == instance.classname:
            runs[-1].append(instance)
        else:
            runs.append([instance])
    if fmt in ("table", "mof", "xml", "json") and len(runs) > 1:  # each class with its own properties
        blocks = []
        for run in runs:
            cls = schema.get(run[0].classname)
            chosen = list(result.properties_of(cls.name))
            shown = None if fmt == "table" and chosen == list(cls.properties) else chosen  # table: usual columns
            blocks.append(render(run, cls, fmt, width, properties=shown, system=True, encoding=encoding))
        if fmt == "xml":  # one document: the instances of each between DSP0201's DECLGROUP.WITHPATH tags
            start, end = "<DECLGROUP.WITHPATH>", "</DECLGROUP.WITHPATH>"
            inner = [b[b.index(start) + len(start) : b.rindex(end)].strip("\n") for b in blocks]
            text = blocks[0][: blocks[0].index(start) + len(start)] + "\n" + "\n".join(inner)
            text += "\n" + blocks[0][blocks[0].rindex(end) :]
        elif fmt == "json":  # one array: each object with its own class's properties (KeysOnly: its keys)
            inner = [b.strip()[1:-1].strip("\n") for b in blocks if b.strip() != "[]"]
            text = "[\n" + ",\n".join(inner) + "\n]\n"
        else:  # table: one table per class, as PowerShell shows objects of several types
            text = "\n".join(blocks)
    else:
        cls = schema.get(result.classname)
        text = render(result, cls, fmt, width, properties=result.properties, system=True, encoding=encoding)
    emit(text, utf8=fmt != "table")


@main.command("watch")
@click.argument("wql", metavar="EVENT-WQL")
@source_options
@click.option("--format", "fmt", type=click.Choice(("table", "json")), default="table", show_default=True,
              help="table: a line per event; json: JSON Lines, an event per line.")  # fmt: skip
@click.option("--count", type=click.IntRange(1, None), help="Exit after N events.")
def watch_command(wql: str, fmt: str, count: int | None, **source: Any) -> None:
    """Print events as they happen, e.g. every logon and logoff:
    "SELECT * FROM __InstanceOperationEvent WITHIN 5 WHERE TargetInstance ISA 'Win32_ServerSession'".

    Polls the source every WITHIN seconds and prints each creation, deletion and modification
    the query wants, flushed at once (json: one JSON object per line, for jq). Runs until
    Ctrl-C (exit 0) or --count events. What appears and ends between two polls is missed, as in
    WMI; a poll that fails is a warning and the watch goes on.
    """
    from .api import watch
    from .formats import event_json, event_line

    events = watch(wql, **source)
    encoding = _encoding()
    shown = 0
    try:
        for event in events:
            line = event_json(event, _selected(wql)) if fmt == "json" else event_line(event, encoding)
            emit(line + "\n", utf8=fmt == "json")
            shown += 1
            if count is not None and shown >= count:
                break
    except KeyboardInterrupt:  # Ctrl-C ends a watch: that is how it is used
        pass
    finally:
        events.close()


@main.command("top")
@source_options
@click.option("--interval", type=Seconds(0.5, 3600), default=2.0, show_default=True,
              help="Seconds between refreshes, 0.5 to 3600.")  # fmt: skip
@click.option("--sort", "sort_by", type=click.Choice(("idle", "opens", "active", "user", "computer")),
              default="idle", show_default=True, help="Sort order (keys change it while running).")  # fmt: skip
@click.option("--count", type=click.IntRange(1, None), help="Exit after N refreshes.")
def top_command(interval: float, sort_by: str, count: int | None, **source: Any) -> None:
    """A live view of the sessions, like top: sorted by idle time or open files, new sessions
    and ending ones highlighted. Keys: i idle, o opens, a active, u user, c computer, r reverse,
    q quit. When standard output is not a terminal, prints the table at each refresh instead."""
    from .top import run_top

    run_top(interval=interval, sort_by=sort_by, count=count, **source)


def close_options(command: Callable[..., Any]) -> Any:
    """What close-session and close-file share: the source options (the srvsvc account is
    --account there: --user names whose sessions or files to close), --force and --what-if."""
    for option in (
        click.option("--what-if", "what_if", is_flag=True, help="Show what matches; close nothing."),
        click.option("--force", is_flag=True, help="Close without asking (needed when stdin is no terminal)."),
        click.option("--user", "client_user", metavar="NAME", callback=_not_empty, help="The client's user name."),
        click.option(
            "--computer",
            "client_computer",
            metavar="NAME",
            callback=_not_empty,
            help="The client computer, as ComputerName shows it (NetBIOS name or address).",
        ),
    ):
        command = option(command)
    return source_options(command, user_flags=("--account",))


@main.command("close-session")
@click.option(
    "--session-id", "session_id", metavar="ID", multiple=True, help="SessionId (decimal or 0x hex); repeatable."
)
@close_options
def close_session_command(force: bool, what_if: bool, **options: Any) -> int:
    """End sessions, as Close-SmbSession and `net session \\\\CLIENT /delete` do: those with a
    --session-id (MSFT_SmbSession.SessionId), from --computer, of --user (all given must match).

    Shows what matches, asks (unless --force), and says what was closed. The local Samba ends
    each session alone (needs root); --host ends them over MS-SRVS (NetrSessionDel, by computer
    and user). Exit 0 when all that matched was closed, 1 when nothing matched or a close failed.
    """
    from .close.cli import run_close

    selectors = {k: options.pop(k) or None for k in ("session_id", "client_computer", "client_user")}
    return run_close("session", selectors, force, what_if, options, _table_width("table"), _encoding())


@main.command("close-file")
@click.option("--file-id", "file_id", metavar="ID", multiple=True, help="FileId (decimal or 0x hex); repeatable.")
@click.option("--path", metavar="GLOB", callback=_not_empty, help="Files whose server path matches (fnmatch).")
@click.option("--session-id", "session_id", metavar="ID", help="Files of this SessionId.")
@close_options
def close_file_command(force: bool, what_if: bool, **options: Any) -> int:
    """Close open files, as Close-SmbOpenFile does: a --file-id (MSFT_SmbOpenFile.FileId), those
    whose --path matches, of a --session-id, from --computer, of --user (all given must match).

    Shows what matches, asks (unless --force), and says what was closed; the file's byte-range
    locks go with it. Exit 0 when all that matched was closed, 1 when nothing matched or a close failed.
    """
    from .close.cli import run_close

    keys = ("file_id", "path", "session_id", "client_computer", "client_user")
    selectors = {k: options.pop(k) or None for k in keys}
    return run_close("file", selectors, force, what_if, options, _table_width("table"), _encoding())


@main.command("exporter")
@source_options(port_flags=("--smb-port",))  # --port is the exporter's
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=9923, show_default=True,
              help="Port (9922 is Samba's own smb_prometheus_endpoint).")  # fmt: skip
@click.option("--web-config-file", metavar="FILE", callback=_not_empty,
              help="Prometheus web configuration (TLS, basic auth), as the official exporters read it.")  # fmt: skip
@click.option("--max-age", type=Seconds(0, 3600), default=10.0, show_default=True,
              help="Serve scrapes from a read no older than this many seconds.")  # fmt: skip
@click.option("--per-user", is_flag=True, help="Add per-user series (capped, with a warning).")
def exporter_command(bind: str, port: int, web_config_file: str | None, max_age: float, per_user: bool,
                     **source: Any) -> None:  # fmt: skip
    """A Prometheus exporter of the sessions, idle times and open files on /metrics (the text
    format, or OpenMetrics when the scraper asks for it). Several --host: every series has a
    host label, and a host that fails sets its serversession_up to 0."""
    from .exporter import run_exporter

    run_exporter(bind=bind, port=port, web_config_file=web_config_file, max_age=max_age, per_user=per_user, **source)


def _selected(wql: str) -> tuple[str, ...] | None:
    from .wql.events import compile_event

    return compile_event(wql).properties


@main.command("get")
@click.argument("path", metavar="OBJECTPATH")
@source_options
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True, help="Output format.")
def get_command(path: str, fmt: str, **source: Any) -> None:
    """Print the instance an object path names, e.g. 'Win32_ServerSession.ComputerName="10.0.0.7",UserName="alice"'.

    Exit 1 if there is no such instance, 2 if the path is malformed.
    """
    from .api import get
    from .model import load_schema

    instance = get(path, **source)
    cls = load_schema().get(instance.classname)
    system = fmt in ("json", "csv")
    text = render([instance], cls, fmt, _table_width(fmt), system=system, encoding=_encoding())
    if fmt == "json":  # one object, not an array of one
        text = json.dumps(json.loads(text)[0], indent=2) + "\n"
    emit(text, utf8=fmt != "table")


def _table_width(fmt: str) -> int | None:
    """The terminal's width (COLUMNS if it is a positive number), at most MAX_TABLE_WIDTH; 200
    when stdout is not a terminal. formats.to_table makes it wide enough for its columns."""
    if fmt != "table":
        return None
    try:
        tty = sys.stdout is not None and sys.stdout.isatty()
    except (OSError, ValueError):
        tty = False
    return min(shutil.get_terminal_size((200, 24))[0], MAX_TABLE_WIDTH) if tty else 200


def _encoding() -> str:
    """The encoding the table is written in: stdout's (the locale's), UTF-8 if unknown."""
    return getattr(sys.stdout, "encoding", None) or "utf-8"


@main.command("serve")
@source_options(port_flags=("--smb-port",))  # --port is the WBEM server's
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), help="Port [default: 5988, 5989 with TLS].")
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="PEM certificate (chain) for HTTPS.")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="PEM private key for HTTPS.")
@click.option("--insecure", is_flag=True, help="Allow plain HTTP on a non-loopback address.")
@click.option("--htpasswd", type=click.Path(dir_okay=False), help="Apache htpasswd file with bcrypt entries.")
@click.option("--pam", is_flag=True, help="Check passwords with PAM.")
@click.option("--pam-service", default="login", show_default=True, help="PAM service name.")
@click.option("--no-auth", is_flag=True, help="Let anyone in (a warning is printed).")
@click.option(
    "--max-age",
    type=Seconds(0, MAX_TIMEOUT),
    default=1.0,
    show_default=True,
    help="Seconds a read of the source is reused.",
)
@click.option("--access-log", metavar="FILE", help="Write one JSON line per request to FILE ('-': stderr).")
@click.option(
    "--request-timeout",
    type=Seconds(0.1, MAX_TIMEOUT),
    default=30.0,
    show_default=True,
    help="Seconds a request may take, body included.",
)
@click.option(
    "--max-requests",
    type=click.IntRange(1, 65536),  # each holds a connection: more than file descriptors allow is a mistake
    default=64,
    show_default=True,
    help="Requests handled at once; more are answered 503.",
)
@click.option("--state-dir", metavar="DIR", callback=_not_empty,
              help="Where indication subscriptions are kept across restarts "
              "[default: /var/lib/serversession for root, else ~/.local/state/serversession].")  # fmt: skip
@click.option("--poll-interval", type=Seconds(0.5, 86400), default=5.0, show_default=True,
              help="Seconds between polls for DMTF-style indication filters (WMI-style ones say WITHIN).")  # fmt: skip
@click.option("--allow-destination", "allow_destinations", metavar="HOST", multiple=True, callback=_not_empty,
              help="A listener host off loopback that indications may be sent to; repeatable.")  # fmt: skip
@click.option("--subscriber", "subscribers", metavar="USER", multiple=True, callback=_not_empty,
              help="A user who may create indication subscriptions (default: every authenticated user); repeatable.")  # fmt: skip
@click.option("--no-auth-subscriptions", is_flag=True,
              help="With --no-auth: let anyone create indication subscriptions (refused otherwise).")  # fmt: skip
@click.option("--operator", "operators", metavar="USER", multiple=True, callback=_not_empty,
              help="A user who may invoke ForceClose (close sessions and files; needs --access-log); repeatable.")  # fmt: skip
def serve_command(
    bind: str,
    port: int | None,
    tls_cert: str | None,
    tls_key: str | None,
    insecure: bool,
    htpasswd: str | None,
    pam: bool,
    pam_service: str,
    no_auth: bool,
    max_age: float,
    access_log: str | None,
    request_timeout: float,
    max_requests: int,
    state_dir: str | None,
    poll_interval: float,
    allow_destinations: tuple[str, ...],
    subscribers: tuple[str, ...],
    no_auth_subscriptions: bool,
    operators: tuple[str, ...],
    **source: Any,
) -> None:
    """Answer CIM-XML (DSP0200) on /cimom, so WBEM clients (pywbem, wbemcli) see the sessions
    and the rest of the class family, in root/cimv2 and root/Microsoft/Windows/SMB, and send
    indications of their changes to listeners subscribed in root/interop (DSP1054)."""
    from .server import ServeOptions, serve, source_reader
    from .server.limits import Limits

    options = ServeOptions(
        bind=bind,
        port=port,
        tls_cert=tls_cert,
        tls_key=tls_key,
        insecure=insecure,
        htpasswd=htpasswd,
        pam=pam,
        pam_service=pam_service,
        no_auth=no_auth,
        max_age=max_age,
        access_log=access_log,
        limits=Limits(request_timeout=request_timeout, max_in_flight=max_requests),
        source_timeout=source.get("timeout"),
        state_dir=state_dir,
        poll_interval=poll_interval,
        allow_destinations=allow_destinations,
        subscribers=subscribers,
        no_auth_subscriptions=no_auth_subscriptions,
        operators=operators,
    )
    serve(options, source_reader(**source), lambda text: click.echo(text, err=True))
