"""`kinkctl monitor`: kinkd's events as they happen, one line each."""

import argparse
import json
import sys
from collections.abc import Callable
from typing import Any

from kink.ctl import units
from kink.ctl.command import EXIT_FAILURE, EXIT_OK, Command
from kink.ctl.connect import EXIT_CODES_HELP, Failure, add_common, fail, open_client
from kink.daemon import control_protocol as cp

_DESCRIPTION = f"""\
Print kinkd's events as they happen, one line each with the local time: SAs up (and rekeyed)
and down with the reason, a peer's new epoch (it restarted, RFC 4430 §3.7), failed
negotiations with the KINK or Kerberos error, dropped datagrams, the helper connecting,
reloads and log level changes. Runs until Ctrl-C, or until kinkd stops (both exit 0).

With --json: one JSON object per line (JSON lines), {{"time": Unix time, "event": KIND,
"data": {{...}}}} with the kinds and data of the control protocol's events
(kink.daemon.control_protocol).

{EXIT_CODES_HELP}"""

_WIDTH = max(
    len(k)
    for k in (
        cp.EVENT_SA_UP,
        cp.EVENT_SA_DOWN,
        cp.EVENT_PEER_EPOCH,
        cp.EVENT_NEGOTIATION_FAILED,
        cp.EVENT_DROPPED,
        cp.EVENT_HELPER,
        cp.EVENT_RELOAD,
        cp.EVENT_LOG_LEVEL,
    )
)


def _names(names: list[str]) -> str:
    return ", ".join(names) or "none"


def _sa_up(d: dict[str, Any]) -> str:
    role = "initiator" if d["initiator"] else "responder"
    how = f"rekeyed SA {d['rekey_of']}" if d["rekey_of"] is not None else "up"
    spis = "; ".join(f"{p} in {units.spi(i)} out {units.spi(o)}" for p, i, o in d["spis"])
    three_way = ", 3-way" if d["three_way"] else ""
    return f"{d['peer']}: SA {d['child']} {how} ({role}{three_way}): {spis}"


def _failed(d: dict[str, Any]) -> str:
    code = f" ({d['code']})" if d["code"] else ""
    return f"{d['peer']}: {d['command']} failed: {d['reason']}{code}"


_TEXT: dict[str, Callable[[dict[str, Any]], str]] = {
    cp.EVENT_SA_UP: _sa_up,
    cp.EVENT_SA_DOWN: lambda d: f"{d['peer']}: SA {d['child']} down: {d['reason']}",
    cp.EVENT_PEER_EPOCH: lambda d: (
        f"{d['peer']}: epoch {units.epoch(d['old'])} -> {units.epoch(d['new'])}"
    ),
    cp.EVENT_NEGOTIATION_FAILED: _failed,
    cp.EVENT_DROPPED: lambda d: f"datagram from {d['from'][0]} dropped: {d['cause']}",
    cp.EVENT_HELPER: lambda d: "helper " + ("connected" if d["connected"] else "disconnected"),
    cp.EVENT_RELOAD: lambda d: (
        f"added {_names(d['added'])}; removed {_names(d['removed'])}; "
        f"changed {_names(d['changed'])}"
    ),
    cp.EVENT_LOG_LEVEL: lambda d: f"log level now {d['level']}",
}


def line(event: cp.Event) -> str:
    """The human line of an event; kinds this kinkctl does not know show as key=value."""
    text = _TEXT.get(event.kind)
    try:
        body = text(event.data) if text else _generic(event.data)
    except (KeyError, TypeError, ValueError):  # a newer kinkd's data: show what it sent
        body = _generic(event.data)
    return f"{units.local_time(event.time, millis=True)}  {event.kind:<{_WIDTH}}  {body}"


def _generic(data: dict[str, Any]) -> str:
    return " ".join(f"{k}={json.dumps(v)}" for k, v in data.items())


def _run(args: argparse.Namespace) -> int:
    try:
        client = open_client(args.socket, timeout=None)  # events may be hours apart
    except Failure as failure:
        return fail(args, failure)
    try:
        events = client.subscribe()
        print(f"kinkctl: monitoring kinkd at {args.socket} (Ctrl-C to stop)", file=sys.stderr)
        for event in events:
            if args.json:
                document = {"time": event.time, "event": event.kind, "data": event.data}
                print(json.dumps(document, sort_keys=True), flush=True)
            else:
                print(line(event), flush=True)
    except KeyboardInterrupt:
        return EXIT_OK
    except ConnectionError:
        print("kinkctl: kinkd closed the connection", file=sys.stderr)
        return EXIT_OK
    except cp.ControlError as exc:
        return fail(args, Failure(EXIT_FAILURE, exc.code, f"kinkd refused monitor: {exc}"))
    finally:
        client.close()
    raise AssertionError("unreachable: the event stream ends only by an exception")


COMMAND = Command(
    name="monitor",
    summary="print kinkd's events as they happen (SAs up and down, failures, ...)",
    description=_DESCRIPTION,
    configure=add_common,
    run=_run,
)
