"""Generate kink's man pages from the code, so that they cannot drift from it.

    python3 packaging/gen_man.py OUTDIR

writes kinkd.8, kinkctl.8 and kink-privsep.8 from the programs' argparse parsers (every option,
every kinkctl subcommand with its own options), and kink.toml.5 from kink.toml.example, the one
place where each configuration key is explained. The key lists the loader really accepts
(kink.daemon.config and its helpers) are checked against the example: a key or an option
without text stops the generation with ManPageError naming it. The prose around them (what a
program is for, files, examples) is here.

kink must be importable with its compiled libkrb5 binding (installed, or on PYTHONPATH as
debian/rules does); the date in the pages is $SOURCE_DATE_EPOCH when set (reproducible builds).
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import textwrap
import time
import tomllib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "kink.toml.example"


class ManPageError(Exception):
    """An option or configuration key has no documentation to put in its man page."""


# ------------------------------------------------------------------------------------ roff


def roff(text: str) -> str:
    """Plain text as roff body text: backslashes and hyphens escaped, no line starting with a
    control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line for line in text.split("\n"))


def paragraphs(text: str) -> str:
    """Text with blank-line separated paragraphs as roff (.PP between them). A paragraph with
    indented lines (a list, as argparse's RawDescriptionHelpFormatter prints it) stays as
    written; the others are filled."""
    out = []
    for block in blocks(text):
        lines = block.split("\n")
        if any(line[:1].isspace() for line in lines[1:]):
            out.append(f".nf\n{roff(block)}\n.fi")
        else:
            out.append(roff(" ".join(block.split())))
    return "\n.PP\n".join(out)


def prose(text: str) -> str:
    """paragraphs() of a triple-quoted string written in this file (indentation removed)."""
    return paragraphs(inspect.cleandoc(text))


def blocks(text: str) -> list[str]:
    """The blank-line separated paragraphs of `text`, common indentation removed."""
    return [textwrap.dedent(b).strip("\n") for b in re.split(r"\n\s*\n", text) if b.strip()]


def example(text: str) -> str:
    """Verbatim lines (a file, a session) as a roff example block."""
    return f".PP\n.RS 4\n.nf\n{roff(text.rstrip())}\n.fi\n.RE\n.PP"


def header(name: str, section: int, summary: str, version: str) -> str:
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", time.time()))
    date = time.strftime("%Y-%m-%d", time.gmtime(epoch))
    return (
        f'.TH "{name.upper()}" "{section}" "{date}" "kink {version}" "kink"\n'
        f".SH NAME\n{roff(name)} \\- {roff(summary)}"
    )


def project_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return str(tomllib.load(f)["project"]["version"])


# ---------------------------------------------------------------------------------- argparse


@dataclass(frozen=True)
class Option:
    """One argparse argument as a man page shows it."""

    flags: tuple[str, ...]  # ("--config",), or () for a positional
    metavar: str | None
    text: str


def _metavar(action: argparse.Action) -> str | None:
    if action.nargs == 0:
        return None
    if isinstance(action.metavar, str):
        return action.metavar
    if action.choices is not None:
        return "{" + ",".join(str(c) for c in action.choices) + "}"
    return action.dest.upper()


def _help(action: argparse.Action, prog: str, extra: dict[str, str]) -> str:
    """The option's help with %(default)s and the like filled in as argparse does, the
    `extra` text for options the program leaves without help, and the default."""
    text = extra.get(action.dest) or action.help or ""
    if (not text or text == argparse.SUPPRESS) and action.choices is None:
        raise ManPageError(f"{prog}: {action.option_strings or action.dest} has no help text")
    params = {**vars(action), "prog": prog}
    text = text % params
    show_default = action.default not in (None, False, [], argparse.SUPPRESS)
    if show_default and "default" not in text and action.option_strings:
        text += f" (default: {action.default})"
    listed = isinstance(action.metavar, str) and action.metavar.startswith("{")
    if action.choices is not None and action.metavar is not None and not listed:
        choices = ", ".join(str(c) for c in action.choices)
        if choices not in text:
            text += f" One of: {choices}."
    return text.strip()


def options(parser: argparse.ArgumentParser, extra: dict[str, str]) -> list[Option]:
    """Every argument of `parser` (not -h, not the subcommand slot)."""
    out = []
    for action in parser._actions:  # argparse has no public API to list its arguments
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        out.append(
            Option(
                tuple(action.option_strings), _metavar(action), _help(action, parser.prog, extra)
            )
        )
    return out


def options_roff(opts: Iterable[Option]) -> str:
    lines = []
    for opt in opts:
        if opt.flags:
            names = ", ".join(f"\\fB{roff(flag)}\\fR" for flag in opt.flags)
            head = names + (f" \\fI{roff(opt.metavar)}\\fR" if opt.metavar else "")
        else:
            head = f"\\fI{roff(opt.metavar or '')}\\fR"
        lines += [".TP", head, roff(" ".join(opt.text.split()))]
    return "\n".join(lines)


def synopsis(parser: argparse.ArgumentParser) -> str:
    """The usage line argparse prints, without its "usage: " and line breaks."""
    usage = parser.format_usage().removeprefix("usage: ")
    return roff(" ".join(usage.split()))


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


@contextmanager
def _capturing() -> Iterator[None]:
    original = argparse.ArgumentParser.parse_args

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        raise _Captured(self)

    argparse.ArgumentParser.parse_args = capture  # type: ignore[assignment, method-assign]
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]


def parser_of(parse_args: Callable[[list[str] | None], object]) -> argparse.ArgumentParser:
    """The parser a program's parse_args(argv) builds (kinkd and kink-privsep build theirs
    inside parse_args): stopped as it starts parsing, so nothing is parsed or printed."""
    with _capturing():
        try:
            parse_args([])
        except _Captured as captured:
            return captured.parser
    raise ManPageError(f"{parse_args.__module__}.parse_args did not call parse_args")


# -------------------------------------------------------------------------------- kink.toml


@dataclass
class Key:
    """One key of kink.toml as kink.toml.example shows it."""

    name: str
    value: str | None  # as written in the example; None for a table
    has_default: bool  # False: commented out in the example (unset by default)
    text: list[str] = field(default_factory=list)
    shared: bool = False  # explained together with the key above it
    in_example_table: bool = False  # in a table the example only shows commented out


@dataclass
class Group:
    """The keys of one kind of table ([daemon], a peer, a proposal, its esp or ah table)."""

    title: str
    intro: list[str] = field(default_factory=list)
    keys: dict[str, Key] = field(default_factory=dict)


GROUP_TITLES = {
    "daemon": "THE [daemon] TABLE",
    "peer": "PEERS: [defaults] AND [peers.NAME]",
    "proposal": "PROPOSALS",
    "esp": "ESP TABLES",
    "ah": "AH TABLES",
}
_TABLE = re.compile(r"^(?:# )?(?P<open>\[\[?)(?P<name>[A-Za-z0-9_.-]+)\]\]?$")
_KEY = re.compile(r"^(?P<commented># )?(?P<key>[a-z_0-9]+) = (?P<value>.+)$")


def group_of(table: str) -> str:
    """Which group a table's keys belong to: daemon, peer, proposal, esp or ah."""
    parts = table.split(".")
    if parts == ["daemon"]:
        return "daemon"
    if "proposals" in parts:
        tail = parts[parts.index("proposals") + 1 :]
        return tail[0] if tail else "proposal"
    return "peer"


def read_example(text: str) -> tuple[list[str], dict[str, Group]]:
    """The file's opening comment, and every key of the example by group with the comment
    above it. Keys written one under the other share the comment above the first (or above
    their table's header); a table header documents its own name as a key of the group that
    holds it (`proposals`, `esp`)."""
    groups = {name: Group(title) for name, title in GROUP_TITLES.items()}
    opening: list[str] = []
    comment: list[str] = []
    shapes: set[str] = set()  # tables seen, any peer name as "*": the first one explains
    previous: Key | None = None
    table: str | None = None
    table_commented = False
    for raw in text.splitlines():
        line = raw.strip()
        table_match = _TABLE.match(line)
        key_match = _KEY.match(line)
        if table_match:
            name = table_match["name"]
            parts = name.split(".")
            shape = ".".join(
                "*" if parts[i - 1 : i] == ["peers"] else p for i, p in enumerate(parts)
            )
            if len(parts) > 1 and parts[-2] != "peers":  # [peers.NAME] is a peer, not a key
                parent = groups[group_of(".".join(parts[:-1]))]
                parent.keys.setdefault(parts[-1], Key(parts[-1], None, True, comment))
            if comment and shape not in shapes:
                groups[group_of(name)].intro.append(" ".join(comment))
            shapes.add(shape)
            # A key right under its table header is explained by the header's comment.
            table, previous = name, Key(name, None, True, comment)
            table_commented = line.startswith("#")
            comment = []
        elif key_match and table is not None:
            key = Key(
                key_match["key"],
                key_match["value"],
                not key_match["commented"],
                comment or (previous.text if previous else []),
                shared=not comment and previous is not None and previous.value is not None,
                in_example_table=table_commented,
            )
            groups[group_of(table)].keys.setdefault(key.name, key)
            comment, previous = [], key
        elif line.startswith("#"):
            comment = [*comment, line.removeprefix("#").strip()]
            previous = None
        elif not line:
            if table is None and comment and not opening:
                opening = comment
            comment, previous = [], None
    return opening, groups


def checked_groups(text: str) -> tuple[list[str], dict[str, Group]]:
    """read_example, with every key the loader accepts present and explained."""
    from kink.daemon.config import DAEMON_KEYS
    from kink.daemon.config_peers import PEER_KEYS
    from kink.daemon.config_proposals import AH_KEYS, ESP_KEYS, PROPOSAL_KEYS

    opening, groups = read_example(text)
    wanted = {
        "daemon": DAEMON_KEYS,
        "peer": PEER_KEYS,
        "proposal": PROPOSAL_KEYS,
        "esp": ESP_KEYS,
        "ah": AH_KEYS,
    }
    for group, keys in wanted.items():
        for key in keys:
            found = groups[group].keys.get(key)
            if found is None:
                raise ManPageError(f"kink.toml.example does not show {group} key {key!r}")
            if found.value is not None and not found.text:
                raise ManPageError(f"kink.toml.example has no comment for {group} key {key!r}")
        unknown = set(groups[group].keys) - set(keys)
        if unknown:
            raise ManPageError(f"kink.toml.example shows unknown {group} keys {sorted(unknown)}")
    return opening, groups


def keys_roff(keys: Iterable[Key]) -> str:
    """Each key with its value, keys that share their text under one paragraph."""
    out: list[str] = []
    for key in keys:
        name = f"\\fB{roff(key.name)}\\fR"
        if key.value is None:
            head = f"{name} (a table)"
        elif key.in_example_table:
            head = f"{name} = {roff(key.value)} (for example)"
        elif key.has_default:
            head = f"{name} = {roff(key.value)}"
        else:
            head = f"{name} (unset by default; for example {roff(key.value)})"
        if key.shared and out:
            out.insert(len(out) - 1, f".TQ\n{head}")
        else:
            out += [f".TP\n{head}", roff(" ".join(key.text))]
    return "\n".join(out)


def kink_toml_page(version: str) -> str:
    text = EXAMPLE.read_text(encoding="utf-8")
    opening, groups = checked_groups(text)
    parts = [
        header("kink.toml", 5, "configuration of kinkd, the KINK daemon", version),
        ".SH SYNOPSIS\n/etc/kink/kink.toml",
        ".SH DESCRIPTION",
        paragraphs("\n".join(opening)),
        ".PP",
        paragraphs(
            "The file is TOML. Three kinds of table: [daemon] (the process and the engine's "
            "host-wide settings), [defaults] (any peer key, inherited by every peer that does "
            "not set it) and one [peers.NAME] table per peer. Each key is shown below with its "
            "default; a key without a default has the effect its text describes when left out."
        ),
    ]
    for group in groups.values():
        parts.append(f'.SH "{group.title}"')
        if group.intro:
            parts.append(paragraphs("\n\n".join(group.intro)))
        parts.append(keys_roff(group.keys.values()))
    parts += [
        ".SH EXAMPLES",
        paragraphs("The example configuration installed with kink, every key at its default:"),
        example(text),
        ".SH FILES\n.TP\n/etc/kink/kink.toml\nThe configuration kinkd reads by default.",
        ".SH SEE ALSO\n\\fBkinkd\\fR(8), \\fBkinkctl\\fR(8), \\fBkink\\-privsep\\fR(8), "
        "\\fBkrb5.conf\\fR(5)",
    ]
    return "\n".join(parts) + "\n"


# ---------------------------------------------------------------------------------- programs


def kinkd_page(version: str) -> str:
    from kink.daemon import main

    parser = parser_of(main.parse_args)
    extra = {
        "config": f"The configuration file, see kink.toml(5) (default: {main.DEFAULT_CONFIG})."
    }
    return (
        "\n".join(
            [
                header("kinkd", 8, "the KINK (RFC 4430) daemon", version),
                f".SH SYNOPSIS\n{synopsis(parser)}",
                ".SH DESCRIPTION",
                prose(
                    """kinkd negotiates IPsec security associations with its peers using KINK,
                Kerberized Internet Negotiation of Keys (RFC 4430), on UDP port 910. It
                authenticates peers with Kerberos tickets (its own key is in a keytab) and
                installs the SAs and policies through kink-privsep(8), the helper that alone
                may change the kernel's IPsec tables.

                kinkd reads and checks its whole configuration before anything else: every
                problem is reported as FILE:LINE: KEY: REASON. Started as root, it opens its
                UDP sockets, creates its state and runtime directories for the configured
                user, then drops to that user for good. Under systemd it runs as that user
                from the start with CAP_NET_BIND_SERVICE, or takes its sockets from socket
                activation ($LISTEN_FDS); it reports READY, WATCHDOG and STOPPING through
                $NOTIFY_SOCKET and logs in the journal's format when $JOURNAL_STREAM is set.
                kinkd never forks.

                SIGHUP reloads the configuration; SIGTERM and SIGINT stop kinkd, first
                deleting every SA when [daemon] delete_on_stop is true."""
                ),
                ".SH OPTIONS",
                options_roff(options(parser, extra)),
                ".SH EXIT STATUS",
                f".TP\n0\nStopped normally, or --check-config found no problem.\n"
                f".TP\n{main.EXIT_START}\nCould not start: sockets, user, directories.\n"
                f".TP\n{main.EXIT_CONFIG}\nThe configuration is invalid.",
                ".SH EXAMPLES",
                paragraphs("Check a configuration before installing it:"),
                example("kinkd --config /etc/kink/kink.toml.new --check-config"),
                paragraphs("Run under systemd (the package's units):"),
                example("systemctl enable --now kink-privsep.socket kinkd.service"),
                ".SH FILES",
                ".TP\n/etc/kink/kink.toml\nThe configuration, see kink.toml(5).",
                ".TP\n/var/lib/kink\nState kept across restarts (the epoch, RFC 4430 \\(sc3.7).",
                ".TP\n/run/kink/kinkd.sock\nThe control socket of kinkctl(8).",
                ".TP\n/run/kink\\-privsep/privsep.sock\nThe socket of kink\\-privsep(8).",
                ".SH SEE ALSO\n\\fBkink.toml\\fR(5), \\fBkinkctl\\fR(8), "
                "\\fBkink\\-privsep\\fR(8), \\fBsystemd.exec\\fR(5)",
            ]
        )
        + "\n"
    )


def kink_privsep_page(version: str) -> str:
    from kink_privsep import main

    parser = parser_of(main.parse_args)
    extra = {
        "max_sas": "The most SAs the helper keeps for the daemon at once (default: %(default)s).",
        "max_policies": "The most policies the helper keeps for the daemon at once "
        "(default: %(default)s).",
        "log_level": "What to log on standard error (default: %(default)s).",
    }
    return (
        "\n".join(
            [
                header("kink-privsep", 8, "the privileged helper of kinkd (XFRM)", version),
                f".SH SYNOPSIS\n{synopsis(parser)}",
                ".SH DESCRIPTION",
                prose(
                    """kink-privsep is the only part of kink that changes the kernel's IPsec tables
                (SAs and policies, over XFRM netlink). kinkd(8) asks it over a Unix
                SOCK_SEQPACKET socket with a small typed protocol; the helper serves the one
                uid given by --daemon-uid, checks every request and only touches SAs and
                policies whose reqid and priority lie in its ranges.

                It opens its listening socket (or takes fd 3 from systemd socket activation)
                and its netlink sockets first, then keeps CAP_NET_ADMIN as its only
                capability, runs as --user and sets no_new_privs. Started unprivileged with
                CAP_NET_ADMIN as an ambient capability (the package's unit does this), it
                only narrows itself to it. SIGTERM and SIGINT stop it."""
                ),
                ".SH OPTIONS",
                options_roff(options(parser, extra)),
                ".SH EXAMPLES",
                paragraphs("As the package's systemd units start it (socket activation):"),
                example(
                    "kink-privsep --daemon-uid kink --user kink-privsep "
                    "--socket /run/kink-privsep/privsep.sock"
                ),
                paragraphs("Without the kernel, for a test:"),
                example(
                    "kink-privsep --socket /tmp/privsep.sock --daemon-uid 1000 --backend recording"
                ),
                ".SH FILES",
                ".TP\n/run/kink\\-privsep/privsep.sock\nThe socket kinkd connects to "
                "([daemon] helper_socket in kink.toml(5)).",
                ".SH SEE ALSO\n\\fBkinkd\\fR(8), \\fBkink.toml\\fR(5), \\fBip\\-xfrm\\fR(8)",
            ]
        )
        + "\n"
    )


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def kinkctl_page(version: str) -> str:
    from kink.ctl import cli

    parser = cli.build_parser()
    summaries = {command.name: command.summary for command in cli.COMMANDS}
    parts = [
        header("kinkctl", 8, "control and inspect kinkd, the KINK daemon", version),
        f".SH SYNOPSIS\n{synopsis(parser)}",
        ".SH DESCRIPTION",
        prose(
            f"""{parser.description}

            kinkctl talks to kinkd(8) over its control socket ([daemon] control_socket in
            kink.toml(5)), open to kinkd's group or to [daemon] control_group."""
        ),
        ".SH OPTIONS",
        options_roff(options(parser, {})),
        ".SH COMMANDS",
    ]
    for name, child in _subparsers(parser).items():
        text = child.description or summaries[name]
        parts += [f'.SS "{roff(name)}"', synopsis(child), ".PP", paragraphs(text)]
        opts = options(child, {})
        if opts:
            parts.append(options_roff(opts))
    parts += [
        ".SH EXIT STATUS",
        paragraphs(parser.epilog or ""),
        ".SH EXAMPLES",
        paragraphs("The SAs kinkd holds, as JSON, and a new one with peer gw:"),
        example("kinkctl sas --json\nkinkctl initiate gw"),
        paragraphs("Print the KINK messages of a capture, decrypted with the responder's keytab:"),
        example("kinkctl decode --keytab /etc/kink/kink.keytab capture.pcap"),
        ".SH SEE ALSO\n\\fBkinkd\\fR(8), \\fBkink.toml\\fR(5), \\fBkink\\-privsep\\fR(8)",
    ]
    return "\n".join(parts) + "\n"


PAGES: dict[str, Callable[[str], str]] = {
    "kinkd.8": kinkd_page,
    "kinkctl.8": kinkctl_page,
    "kink-privsep.8": kink_privsep_page,
    "kink.toml.5": kink_toml_page,
}


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Write kink's man pages into OUTDIR.")
    ap.add_argument("outdir", type=Path)
    args = ap.parse_args(argv)
    version = project_version()
    args.outdir.mkdir(parents=True, exist_ok=True)
    try:
        for name, page in PAGES.items():
            (args.outdir / name).write_text(page(version), encoding="utf-8")
    except ManPageError as e:
        raise SystemExit(f"gen_man: {e}") from None


if __name__ == "__main__":
    main()
