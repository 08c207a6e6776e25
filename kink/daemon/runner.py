"""The Daemon: the trio program around the sans-IO engine.

Ownership: Daemon.run owns one nursery holding every task (helper connection, UDP receivers,
control server, action executor, ticket fetches, TGT renewal, state writer, signals, watchdog);
stopping is that nursery closing. The engine lives on the trio thread and is driven only here:
inputs come from the tasks, and ONE executor task drains engine.next_action() and carries the
actions out in order, awaiting each SA action's helper reply before the next action, so that a
datagram leaves only once the SA actions emitted before it are done (RFC 4430 §3.2: the
optimistic inbound SA is in place before CREATE is sent). Ticket fetches (blocking KDC calls)
run as their own tasks and answer through engine.ticket_result.
"""

import dataclasses
import errno
import logging
import math
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import Any

import trio

from kink.daemon import control_protocol as cp
from kink.daemon import engine_peers, helper_args
from kink.daemon.config import ConfigError, KinkConfig, load
from kink.daemon.control import ControlServer, bind
from kink.daemon.helper_client import HelperClient, HelperError, HelperGone
from kink.daemon.kerberos_worker import KerberosWorker
from kink.daemon.logs import NOTICE, current_level, set_level
from kink.daemon.notify import Notifier
from kink.daemon.privileges import identity
from kink.daemon.state import SaId, StateError, StateStore, choose_epoch
from kink.daemon.transport import Transport
from kink.engine import Engine, PeerConfig, StartAction
from kink.engine.events import (
    Action,
    Address,
    AllocateSpi,
    DeleteSa,
    Dropped,
    Expire,
    FetchTicket,
    FetchU2uTicket,
    HelperResult,
    Initiate,
    InstallSa,
    NegotiationFailed,
    PeerEpochChanged,
    Rekey,
    SaDeleted,
    SaEstablished,
    SaGone,
    SendDatagram,
    Terminate,
    UpdateSa,
)
from kink.krb5.context import Context, kink_principal
from kink_privsep import protocol as hp

log = logging.getLogger("kinkd")

VERSION = "0.1.0"
STOP_DELETE_TIMEOUT = 10.0  # delete_on_stop: how long DELETE exchanges may take at SIGTERM
DROP_PEER_TIMEOUT = 60.0  # reload: a removed peer's DELETE must be done by then
_HELPER_ERRNO = {hp.ERR_EXISTS: "EEXIST", hp.ERR_NOT_FOUND: "ENOENT"}
_POLICY_ACTIONS = (StartAction.TRAP, StartAction.START)


def _errno_name(exc: HelperError | HelperGone) -> str:
    if isinstance(exc, HelperGone):
        return "EHELPERGONE"
    if exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return _HELPER_ERRNO.get(exc.code, exc.code.upper())


class Daemon:
    """Daemon(config, sockets, ...).run() until stop() (or SIGTERM when handle_signals)."""

    def __init__(
        self,
        config: KinkConfig,
        sockets: list[socket.socket],
        *,
        notifier: Notifier | None = None,
        loader: Callable[[], KinkConfig] | None = None,
        handle_signals: bool = False,
    ) -> None:
        config = with_principal(config)
        self.config = config
        self._sockets = sockets
        self.notifier = notifier or Notifier(None)
        self._loader = loader or (lambda: load(config.source))
        self._handle_signals = handle_signals
        settings = config.daemon
        self.kerberos = KerberosWorker(
            config.engine.principal,
            settings.keytab,
            krb5_config=settings.krb5_config,
            ccache_dir=settings.ccache_dir,
            rcache_dir=settings.state_dir,
        )
        self.helper = HelperClient(
            os.fspath(settings.helper_socket), self._helper_event, self._resync
        )
        self.store = StateStore(settings.state_dir)
        self._engine: Engine | None = None
        self._transport: Transport | None = None
        self._control: ControlServer | None = None
        self._ranges: helper_args.HelperRanges | None = None
        self._policies: dict[str, list[dict[str, Any]]] = {}  # installed, per peer
        self._wakeup = trio.Event()
        self._stop = trio.Event()
        self._state_dirty = trio.Event()
        self._save_lock = trio.Lock()
        self._children_changed = trio.Event()
        self._leaving: set[str] = set()  # removed by a reload, DELETE in progress
        self._inherited: set[SaId] = set()  # from before a restart, still in the kernel
        self._started = 0.0
        self._nursery: trio.Nursery | None = None

    # ------------------------------------------------------------------------ life cycle

    @property
    def engine(self) -> Engine:
        assert self._engine is not None, "the daemon has not started"
        return self._engine

    @property
    def ranges(self) -> helper_args.HelperRanges:
        assert self._ranges is not None, "the daemon has not started"
        return self._ranges

    def stop(self) -> None:
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self._run(task_status)
        finally:
            if self._transport is not None:
                self._transport.close()
            for sock in self._sockets:
                sock.close()
        log.log(NOTICE, "kinkd stopped")

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        settings = self.config.daemon
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            await nursery.start(self.helper.run)
            self._ranges = helper_args.HelperRanges.from_hello(self.helper.hello)
            await self.kerberos.refresh()
            kernel = await self._kernel_sas()
            try:
                saved = self.store.load()
            except StateError as exc:
                log.warning("%s: starting a new epoch", exc)
                saved = None
            epoch, why = choose_epoch(saved, kernel, time.time())
            if saved is not None and epoch == saved.epoch:
                # SAs of this epoch still in the kernel stay part of our state (a restart
                # after this one must keep the epoch too) until the kernel drops them.
                self._inherited = set(saved.sas & kernel)
            log.log(NOTICE, "epoch %#010x (%s)", epoch, why)
            self._started = trio.current_time()
            self._engine = Engine(
                self.config.engine, self.kerberos.port, epoch=epoch, now=self._started
            )
            await self._save()
            for peer in self.config.engine.peers:
                if peer.start_action in _POLICY_ACTIONS:
                    await self._install_policies(peer)
            self._transport = Transport(self._sockets, self.config.engine.address)
            self._control = ControlServer(
                bind(settings.control_socket, settings.control_group),
                settings.control_socket,
                self._control_request,
            )
            nursery.start_soon(self._transport.serve, self._datagram)
            nursery.start_soon(self._control.serve)
            nursery.start_soon(self.kerberos.keep_fresh)
            nursery.start_soon(self._execute)
            nursery.start_soon(self._write_state)
            if self._handle_signals:
                nursery.start_soon(self._signals)
            if self.notifier.watchdog_interval is not None:
                nursery.start_soon(self._watchdog, self.notifier.watchdog_interval)
            self.engine.start(trio.current_time())
            self._wake()
            listening = ", ".join(f"{h}:{p}" for h, p in self._transport.local_addresses())
            log.log(NOTICE, "kinkd %s ready on %s as %s", VERSION, listening, _who())
            self.notifier.ready(f"epoch {epoch:#010x}, {len(self.engine.peers)} peers")
            task_status.started()
            await self._stop.wait()
            await self._shutdown()
            nursery.cancel_scope.cancel()

    async def _shutdown(self) -> None:
        """SIGTERM: DELETE every SA first if configured (else leave them: a restart keeps them
        and the epoch), remove the trap policies, save the state."""
        self.notifier.stopping()
        log.log(NOTICE, "stopping")
        if self.config.daemon.delete_on_stop:
            self.engine.request(Terminate(), trio.current_time())
            self._wake()
            with trio.move_on_after(STOP_DELETE_TIMEOUT):
                while self.engine.snapshot().children:
                    await self._children_changed.wait()
        for name in list(self._policies):
            await self._remove_policies(name)
        await self._save()

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGHUP, signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    try:
                        await self.reload()
                    except cp.ControlError as exc:
                        log.error("reload refused: %s", exc.message)
                else:
                    self.stop()

    async def _watchdog(self, interval: float) -> None:
        # systemd wants a ping within WATCHDOG_USEC; half of it leaves room (sd_watchdog_enabled).
        while True:
            self.notifier.watchdog()
            await trio.sleep(interval / 2)

    # -------------------------------------------------------------------- engine driving

    def _wake(self) -> None:
        self._wakeup.set()

    def _datagram(self, data: bytes, peer: Address) -> None:
        self.engine.datagram_received(data, peer, trio.current_time())
        self._wake()

    async def _execute(self) -> None:
        engine = self.engine
        while True:
            while (action := engine.next_action()) is not None:
                await self._carry_out(action)
            deadline = engine.next_timer()
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
            now = trio.current_time()
            if deadline is not None and now >= deadline:
                engine.handle_timer(now)

    async def _carry_out(self, action: Action) -> None:
        if isinstance(action, SendDatagram):
            assert self._transport is not None
            await self._transport.send(action.data, action.peer)
        elif isinstance(action, FetchTicket | FetchU2uTicket):
            assert self._nursery is not None
            self._nursery.start_soon(self._fetch, action)
        elif isinstance(action, AllocateSpi | InstallSa | UpdateSa | DeleteSa):
            result = await self._sa_action(action)
            self.engine.helper_result(result, trio.current_time())
        else:
            self._notice(action)

    async def _sa_action(
        self, action: AllocateSpi | InstallSa | UpdateSa | DeleteSa
    ) -> HelperResult:
        call = self.helper.call
        try:
            if isinstance(action, AllocateSpi):
                reply = await call("alloc_spi", helper_args.alloc_spi(action, self.ranges))
                return HelperResult(action.token, spi=int(reply["spi"]))
            if isinstance(action, DeleteSa):
                await call("delete_sa", helper_args.delete_sa(action))
                return HelperResult(action.token)
            spec = action.spec
            try:
                args = helper_args.sa(spec, self.ranges)
            except helper_args.Unsupported as exc:
                log.error("cannot install SA %#x: %s", spec.spi, exc)
                return HelperResult(action.token, error="EINVAL")
            if isinstance(action, UpdateSa):
                # XFRM changes only lifetimes of a mature SA, never its keys: delete, add.
                await call("delete_sa", helper_args.sa_id(spec.protocol, spec.spi, spec.dst))
                await call("add_sa", args)
            else:
                # An inbound SPI was allocated (larval SA): fill it; outbound SAs are new.
                await call("update_sa" if spec.inbound else "add_sa", args)
            del args  # the request held copies of the keys; the spec's are zeroed here
            for key in (spec.enc_key, spec.auth_key):
                key[:] = bytes(len(key))
            return HelperResult(action.token)
        except (HelperError, HelperGone) as exc:
            name = _errno_name(exc)
            log.info("%s failed: %s", type(action).__name__, name)
            return HelperResult(action.token, error=name)

    async def _fetch(self, action: FetchTicket | FetchU2uTicket) -> None:
        result = await self.kerberos.fetch(action)
        self.engine.ticket_result(result, trio.current_time())
        self._wake()

    # ---------------------------------------------------------------------------- notices

    def _notice(self, notice: Action) -> None:
        publish = self._control.publish if self._control is not None else _ignore
        if isinstance(notice, SaEstablished):
            spis = ", ".join(f"{hp_name(p)} in {i:#010x} out {o:#010x}" for p, i, o in notice.spis)
            kind = "rekeyed" if notice.rekey_of is not None else "up"
            role = "initiator" if notice.initiator else "responder"
            log.log(NOTICE, "%s: SA %d %s (%s): %s", notice.peer, notice.child, kind, role, spis)
            publish(
                cp.EVENT_SA_UP,
                {
                    "peer": notice.peer,
                    "child": notice.child,
                    "initiator": notice.initiator,
                    "spis": [list(s) for s in notice.spis],
                    "three_way": notice.three_way,
                    "rekey_of": notice.rekey_of,
                },
            )
            peer = self.engine.peers.get(notice.peer)
            if peer is not None and notice.peer not in self._policies:
                assert self._nursery is not None
                self._nursery.start_soon(self._install_policies, peer.config)
            self._sas_changed()
        elif isinstance(notice, SaDeleted):
            log.log(NOTICE, "%s: SA %d down: %s", notice.peer, notice.child, notice.reason)
            publish(
                cp.EVENT_SA_DOWN,
                {"peer": notice.peer, "child": notice.child, "reason": notice.reason},
            )
            self._sas_changed()
            self._maybe_remove_responder_policies(notice.peer)
        elif isinstance(notice, PeerEpochChanged):
            log.log(NOTICE, "%s: epoch %#x -> %#x", notice.peer, notice.old, notice.new)
            data = {"peer": notice.peer, "old": notice.old, "new": notice.new}
            publish(cp.EVENT_PEER_EPOCH, data)
        elif isinstance(notice, NegotiationFailed):
            code = f" ({notice.code})" if notice.code else ""
            log.warning("%s: %s failed: %s%s", notice.peer, notice.command, notice.reason, code)
            publish(
                cp.EVENT_NEGOTIATION_FAILED,
                {
                    "peer": notice.peer,
                    "command": notice.command,
                    "reason": notice.reason,
                    "code": notice.code,
                },
            )
        elif isinstance(notice, Dropped):
            log.debug("dropped a datagram from %s: %s", notice.peer[0], notice.cause)
            publish(cp.EVENT_DROPPED, {"cause": notice.cause, "from": list(notice.peer)})

    def _sas_changed(self) -> None:
        self._state_dirty.set()
        self._children_changed.set()
        self._children_changed = trio.Event()

    async def _write_state(self) -> None:
        """Persist the SA set whenever it changed (one write per batch of changes)."""
        while True:
            await self._state_dirty.wait()
            self._state_dirty = trio.Event()
            await self._save()

    async def _save(self) -> None:
        """Write the state file (one writer at a time: they share the temporary file)."""
        async with self._save_lock:
            await trio.to_thread.run_sync(self.store.save, self.engine.epoch, self._our_sas())

    def _our_sas(self) -> list[SaId]:
        """Our SAs in the kernel: the engine's, and those inherited from before a restart."""
        local = self.engine.config.address
        out: list[SaId] = sorted(self._inherited)
        for child in self.engine.snapshot().children:
            peer = self.engine.peers.get(child.peer)
            if peer is None or child.state != "installed":
                continue
            for protocol, spi_in, spi_out in child.spis:
                name = helper_args.PROTOCOL_NAMES[protocol]
                out += [(name, spi_in, local), (name, spi_out, peer.config.address)]
        return out

    # ---------------------------------------------------------------- helper and kernel

    def _reqids(self) -> dict[int, int]:
        """Helper reqid -> engine reqid, for ACQUIREs."""
        return {self.ranges.reqid(reqid): reqid for reqid in self.engine.policies}

    def _helper_event(self, event: hp.Event) -> None:
        if self._engine is None:
            return  # before the start: the start-up dump covers it
        if event.kind in (hp.EVENT_FLUSHED, hp.EVENT_EVENTS_LOST):
            log.warning("kernel tables flushed or events lost: re-reading them")
            assert self._nursery is not None
            self._nursery.start_soon(self._resync)
            return
        if event.kind == hp.EVENT_POLICY_DELETED:
            log.warning("a kink policy was deleted by someone else: reinstalling")
            assert self._nursery is not None
            self._nursery.start_soon(self._reinstall_policies)
            return
        kernel_event = helper_args.kernel_event(event, self._reqids())
        gone = isinstance(kernel_event, SaGone) or (
            isinstance(kernel_event, Expire) and kernel_event.hard
        )
        if gone and isinstance(kernel_event, SaGone | Expire) and self._inherited:
            name = helper_args.PROTOCOL_NAMES[kernel_event.protocol]
            self._inherited.discard((name, kernel_event.spi, kernel_event.dst))
            self._state_dirty.set()
        if kernel_event is not None:
            self.engine.kernel_event(kernel_event, trio.current_time())
            self._wake()

    async def _kernel_sas(self) -> set[SaId]:
        dump = await self.helper.call("dump", {"what": "sa"})
        return {(sa["proto"], int(sa["spi"]), str(sa["dst"])) for sa in dump.get("sas", [])}

    async def _resync(self) -> None:
        """After a helper restart, a flush or lost events: tell the engine which of its SAs
        the kernel no longer has, and put the policies back."""
        publish = self._control.publish if self._control is not None else _ignore
        publish(cp.EVENT_HELPER, {"connected": True})
        if self._engine is None:
            return
        try:
            kernel = await self._kernel_sas()
        except (HelperError, HelperGone) as exc:
            log.warning("dump after reconnect failed: %s", exc)
            return
        self._inherited &= kernel
        self._state_dirty.set()
        now = trio.current_time()
        gone = 0
        for protocol_name, spi, dst in self._our_sas():
            if (protocol_name, spi, dst) not in kernel:
                protocol = helper_args.PROTOCOL_NUMBERS[protocol_name]
                self.engine.kernel_event(SaGone(protocol, spi, dst), now)
                gone += 1
        if gone:
            log.warning("%d SAs are no longer in the kernel", gone)
        self._wake()
        await self._reinstall_policies()

    async def _reinstall_policies(self) -> None:
        for name in list(self._policies):
            peer = self.engine.peers.get(name)
            if peer is not None:
                await self._install_policies(peer.config)

    async def _install_policies(self, peer: PeerConfig) -> None:
        policies = helper_args.policies(
            peer,
            self.engine.peer_policies[peer.name],
            self.config.engine.address,
            self.ranges,
        )
        self._policies[peer.name] = policies
        for policy in policies:
            try:
                await self.helper.call("update_policy", policy)
            except (HelperError, HelperGone) as exc:
                log.error("%s: cannot install policy %s: %s", peer.name, policy["dir"], exc)
        log.info("%s: %d policies installed", peer.name, len(policies))

    async def _remove_policies(self, name: str) -> None:
        for policy in self._policies.pop(name, []):
            try:
                await self.helper.call("delete_policy", helper_args.policy_id(policy))
            except HelperError as exc:
                if exc.code != hp.ERR_NOT_FOUND:
                    log.warning("%s: cannot remove policy: %s", name, exc)
            except HelperGone:
                log.warning("%s: helper gone while removing policies", name)
                return

    def _maybe_remove_responder_policies(self, name: str) -> None:
        """A respond-only peer's policies exist while it has SAs."""
        peer = self.engine.peers.get(name)
        if peer is None or peer.config.start_action in _POLICY_ACTIONS:
            return
        if any(c.peer == name for c in self.engine.snapshot().children):
            return
        assert self._nursery is not None
        self._nursery.start_soon(self._remove_policies, name)

    # ----------------------------------------------------------------------------- reload

    async def reload(self) -> dict[str, list[str]]:
        """Re-read the configuration: new peers added, removed peers' SAs deleted with DELETE,
        changed peers deleted and added again, unchanged peers untouched."""
        self.notifier.reloading()
        try:
            try:
                new = with_principal(await trio.to_thread.run_sync(self._loader))
            except ConfigError as exc:
                raise cp.ControlError(cp.ERR_CONFIG, str(exc)) from None
            if not engine_peers.same_host_settings(self.config.engine, new.engine):
                raise cp.ControlError(
                    cp.ERR_CONFIG, "only peers can change on reload; restart kinkd for the rest"
                )
            old = {p.name: p for p in self.engine.config.peers if p.name not in self._leaving}
            fresh = {p.name: p for p in new.engine.peers}
            removed = sorted(set(old) - set(fresh))
            added = sorted(set(fresh) - set(old))
            changed = sorted(n for n in set(old) & set(fresh) if old[n] != fresh[n])
            unchanged = sorted(n for n in set(old) & set(fresh) if old[n] == fresh[n])
            self.config = new
            assert self._nursery is not None
            positions = {p.name: i for i, p in enumerate(new.engine.peers)}
            for name in removed + changed:
                replacement = fresh.get(name)
                self._leaving.add(name)
                self._nursery.start_soon(self._retire, name, replacement, positions.get(name, 0))
            for name in added:
                await self._admit(fresh[name], positions[name])
            log.log(
                NOTICE,
                "reloaded: added %s, removed %s, changed %s",
                added or "none",
                removed or "none",
                changed or "none",
            )
            result = {"added": added, "removed": removed, "changed": changed}
            if self._control is not None:
                self._control.publish(cp.EVENT_RELOAD, result)
            return {**result, "unchanged": unchanged}
        finally:
            self.notifier.ready("reloaded")

    async def _admit(self, peer: PeerConfig, position: int) -> None:
        engine_peers.add_peer(self.engine, peer, position)
        if peer.start_action in _POLICY_ACTIONS:
            await self._install_policies(peer)
        if peer.start_action is StartAction.START:
            self.engine.request(Initiate(peer.name), trio.current_time())
            self._wake()

    async def _retire(self, name: str, replacement: PeerConfig | None, position: int) -> None:
        """DELETE the SAs of a removed (or changed) peer, then forget it (and re-add it with its
        new settings)."""
        self.engine.request(Terminate(peer=name), trio.current_time())
        self._wake()
        with trio.move_on_after(DROP_PEER_TIMEOUT):
            while engine_peers.busy(self.engine, name):
                await self._children_changed.wait()
        for child in [c for c in self.engine.snapshot().children if c.peer == name]:
            log.warning("%s: SA %d still up after DELETE: removing it locally", name, child.id)
        await self._remove_policies(name)
        engine_peers.drop_peer(self.engine, name)
        self._leaving.discard(name)
        if replacement is not None:
            await self._admit(replacement, position)

    # ---------------------------------------------------------------------------- control

    async def _control_request(self, request: cp.Request) -> dict[str, Any]:
        args, command = request.args, request.command
        now = trio.current_time()
        if command == "status":
            return self._status(now)
        if command == "peers":
            return {"peers": self._peers()}
        if command == "sas":
            return {"sas": await self._sas(now)}
        if command == "initiate":
            name = self._peer_arg(args, required=True)
            assert name is not None
            self.engine.request(Initiate(name), now)
            self._wake()
            return {}
        if command in ("terminate", "rekey"):
            name = self._peer_arg(args, required=False)
            spi = args.get("spi")
            if (name is None) == (spi is None) or (spi is not None and type(spi) is not int):
                raise cp.ControlError(cp.ERR_INVALID, f"{command} takes a peer or an SPI")
            children = self._children_of(name, spi)
            if not children:
                what = f"peer {name}" if name is not None else f"SPI {spi:#x}"
                raise cp.ControlError(cp.ERR_NOT_FOUND, f"no SA of {what}")
            req = Terminate(name, spi) if command == "terminate" else Rekey(name, spi)
            self.engine.request(req, now)
            self._wake()
            return {"children": len(children)}
        if command == "reload":
            return dict(await self.reload())
        if command == "log-level":
            level = args.get("level")
            if level is not None:
                try:
                    set_level(str(level))
                except ValueError as exc:
                    raise cp.ControlError(cp.ERR_INVALID, str(exc)) from None
                log.log(NOTICE, "log level now %s", level)
                if self._control is not None:
                    self._control.publish(cp.EVENT_LOG_LEVEL, {"level": level})
            return {"level": current_level()}
        raise cp.ControlError(cp.ERR_UNKNOWN_COMMAND, command)

    def _peer_arg(self, args: dict[str, Any], *, required: bool) -> str | None:
        name = args.get("peer")
        if name is None and not required:
            return None
        if type(name) is not str:
            raise cp.ControlError(cp.ERR_INVALID, "a peer name is required")
        if name not in self.engine.peers or name in self._leaving:
            raise cp.ControlError(cp.ERR_UNKNOWN_PEER, f"no peer {name!r}")
        return name

    def _children_of(self, peer: str | None, spi: int | None) -> list[int]:
        return [
            c.id
            for c in self.engine.snapshot().children
            if c.state == "installed"
            and (peer is None or c.peer == peer)
            and (spi is None or any(spi in (i, o) for _, i, o in c.spis))
        ]

    def _status(self, now: float) -> dict[str, Any]:
        snapshot = self.engine.snapshot()
        up = {c.peer for c in snapshot.children if c.state == "installed"}
        assert self._transport is not None
        t = self._transport
        return {
            "version": VERSION,
            "pid": os.getpid(),
            "uid": os.getuid(),
            "epoch": snapshot.epoch,
            "uptime": now - self._started,
            "address": self.engine.config.address,
            "port": self.engine.config.port,
            "listening": [list(a) for a in t.local_addresses()],
            "log_level": current_level(),
            "principal": self.engine.config.principal,
            "tgt_expiry": self.kerberos.tgt_expiry,
            "helper": {
                "connected": self.helper.connected,
                "backend": self.helper.hello.get("backend"),
                "connects": self.helper.connects,
            },
            "peers": {
                "total": len(snapshot.peers),
                "up": len(up),
                "down": len(snapshot.peers) - len(up),
            },
            "sas": sum(1 for c in snapshot.children if c.state == "installed"),
            "transactions": sum(p.transactions for p in snapshot.peers),
            "counters": snapshot.counters,
            "transport": {"received": t.received, "sent": t.sent, "send_errors": t.send_errors},
            "kerberos": {"fetches": self.kerberos.fetches, "failures": self.kerberos.failures},
        }

    def _peers(self) -> list[dict[str, Any]]:
        snapshot = self.engine.snapshot()
        out = []
        for view in snapshot.peers:
            if view.name in self._leaving:
                continue  # removed by a reload, its DELETE under way
            peer = self.engine.peers[view.name].config
            out.append(
                {
                    "name": view.name,
                    "address": peer.address,
                    "port": peer.port,
                    "principal": peer.principal,
                    "start_action": peer.start_action.value,
                    "mode": peer.mode,
                    "epoch": view.epoch,
                    "sas": sum(
                        1
                        for c in snapshot.children
                        if c.peer == view.name and c.state == "installed"
                    ),
                    "transactions": view.transactions,
                    "queued": view.queued,
                    "rtt": view.rtt,
                }
            )
        return out

    async def _sas(self, now: float) -> list[dict[str, Any]]:
        try:
            dump = await self.helper.call("dump", {"what": "sa"})
        except (HelperError, HelperGone):
            dump = {"sas": []}
        kernel = {(sa["proto"], sa["spi"], sa["dst"]): sa for sa in dump.get("sas", [])}
        local = self.engine.config.address
        out = []
        for child in self.engine.snapshot().children:
            peer = self.engine.peers.get(child.peer)
            if peer is None:
                continue
            sas = []
            added: list[int] = []
            for protocol, spi_in, spi_out in child.spis:
                name = helper_args.PROTOCOL_NAMES[protocol]
                k_in = kernel.get((name, spi_in, local), {})
                k_out = kernel.get((name, spi_out, peer.config.address), {})
                c_in, c_out = k_in.get("counters", {}), k_out.get("counters", {})
                added += [c["add_time"] for c in (c_in, c_out) if c.get("add_time")]
                sas.append(
                    {
                        "protocol": name,
                        "spi_in": spi_in,
                        "spi_out": spi_out,
                        "enc": k_in.get("enc") or k_out.get("enc"),
                        "auth": k_in.get("auth") or k_out.get("auth"),
                        "bytes_in": c_in.get("bytes"),
                        "packets_in": c_in.get("packets"),
                        "bytes_out": c_out.get("bytes"),
                        "packets_out": c_out.get("packets"),
                    }
                )
            out.append(
                {
                    "child": child.id,
                    "peer": child.peer,
                    "state": child.state,
                    "initiator": child.initiator,
                    "mode": peer.config.mode,
                    "peer_epoch": child.peer_epoch,
                    "rekey_in": None if child.rekey_at is None else child.rekey_at - now,
                    "age": time.time() - min(added) if added else None,
                    "sas": sas,
                }
            )
        return out


def with_principal(config: KinkConfig) -> KinkConfig:
    """The configuration with our principal filled in: kink/<fqdn>@<default realm> when
    [daemon] principal is unset (RFC 4430 §4.2.1)."""
    if config.engine.principal:
        return config
    krb5_config = config.daemon.krb5_config
    realm = Context(None if krb5_config is None else os.fspath(krb5_config)).default_realm()
    principal = kink_principal(socket.getfqdn(), realm)
    return dataclasses.replace(
        config, engine=dataclasses.replace(config.engine, principal=principal)
    )


def hp_name(protocol: int) -> str:
    return helper_args.PROTOCOL_NAMES.get(protocol, str(protocol))


def _who() -> str:
    ids = identity()
    return f"uid {ids['uid']} gid {ids['gid']}"


def _ignore(kind: str, data: dict[str, Any]) -> None:
    """Events before the control server exists have no listener."""
