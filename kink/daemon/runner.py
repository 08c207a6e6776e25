"""The Daemon: the trio program around the sans-IO engine.

Ownership: Daemon.run owns one nursery holding every task (helper connection, UDP receivers,
control server, action executor, outbox, ticket fetches, TGT renewal, state writer, signals,
watchdog); stopping is that nursery closing. The engine lives on the trio thread and is driven
only here: inputs come from the tasks, and ONE run of engine.next_action()'s actions at a time
carries them out in order: the executor task's, or, while it waits for inputs and the loop has
nothing else to do, the step of the task that delivered the input (a datagram, a helper reply:
_delivered), up to an action that must wait, which the executor takes over. SA actions are
pipelined to the helper (issued in order, the next one without waiting for the last reply; each
reply goes to engine.helper_result when it comes). The engine emits a datagram only once the SA
actions it depends on are done (RFC 4430 §3.2: the optimistic inbound SA is in place before
CREATE is sent), so a datagram waits in the outbox only for the save of the state it commits us
to, if any (write-ahead: _carry_out, kink.daemon.state_writer). Ticket fetches (blocking KDC
calls) run as their own tasks and answer through engine.ticket_result.
"""

# Annotations stay strings: trio.TaskStatus only exists from trio 0.23 (Debian 12 has 0.22).
from __future__ import annotations

import ctypes
import dataclasses
import errno
import functools
import gc
import logging
import math
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, KeysView
from typing import Any

import trio

from kink.daemon import control_protocol as cp
from kink.daemon import helper_args, traffic
from kink.daemon.answers import Answers, asks_ack
from kink.daemon.config import ConfigError, KinkConfig, load
from kink.daemon.control import ControlServer, bind
from kink.daemon.helper_client import HelperClient, HelperError, HelperGone, Outcome
from kink.daemon.kerberos_worker import KerberosWorker
from kink.daemon.logs import NOTICE, current_level, set_level
from kink.daemon.loop_clock import tasks_runnable, turn_time, wall_time
from kink.daemon.notify import Notifier
from kink.daemon.outbox import Outbox
from kink.daemon.privileges import identity
from kink.daemon.sa_report import child_entry
from kink.daemon.state import (
    SaId,
    Saved,
    SavedAnswer,
    SavedChild,
    SavedEntry,
    StateError,
    StateStore,
    choose_epoch,
    unaccounted,
)
from kink.daemon.state_writer import StateWriter, WriteThread, writes_inline
from kink.daemon.transport import Transport
from kink.engine import ChildRecord, ConfigChangeError, Engine, PeerConfig, StartAction
from kink.engine.events import (
    EEXIST,
    Action,
    Address,
    AllocateSpi,
    DeleteSa,
    Dropped,
    FetchTicket,
    FetchU2uTicket,
    HelperResult,
    Initiate,
    InstallSa,
    NegotiationFailed,
    PeerEpochChanged,
    PeerRemoved,
    Rekey,
    SaDeleted,
    SaEstablished,
    SaGone,
    SendDatagram,
    Terminate,
    UpdateSa,
)
from kink.krb5.context import Context, kink_principal
from kink.wire import MessageType
from kink_privsep import protocol as hp

log = logging.getLogger("kinkd")

VERSION = "0.1.0"
STOP_DELETE_TIMEOUT = 10.0  # delete_on_stop: how long DELETE exchanges may take at SIGTERM
# Allocations between two passes of the cycle collector over the young objects (the stdlib's
# default is 700). Under load kinkd allocates thousands of containers per exchange, nearly all
# freed by reference counting; a pass every 700 found nothing to free (bench_exchange at 1,000
# exchanges/s offered: 0 to 9 objects collected in 3,000 exchanges) and went over what lives
# on (the engine's reply cache, the children's records) again and again: 17.5 us of CPU per
# exchange on the initiator and 56.5 on the responder (gc.callbacks, thread CPU time). At
# 10,000: 0 and 26 us.
GC_YOUNG_THRESHOLD = 5_000
# Young passes between two passes over the middle generation: none. What a young pass leaves
# goes through a middle pass at the next one, so no pass goes over more than two young passes'
# survivors. With the default (10) the middle generation gathered ten of them: under load the
# responder keeps each exchange's decoded command, REPLY and timers for seconds (the reply
# cache that answers a retransmission, RFC 4430 §9), ~100,000 objects that lived through a
# young pass (gc.get_objects at the middle pass: Answer, IdPayload, Timer, ...), and the pass
# over them took 59-64 ms of CPU every ~6 s at 1,000 exchanges/s (gc.callbacks, thread CPU):
# the loop stood still and the exchanges of those 60 ms (1-2% of them, so the p99) waited.
# Now each pass takes at most ~9 ms, ~13 us of CPU per exchange in all (16 before). (5,000
# young: the young passes at 10,000 took 3-15 ms each.)
GC_MIDDLE_THRESHOLD = 0
# Middle passes between two full passes (the default is 10): at a middle pass every other
# young pass (~0.5 s at 1,000/s), 10 would be a full pass over every object that lives on
# (100,000s, 60+ ms) every ~5 s; with 100, one in ~50 s at most under that load (24 middle
# passes in 12 s; none in those runs: CPython also waits for a quarter more old objects).
GC_OLD_THRESHOLD = 100
# A dropped datagram is counted by its cause (kinkctl status) and logged once per cause: the
# first of a cause at INFO, then at most one line per cause every DROP_LOG_INTERVAL seconds
# saying how many came since (each at DEBUG). A flood of bad datagrams (RFC 4430 §10, issue 9)
# then writes a line a minute per cause, not one per datagram, and a new cause shows at once.
DROP_LOG_INTERVAL = 60.0
_HELPER_ERRNO = {hp.ERR_EXISTS: EEXIST, hp.ERR_NOT_FOUND: "ENOENT"}
_POLICY_ACTIONS = (StartAction.TRAP, StartAction.START)
# A KINK header's first octet is its Type (RFC 4430 §4).
_REPLY, _ACK, _DELETE = (
    bytes((t,)) for t in (MessageType.REPLY, MessageType.ACK, MessageType.DELETE)
)


class StartError(Exception):
    """kinkd cannot run with what it found (the helper's ranges)."""


def _sa_id(sa: dict[str, Any]) -> SaId:
    """An SA of a helper dump as (protocol name, SPI, destination); the names and addresses,
    a few distinct ones in 100,000s of SAs, interned (issue 9: a string each was 100 bytes
    per SA at start-up)."""
    return sys.intern(str(sa["proto"])), int(sa["spi"]), sys.intern(str(sa["dst"]))


def _sa_ids(
    local: str, remote: str | None, spis: Iterable[tuple[int, int, int]], *, outbound: bool = True
) -> list[SaId]:
    """The kernel SAs of a child: inbound to us (`local`), outbound to the peer (`remote`;
    none for a peer no longer configured) (not yet for a responder child awaiting the ACK,
    RFC 4430 §3.2)."""
    if remote is None:
        return []
    out: list[SaId] = []
    for protocol, spi_in, spi_out in spis:
        name = helper_args.PROTOCOL_NAMES[protocol]
        out.append((name, spi_in, local))
        if outbound:
            out.append((name, spi_out, remote))
    return out


def _record_sas(local: str, remote: str | None, record: ChildRecord) -> frozenset[SaId]:
    """The kernel SAs of a child's record, as saved with it."""
    return frozenset(_sa_ids(local, remote, record.spis, outbound=not record.awaiting_ack))


def _give_back_free_memory() -> None:
    """Return the C heap's free pages to the system (glibc's malloc_trim; nothing elsewhere).
    Start-up reads the state file and the kernel's SAs, 100s of MBs with 100,000s of children,
    in blocks that are all free once it is over; glibc returns only the top of its heap by
    itself, and what lies below the engine's objects would count as kinkd's for good (issue 9:
    some 800 bytes per child)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)


def _errno_name(exc: HelperError | HelperGone) -> str:
    """HelperResult.error. The helper's own code decides where it has one of _HELPER_ERRNO:
    the engine acts on EEXIST (kink.engine.events: another SPI), whatever errno came with it."""
    if isinstance(exc, HelperGone):
        return "EHELPERGONE"
    name = _HELPER_ERRNO.get(exc.code)
    if name is not None:
        return name
    if exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return exc.code.upper()


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
            os.fspath(settings.helper_socket), self._helper_event, self._resync, self._delivered
        )
        self.store = StateStore(settings.state_dir)
        self.writer = StateWriter(self._save, self._durable)
        self._write_thread = WriteThread()
        self.outbox = Outbox(self._send, self._try_send)
        self.answers = Answers(config.engine.reply_cache_lifetime)
        self._engine: Engine | None = None
        self._transport: Transport | None = None
        self._control: ControlServer | None = None
        self._ranges: helper_args.HelperRanges | None = None
        self._policies: dict[str, list[dict[str, Any]]] = {}  # installed, per peer
        # Policies of peers removed by a reload, kept until their DELETE is over (PeerRemoved).
        self._retired: dict[str, list[dict[str, Any]]] = {}
        self._bypass: list[dict[str, Any]] = []  # ICMPv6 neighbour discovery, installed
        self._wakeup = trio.Event()
        # The executor waits for _wakeup (parked) with every action carried out and its timer
        # set (_timer: its cancel scope); while it does, the inputs of a delivering task's step
        # are carried out at its end by that task (_delivered); an action that must wait is
        # left to it (_deferred), which takes that before asking the engine for more.
        self._parked = False
        self._timer: trio.CancelScope | None = None
        self._inputs = False  # an input came while the executor was parked: _delivered's
        self._deferred: Action | None = None
        self._waiting = False  # _delivered waits for the helper's replies (wait_replies)
        # Only where kinkd has one CPU, which its helper shares (a small VM, user-mode Linux):
        # there the helper's work and the loop's never overlap, so holding the loop for the
        # replies (_delivered) costs nothing. With more, the loop would handle a datagram
        # that comes meanwhile beside the helper's work, not after it.
        self._wait_for_helper = len(os.sched_getaffinity(0)) == 1
        self._lines: list[tuple[int, str, tuple[object, ...]]] = []  # _line's, not yet written
        # Dropped datagrams' causes logged: [when the next line may come, drops since the last].
        self._drops_logged: dict[str, list[float]] = {}
        self._stop = trio.Event()
        self._children_changed = trio.Event()
        self._policy_checks: set[str] = set()  # respond-only peers that may have lost all SAs
        self._replaced: set[int] = set()  # children a rekey's up line said it replaces
        self._answering = False  # a responder child installed in one go: its REPLY is next
        self._established = 0  # the state generation of the last child established
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
            self.store.close()
        log.log(NOTICE, "kinkd stopped")

    async def _run(self, task_status: trio.TaskStatus[None]) -> None:
        settings = self.config.daemon
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            # Signals and stop() are heeded from the first moment: start-up may wait long
            # (for a helper that is away, a KDC), and SIGTERM's default action would end
            # kinkd without its last words to the log and to systemd.
            if self._handle_signals:
                nursery.start_soon(self._signals)
            ready = trio.Event()
            nursery.start_soon(self._stop_during_start_up, ready, nursery.cancel_scope)
            await nursery.start(self.helper.run)
            self._ranges = helper_args.HelperRanges.from_hello(self.helper.hello)
            base, count = settings.helper_reqid_base, settings.helper_reqids
            if not self._ranges.covers(base, base + count - 1):
                raise StartError(
                    f"the helper's reqid range {self._ranges.reqid_lo:#x}-"
                    f"{self._ranges.reqid_hi:#x} does not hold helper_reqid_base {base:#x} "
                    f"+ helper_reqids {count:#x}",
                )
            await self.kerberos.refresh()
            epoch = await self._start_engine()
            # The engine and the children taken over (100,000s of objects that live): out of
            # the collector's passes from now on, which the first save's record of each child
            # set off again and again (issue 9).
            gc.freeze()
            await self.writer.save_now()
            await self._install_bypass()
            # Without the cycle collector, and out of its passes once made: the policies of
            # 10,000s of peers (they live) and their requests, which its passes went over again
            # and again (issue 9: 0.2 s of 1.4 s of CPU with 10,000 peers).
            gc.disable()
            try:
                await self._install_policies(
                    *(peer for peer in self.config.engine.peers if self._wants_policies(peer))
                )
            finally:
                gc.freeze()
                gc.enable()
            self._transport = Transport(self._sockets, self.config.engine.address)
            self._control = ControlServer(
                bind(settings.control_socket, settings.control_group),
                settings.control_socket,
                self._control_request,
            )
            nursery.start_soon(self._transport.serve, self._datagram, self._delivered)
            nursery.start_soon(self._control.serve)
            nursery.start_soon(self.kerberos.keep_fresh)
            nursery.start_soon(self._execute)
            nursery.start_soon(self.outbox.run)
            nursery.start_soon(self.writer.run)
            nursery.start_soon(traffic.watch, self.engine, self.helper, self._wake)
            if self.notifier.watchdog_interval is not None:
                nursery.start_soon(self._watchdog, self.notifier.watchdog_interval)
            self.engine.start(trio.current_time())
            self._wake()
            listening = ", ".join(f"{h}:{p}" for h, p in self._transport.local_addresses())
            log.log(NOTICE, "kinkd %s ready on %s as %s", VERSION, listening, _who())
            # What start-up made (configuration, peers, policies: 100,000s of objects with
            # 10,000 peers) lives long: out of the collector's full passes, which otherwise go
            # over all of it again and again. The price: such an object that a reload drops
            # is freed by reference counting only (never if it is part of a cycle).
            gc.freeze()
            gc.set_threshold(GC_YOUNG_THRESHOLD, GC_MIDDLE_THRESHOLD, GC_OLD_THRESHOLD)
            _give_back_free_memory()
            self.notifier.ready(f"epoch {epoch:#010x}, {len(self.engine.peers)} peers")
            ready.set()
            task_status.started()
            await self._stop.wait()
            await self._shutdown()
            nursery.cancel_scope.cancel()

    async def _stop_during_start_up(self, ready: trio.Event, scope: trio.CancelScope) -> None:
        """stop() before start-up is over ends it: no call waits any longer for a helper
        that may never come (HelperClient.give_up), and the start-up is cancelled."""
        await self._stop.wait()
        if not ready.is_set():
            self.notifier.stopping()
            log.log(NOTICE, "stopping during start-up")
            self.helper.give_up()
            scope.cancel()

    async def _shutdown(self) -> None:
        """SIGTERM: DELETE every SA first if configured (else leave them: a restart keeps them
        and the epoch), remove the trap policies, save the state. Nothing waits for a helper
        that is away (it may never come back): its calls fail at once."""
        self.helper.give_up()
        self.notifier.stopping()
        log.log(NOTICE, "stopping")
        # The DELETEs of pairs rekeyed away are held for a moment (kink.engine.initiator
        # DELETE_HOLD): they leave now, as a DELETE already started would (RFC 4430 §3.6), so
        # that the peer does not keep those pairs until they expire; so do those of rekeys
        # that end during the shutdown.
        self.engine.stop_holding(trio.current_time())
        self._wake()
        if self.config.daemon.delete_on_stop:
            self.engine.request(Terminate(), trio.current_time())
            self._wake()
            with trio.move_on_after(STOP_DELETE_TIMEOUT):
                while self.engine.snapshot().children:
                    await self._children_changed.wait()
        # Every peer's policies in one pipeline: one peer after the other was a helper round
        # trip each, seconds with 10,000s of peers (issue 9).
        policies = {
            _policy_key(p): p
            for table in (self._policies, self._retired)
            for peer_policies in table.values()
            for p in peer_policies
        }
        self._policies, self._retired = {}, {}
        await self._delete_policies("stopping", list(policies.values()))
        await self._remove_bypass()
        await self.writer.save_now()

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
        answer = self.answers.replay(data, peer[0])
        if answer is not None:
            # A CREATE answered before a restart, retransmitted: its REPLY (answers.py).
            log.info("%s: CREATE %#x answered again from the state file", peer[0], answer.xid)
            assert self._nursery is not None
            self._nursery.start_soon(self._send, answer.reply, answer.to)
            return
        if peer[0] in self.engine.peers_by_address:
            # Only a configured peer's CREATE is ever answered: datagrams from elsewhere (a
            # flood) leave no trace here, not even in the bounded table of CREATEs asked.
            self.answers.received(data, peer[0])
        assert self._transport is not None
        # The transport's clock read for this datagram (Transport.arrived): not another one.
        self.engine.datagram_received(data, peer, self._transport.arrived)
        self._input()

    def _input(self) -> None:
        """An input of the transport or of the helper reader went to the engine: its actions
        are carried out at the end of that task's step (_delivered) if the executor is parked,
        else by the executor, woken."""
        if self._parked:
            self._inputs = True
        else:
            self._wake()

    def _delivered(self) -> None:
        """A turn of the transport's deliveries (or the first datagram of one woken by epoll,
        Transport.serve) or a wake-up of the helper reader is over. Its inputs' actions are
        carried out now, in this step, when the executor is parked (so no other run of actions
        is under way: one at a time, in order, kink.engine.events) and no other task is ready
        to run: a lone exchange's helper request leaves in the step that delivered its CREATE,
        and its save and REPLY in the step that delivered the helper's reply, each without the
        executor's turn of the loop (issue 9: a turn is an epoll_wait and two clock reads,
        system calls each in user-mode Linux). Under load other tasks are ready: the executor
        is woken and carries out the inputs of all of them in one run (one helper message and
        one save for them all).

        On one CPU (_wait_for_helper), a run that sent helper requests, with still no other
        task ready, waits for their replies in the same step (HelperClient.wait_replies, which
        delivers them and calls this again) and carries out what they led to: the loop would
        only have slept until they came. A lone CREATE's save and REPLY then leave in the step
        that delivered it, without the 4 system calls of a wait in the loop (issue 9)."""
        if not self._inputs:
            return
        self._inputs = False
        if not self._parked or self._wakeup.is_set() or tasks_runnable():
            self._wake()
            return
        self._parked = False  # inputs of this run's own steps wake the executor (_input)
        try:
            while (action := self.engine.next_action()) is not None:
                if not self._carry_out_now(action):
                    # The executor takes it first, and what follows it from the engine.
                    self._deferred = action
                    self._wake()
                    break
            self._ran()
        finally:
            self._parked = True
        if self._waiting or not self._wait_for_helper:
            return  # (called by wait_replies, below: it goes on waiting if there is more)
        self._waiting = True
        try:
            while (
                self._deferred is None
                and not self._wakeup.is_set()
                and not tasks_runnable()
                and self.helper.wait_replies()
            ):
                pass
        finally:
            self._waiting = False

    async def _send(self, data: bytes, peer: Address) -> None:
        assert self._transport is not None
        await self._transport.send(data, peer)

    def _try_send(self, data: bytes, peer: Address) -> bool:
        assert self._transport is not None
        return self._transport.try_send(data, peer)

    async def _execute(self) -> None:
        engine = self.engine
        while True:
            # One cancel scope until a timer fires, its deadline the engine's next timer while
            # the executor waits for an input, none while it carries out actions (never cut
            # short). Entering a scope reads the clock (trio checks its deadline), setting its
            # deadline does not: the clock is read once per timer that fires, not per wake-up
            # (a system call in user-mode Linux, issue 9).
            with trio.CancelScope() as timer:
                self._timer = timer
                while True:
                    while (action := self._next_action()) is not None:
                        await self._carry_out(action)
                    self._ran()
                    self._parked = True
                    try:
                        await self._wakeup.wait()
                    finally:
                        self._parked = False
                    self._wakeup = trio.Event()
                    timer.deadline = math.inf
                    if trio.current_effective_deadline() == -math.inf:
                        # Cancelled (the deadline passed) as an input woke us: no checkpoint
                        # since, the scope closes without Cancelled. (Not timer.cancel_called:
                        # it reads the clock.) Else the wait was cancelled.
                        break
            # The reading that expired the timer's deadline (loop_clock): not another one.
            engine.handle_timer(turn_time())

    def _next_action(self) -> Action | None:
        """The executor's next action: one a delivering step left to it first (_delivered)."""
        action, self._deferred = self._deferred, None
        return self.engine.next_action() if action is None else action

    def _ran(self) -> None:
        """The end of a run of the engine's actions, by the executor or a delivering step."""
        # The helper requests of these actions go now if the helper has none in hand, not at
        # the helper client's writer task's next turn: a turn less before their replies
        # (HelperClient.flush).
        self.helper.flush()
        self._flush_changes()
        self._write_lines()
        if self._policy_checks:
            self._check_policies()
        if self._deferred is None and self._timer is not None:
            # The executor's timer, for the engine's timers as they are now (set while it is
            # parked, and by a delivering step as it waits: without a wake-up of it).
            deadline = self.engine.next_timer()
            self._timer.deadline = math.inf if deadline is None else deadline

    def _flush_changes(self) -> None:
        """The state changes of a run of the engine's actions: saved now if a datagram waits
        for them, the write will be done inline (a small batch, writes_inline) and the loop has
        nothing else to do, the datagram then leaving in this step (StateWriter.save_inline);
        else handed to the writer task (StateWriter.flush). Under load another task is ready to
        run: the write goes to the writer task and its thread, and batches what comes
        meanwhile."""
        writer = self.writer
        touched = self.engine.sadb.touched  # what the save will hold (Engine.record_changes)
        if (
            writer.waited_for
            and touched is not None
            and not self.store.wants_snapshot(self.engine.epoch)
            and writes_inline(len(touched))
        ):
            writer.save_inline(self._save_inline)
        else:
            writer.flush()

    async def _carry_out(self, action: Action) -> None:
        if self._carry_out_now(action):
            return
        assert isinstance(action, AllocateSpi | InstallSa | UpdateSa | DeleteSa)
        self._write_lines()  # not held while the action waits
        if isinstance(action, InstallSa):
            await self._responder_policies(action.spec.reqid)
        if not self.helper.connected:
            # Its submit waits for the helper: the changes noted so far are saved meanwhile
            # (a datagram may wait for them, not for this action).
            self.writer.flush()
            await self.helper.ready()
        self._sa_action(action)

    def _carry_out_now(self, action: Action) -> bool:
        """Carry out `action` in this step unless it must wait (False, nothing done): an SA
        action while the helper is away, or the first install of a respond-only peer, whose
        policies come first (_responder_policies)."""
        if type(action) is Dropped:
            # Asked first: every datagram of a flood leaves one (issue 9).
            self._dropped(action)
        elif isinstance(action, SendDatagram):
            self.outbox.post(action.data, action.peer, self._write_ahead(action.data, action.peer))
        elif isinstance(action, FetchTicket | FetchU2uTicket):
            assert self._nursery is not None
            self._nursery.start_soon(self._fetch, action)
        elif isinstance(action, AllocateSpi | InstallSa | UpdateSa | DeleteSa):
            if not self.helper.connected or (
                isinstance(action, InstallSa) and self._unguarded(action.spec.reqid) is not None
            ):
                return False
            self._sa_action(action)
        else:
            self._notice(action)
        return True

    def _write_ahead(self, data: bytes, peer: Address) -> int:
        """The state generation a datagram we send must wait for (0: none), by issue 10's rule:
        a kinkd killed at any point either sent what commits the peer to SAs and can take its
        own back after a restart, or did not and deletes the SAs its state file does not
        account for. So a datagram waits only if the peer acts on it on SAs whose counterpart
        here must survive a restart, and only for the save of that:
        - a REPLY to a CREATE that installed its children in one go (2-way, RFC 4430 §3.2):
          the initiator installs the pair on it. It is kept with its children (answers.py:
          a retransmitted CREATE after a restart is answered with it), so it waits for a
          save begun after it: a generation of its own, noted here. Its children were noted
          just before (their SaEstablished), in the same step: a write running now has none.
        - a REPLY with ACKREQ (3-way, §3.2): the initiator may install the pair on it; its
          children awaiting the ACK are saved with it (Engine.record_changes), in a generation
          of its own noted here (which child a datagram is for, the daemon cannot tell: a
          write running now may hold them already, and the REPLY waits for the next one).
        - an ACK (§3.2): the responder installs its outbound SA on it, so it waits for the
          save of our child installed on the REPLY, in a generation of its own noted here:
          the child was established (and noted) just before it, or is in the same step just
          after it (kink.engine.initiator's _acknowledge), before any write can begin.
        - a DELETE: the peer drops the pairs it names, which a rekey or a duplicate replaced
          (§3.6) by a child established before it: it waits for the generation of the last
          child established, so that a restart finds the replacement. The children it names
          were noted lazily (StateWriter.changed_lazily): a restart that finds one in the file
          does not take it over without all its SAs, whose deletion was issued before.
        The others commit the peer to nothing a restart here would leave half-done, and leave
        at once:
        - a CREATE: the peer installs its pair only with its REPLY; our optimistic inbound SA
          is not saved (Engine.record_changes) and a kinkd killed before that REPLY deletes
          it, as one killed before the CREATE left;
        - the REPLY to a DELETE (§6.4: the sender "has deleted or will shortly delete" its
          SAs): our children going were noted lazily, as above;
        - STATUS, GETTGT and their REPLYs, error REPLYs, a REPLY that installed nothing: no
          state to save;
        - a retransmission (§9): the same bytes as a datagram still held wait with it (Outbox);
          once the first has left, its save is done. (A REPLY with ACKREQ or an ACK sent again
          notes a generation anew all the same: nothing tells it from a first one here.)
        """
        kept = self.answers.sent(data, peer)
        kind = data[:1]
        if kind == _REPLY:
            # One that follows an install waits for it even if not kept (its CREATE forgotten
            # by the bounded table of those asked, answers.py).
            answering, self._answering = self._answering, False
            return self.writer.changed() if kept or answering or asks_ack(data) else 0
        if kind == _ACK:
            return self.writer.changed()
        if kind == _DELETE:
            return self._established
        return 0

    def _sa_action(self, action: AllocateSpi | InstallSa | UpdateSa | DeleteSa) -> None:
        """Issue the helper request(s) of an SA action (the helper up, or given up: then each
        fails at once); the reply goes to the engine when it comes (a datagram that depends on
        it is emitted only after that: kink.engine.events)."""
        token = action.token

        def finish(outcome: Outcome) -> None:
            if isinstance(outcome, HelperError | HelperGone):
                name = _errno_name(outcome)
                log.info("%s failed: %s", type(action).__name__, name)
                result = HelperResult(token, error=name)
            elif isinstance(action, AllocateSpi):
                result = HelperResult(token, spi=int(outcome["spi"]))
            else:
                result = HelperResult(token)
            self.engine.helper_result(result, self._helper_time())
            self._input()

        # Without waking the helper client's writer task: the run's end flushes them (_ran).
        submit = functools.partial(self.helper.submit_nowait, wake=False)
        if isinstance(action, AllocateSpi):
            submit("alloc_spi", helper_args.alloc_spi(action, self.ranges), finish)
            return
        if isinstance(action, DeleteSa):
            submit("delete_sa", helper_args.delete_sa(action), finish)
            return
        spec = action.spec
        try:
            args = helper_args.sa(
                spec, action.acquire_seq if isinstance(action, InstallSa) else None
            )
        except helper_args.Unsupported as exc:
            log.error("cannot install SA %#x: %s", spec.spi, exc)
            finish(HelperError(hp.ERR_INVALID, str(exc), errno.EINVAL))
            return
        if isinstance(action, UpdateSa):
            # XFRM changes only lifetimes of a mature SA, never its keys: delete, add. The
            # add's outcome is the action's (the SA has the new keys or it does not).
            sa_id = helper_args.sa_id(spec.protocol, spec.spi, spec.dst)
            submit("delete_sa", sa_id, _ignore_outcome)
            submit("add_sa", args, finish)
        else:
            # New SAs are added (EEXIST if the SPI is taken: the engine draws another); only
            # the larval SA of an AllocateSpi is filled (XFRM UPDSA).
            submit("update_sa" if action.fills else "add_sa", args, finish)
        del args  # the request held copies of the keys; the spec's are zeroed here
        for key in (spec.enc_key, spec.auth_key):
            key[:] = bytes(len(key))

    async def _fetch(self, action: FetchTicket | FetchU2uTicket) -> None:
        result = await self.kerberos.fetch(action)
        self.engine.ticket_result(result, trio.current_time())
        self._wake()

    # ---------------------------------------------------------------------------- notices

    def _line(self, level: int, message: str, *args: object) -> None:
        """A notice's log line, written at the end of the run of actions (_write_lines), once
        the run's datagrams have left: in user-mode Linux a line is two system calls (a clock
        read and a write), which came before a lone exchange's REPLY (issue 9). The lines keep
        their order among themselves."""
        if log.isEnabledFor(level):
            self._lines.append((level, message, args))

    def _write_lines(self) -> None:
        lines, self._lines = self._lines, []
        for level, message, args in lines:
            log.log(level, message, *args)

    def _notice(self, notice: Action) -> None:
        # An event's data is made only while a kinkctl monitor listens: an SA up and one down
        # per rekey on each side, 1,000s a second.
        control = self._control
        publish = control.publish if control is not None and control.listening else None
        if isinstance(notice, SaEstablished):
            if not notice.initiator and not notice.three_way:
                self.answers.established(notice.child)
                self._answering = True
            rekey_of = notice.rekey_of
            if rekey_of is not None and rekey_of in self.engine.sadb.children:
                self._replaced.add(rekey_of)
            # One line per SA pair (or bundle) up and one per pair down, as IKE daemons log
            # them: the up line with the SPIs, the down line with the child's number. Made
            # only at a level that shows it: two per rekey on each side, 1,000s a second.
            if log.isEnabledFor(NOTICE):
                self._line(
                    NOTICE,
                    "%s: SA %d %s (%s): %s",
                    notice.peer,
                    notice.child,
                    "up" if rekey_of is None else f"rekeyed (replaces SA {rekey_of})",
                    "initiator" if notice.initiator else "responder",
                    ", ".join(
                        f"{hp_name(p)} in {i:#010x} out {o:#010x}" for p, i, o in notice.spis
                    ),
                )
            if publish is not None:
                publish(
                    cp.EVENT_SA_UP,
                    {
                        "peer": notice.peer,
                        "child": notice.child,
                        "initiator": notice.initiator,
                        "spis": [[hp_name(p), i, o] for p, i, o in notice.spis],
                        "three_way": notice.three_way,
                        "rekey_of": rekey_of,
                    },
                )
            self._sas_changed()
            self._established = self.writer.generation
        elif isinstance(notice, SaDeleted):
            # The old pair of a rekey was announced by its replacement's up line ("replaces
            # SA m"): its down line is at INFO, so NOTICE shows each pair come and go once.
            # Only the initiator knows a rekey as one (to the responder it is a CREATE like
            # any, RFC 4430 §3.6): there every down line stays at NOTICE.
            child = notice.child
            if child in self._replaced:
                self._replaced.discard(child)
                level = logging.INFO
            else:
                level = NOTICE
            self._line(level, "%s: SA %d down: %s", notice.peer, child, notice.reason)
            if publish is not None:
                publish(
                    cp.EVENT_SA_DOWN,
                    {"peer": notice.peer, "child": child, "reason": notice.reason},
                )
            self._sas_changed(lazily=True)
            self._maybe_remove_responder_policies(notice.peer)
        elif isinstance(notice, PeerEpochChanged):
            self._line(NOTICE, "%s: epoch %#x -> %#x", notice.peer, notice.old, notice.new)
            if publish is not None:
                data = {"peer": notice.peer, "old": notice.old, "new": notice.new}
                publish(cp.EVENT_PEER_EPOCH, data)
        elif isinstance(notice, PeerRemoved):
            self._line(NOTICE, "%s: removed", notice.peer)
            assert self._nursery is not None
            self._nursery.start_soon(self._drop_retired, notice.peer)
            self._sas_changed(lazily=True)
        elif isinstance(notice, NegotiationFailed):
            code = f" ({notice.code})" if notice.code else ""
            self._line(
                logging.WARNING,
                "%s: %s failed: %s%s",
                notice.peer,
                notice.command,
                notice.reason,
                code,
            )
            if publish is not None:
                publish(
                    cp.EVENT_NEGOTIATION_FAILED,
                    {
                        "peer": notice.peer,
                        "command": notice.command,
                        "reason": notice.reason,
                        "code": notice.code,
                    },
                )
            self._maybe_remove_responder_policies(notice.peer)

    def _dropped(self, notice: Dropped) -> None:
        """Log a dropped datagram once per cause (DROP_LOG_INTERVAL); the engine counted it."""
        cause = notice.cause
        logged = self._drops_logged.get(cause)
        assert self._transport is not None  # a datagram it delivered was dropped
        now = self._transport.arrived  # read for that datagram: no clock read of its own
        if logged is None:
            self._drops_logged[cause] = [now + DROP_LOG_INTERVAL, 0.0]
            self._line(
                logging.INFO,
                "dropped a datagram from %s: %s (more for this cause are counted, kinkctl "
                "status, and logged at most once a minute)",
                notice.peer[0],
                cause,
            )
        elif now >= logged[0]:
            self._line(
                logging.INFO,
                "dropped a datagram from %s: %s (%d more for this cause since the last line)",
                notice.peer[0],
                cause,
                int(logged[1]),
            )
            logged[0], logged[1] = now + DROP_LOG_INTERVAL, 0.0
        else:
            logged[1] += 1
            self._line(logging.DEBUG, "dropped a datagram from %s: %s", notice.peer[0], cause)
        control = self._control
        if control is not None and control.listening:
            control.publish(cp.EVENT_DROPPED, {"cause": notice.cause, "from": list(notice.peer)})

    def _sas_changed(self, *, lazily: bool = False) -> None:
        """A child came or went: saved promptly, the datagrams that depend on it waiting for
        that save (_write_ahead), or for a child gone (lazily) within state_writer.LAZY_DELAY."""
        if lazily:
            self.writer.changed_lazily()
        else:
            self.writer.changed()
        self._children_changed.set()
        self._children_changed = trio.Event()

    async def _save(self) -> None:
        """The state writer's save: what changed in the engine's children since the last one
        (Engine.record_changes), with the REPLYs kept for them (answers.py), written in the
        write thread, or inline if few (StateStore.update: a batch appended to the journal, and
        a compaction started when the journal is long); or every child when the store wants a
        snapshot (StateStore.snapshot: the first save, among others), always in the write
        thread."""
        epoch = self.engine.epoch
        if not self.store.wants_snapshot(epoch):
            write, size = self._batch()
            # A batch of a few children is written on the trio thread when the loop is idle
            # (WriteThread.run: a lone exchange's REPLY then waits for no thread hand-off).
            await self._write_thread.run(write, size, written=self.writer.written)
            return
        now = wall_time()
        answers = self.answers.take(now)
        changes = self.engine.record_changes(turn_time(), also=list(self.engine.sadb.children))
        entries = self._every_child(changes.records, answers)
        await self._write_thread.run(
            lambda: self.store.snapshot(epoch, now, entries), written=self.writer.written
        )

    def _every_child(
        self, records: dict[int, ChildRecord], answers: dict[int, SavedAnswer]
    ) -> Iterator[tuple[int, SavedChild]]:
        """The SavedChild of each of `records` (every child), with its answer if it has one,
        made as a thread encodes it for a snapshot, from the records and the peers'
        addresses taken now: not 100,000s of them at once."""
        addresses = {name: peer.config.address for name, peer in self.engine.peers.items()}
        local = self.engine.config.address

        def entries() -> Iterator[tuple[int, SavedChild]]:  # in the thread: what it took now
            for child_id, record in records.items():
                ids = _record_sas(local, addresses.get(record.peer), record)
                yield child_id, SavedChild(record, ids, answers.get(child_id))

        return entries()

    def _save_inline(self) -> None:
        """_flush_changes' save, on the trio thread (StateWriter.save_inline): what changed
        since the last save appended to the journal (_flush_changes found that the store
        wants no snapshot)."""
        write, _ = self._batch()
        write()

    def _batch(self) -> tuple[Callable[[], None], int]:
        """The write of a journal batch (StateStore.update) of what changed in the engine's
        children since the last save (Engine.record_changes) with the REPLYs kept for them
        (answers.py), and its size in children; when the store wants a compaction, with
        every child as of after the batch, taken by the same record_changes (its snapshot,
        written in the background: StateStore's docstring)."""
        now = wall_time()  # the turn's, with no clock read (loop_clock: issue 9)
        engine = self.engine
        answers = self.answers.take(now)
        compacting = self.store.wants_compaction(engine.epoch)
        touched = engine.sadb.touched
        also = list(engine.sadb.children) if compacting else answers
        changes = engine.record_changes(turn_time(), also=also)
        local = engine.config.address
        # Compacting, the batch is still what changed: the records of the children touched
        # and of those with a new answer (B); every record (S) goes to the compaction.
        batch = None if not compacting or touched is None else touched | answers.keys()
        children = {}
        for child_id, record in changes.records.items():
            if batch is not None and child_id not in batch:
                continue
            ids = _record_sas(local, self._peer_address(record.peer), record)
            children[child_id] = SavedChild(record, ids, answers.get(child_id))
        gone = changes.gone
        compact = self._every_child(changes.records, answers) if compacting else None
        write = functools.partial(
            self.store.update, engine.epoch, now, children, gone, compact=compact
        )
        return write, len(children) + len(gone)

    def _durable(self, generation: int) -> None:
        """The state writer saved `generation`: the datagrams waiting for it leave."""
        self.outbox.durable(generation)

    def _our_sas(self) -> list[SaId]:
        """The engine's installed SAs in the kernel."""
        out: list[SaId] = []
        local = self.engine.config.address
        for child in self.engine.snapshot().children:
            if child.state == "installed":
                out += _sa_ids(local, self._peer_address(child.peer), child.spis)
        return out

    def _peer_address(self, name: str) -> str | None:
        peer = self.engine.peers.get(name)
        return None if peer is None else peer.config.address

    async def _start_engine(self) -> int:
        """Make the engine with the epoch to run with and the children it takes over from
        before a restart; its epoch. (A method of its own so that the saved state and the
        kernel's table, MBs with 100,000 SAs, go once it is done.)"""
        kernel = await self._kernel_sas()
        # Without the cycle collector: the engine, its peers and the children taken over are
        # 100,000s of objects that live, which its passes went over again and again as they
        # accumulated (issue 9: start-up with 10,000s of peers or children).
        gc.disable()
        try:
            try:
                saved = self.store.load()
            except StateError as exc:
                log.warning("%s: starting a new epoch", exc)
                saved = None
            epoch, why = choose_epoch(saved, kernel, time.time())
            log.log(NOTICE, "epoch %#010x (%s)", epoch, why)
            self._started = trio.current_time()
            self._engine = Engine(
                self.config.engine, self.kerberos.port, epoch=epoch, now=self._started
            )
            kept: set[SaId] = set()
            if saved is not None and epoch == saved.epoch:
                kept = self._adopt(saved, kernel.keys())
        finally:
            gc.enable()
        await self._delete_unaccounted(kernel, kept)
        return epoch

    def _adopt(self, saved: Saved, kernel: KeysView[SaId]) -> set[SaId]:
        """A restart that kept the epoch: the engine takes back the children whose SAs the
        kernel still has all of (RFC 4430 §3.7, Engine.restore), with the REPLYs that created
        them (answers.py). Returns their SAs; the others' go with the unaccounted ones. Each
        child is read from its entry as the engine takes it (SavedEntry): their objects are
        made among the engine's and go one by one, not 100,000s of them at once (issue 9)."""
        whole = [entry for entry in saved.entries if all(sa in kernel for sa in entry.sas)]
        # The children with a REPLY (answers.py), by id() of their entry: each read once.
        answered: dict[int, SavedChild] = {}
        unreadable: set[int] = set()  # the entries found so (by id()), told once

        def records() -> Iterator[ChildRecord]:
            for entry in whole:
                child = self._saved_child(entry, saved.saved_at)
                if child is None:
                    unreadable.add(id(entry))
                    continue
                if child.answer is not None:
                    answered[id(entry)] = child
                yield child.record

        elapsed = max(0.0, time.time() - saved.saved_at)
        self.engine.restore(records(), trio.current_time(), elapsed=elapsed)
        kept: set[SaId] = set()
        taken = 0
        for entry in whole:
            if self._taken(entry):
                kept.update(entry.sas)
                taken += 1
        log.log(
            NOTICE,
            "%d children (SA pairs or bundles) taken over from before the restart",
            taken,
        )
        for entry in saved.entries:
            if id(entry) in unreadable or (entry.sas and kept.issuperset(entry.sas)):
                continue
            child = answered.get(id(entry))
            if child is None:
                child = self._saved_child(entry, saved.saved_at)
                if child is None:
                    continue
                if child.answer is not None:
                    answered[id(entry)] = child
            spis = ", ".join(f"{i:#010x}/{o:#010x}" for _, i, o in child.record.spis)
            log.warning("%s: SAs %s not taken over", child.record.peer, spis)
        ids = {}
        for child in answered.values():  # the id each child taken over got in the engine
            if kept.issuperset(child.sas):
                protocol, spi_in, _ = child.record.spis[0]
                engine_child = self.engine.sadb.by_inbound(protocol, spi_in)
                assert engine_child is not None
                ids[child.sas] = engine_child.id
        self.answers.restore(answered.values(), ids)
        return kept

    def _saved_child(self, entry: SavedEntry, saved_at: float) -> SavedChild | None:
        """A saved child; None (and a warning: its SAs go as unaccounted) for one whose entry
        cannot be read."""
        try:
            return entry.child(saved_at)
        except StateError as exc:
            spis = ", ".join(f"{spi:#010x}" for _, spi, _ in entry.sas)
            log.warning("SAs %s not taken over: %s", spis, exc)
            return None

    def _taken(self, entry: SavedEntry) -> bool:
        """Whether the engine has the child of a saved entry (found by its inbound SA)."""
        local = self.engine.config.address
        for name, spi, dst in entry.sas:
            if dst == local:
                protocol = helper_args.PROTOCOL_NUMBERS[name]
                return self.engine.sadb.by_inbound(protocol, spi) is not None
        return False

    async def _delete_unaccounted(self, kernel: dict[SaId, int], kept: set[SaId]) -> None:
        """Delete our SAs that no child taken over accounts for (state.unaccounted): nothing
        would rekey or DELETE them, and no peer holds their other direction for us."""
        base, count = self.config.daemon.helper_reqid_base, self.config.daemon.helper_reqids
        lo = self.ranges.reqid_lo  # larval SAs (alloc_spi) carry it until they are filled

        def ours(reqid: int) -> bool:
            return base <= reqid < base + count or reqid == lo

        orphans = unaccounted(kernel, kept, ours)
        if orphans:
            log.warning("deleting %d SAs that the state file does not account for", len(orphans))
        for protocol, spi, dst in orphans:
            try:
                await self.helper.call("delete_sa", {"proto": protocol, "spi": spi, "dst": dst})
            except HelperError as exc:
                if exc.code != hp.ERR_NOT_FOUND:
                    log.warning("cannot delete SA %#x: %s", spi, exc)

    # ---------------------------------------------------------------- helper and kernel

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
        kernel_event = helper_args.kernel_event(event, self.engine.policies)
        if kernel_event is not None:
            self.engine.kernel_event(kernel_event, self._helper_time())
            self._input()

    def _helper_time(self) -> float:
        """The time of a helper reply or event: the clock read for the helper's message that
        brought it (HelperClient.arrived), read now for an outcome of another origin (the
        helper gone, a request refused before it was sent)."""
        now = self.helper.arrived
        return trio.current_time() if now is None else now

    async def _kernel_sas(self) -> dict[SaId, int]:
        """The SAs the helper shows us (kink's own), with their reqids."""
        kernel: dict[SaId, int] = {}

        def part(result: dict[str, Any]) -> None:
            for sa in result.get("sas", ()):
                kernel[_sa_id(sa)] = int(sa["reqid"])

        await self.helper.call("dump", {"what": "sa"}, part)
        return kernel

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
        await self._install_bypass()
        peers = (self.engine.peers.get(name) for name in list(self._policies))
        await self._install_policies(*(peer.config for peer in peers if peer is not None))

    def _wants_policies(self, peer: PeerConfig) -> bool:
        """trap and start peers have their policies all the time; respond-only peers while
        they have SAs (an ACQUIRE must not make us initiate to them)."""
        if peer.start_action in _POLICY_ACTIONS:
            return True
        return self.engine.has_children(peer.name)

    async def _install_policies(self, *peers: PeerConfig) -> None:
        """Install the policies of `peers` (each replacing what it had), in one pipeline."""
        requests: list[tuple[str, dict[str, Any]]] = []
        owners: list[str] = []
        stale: list[tuple[str, list[dict[str, Any]]]] = []
        for peer in peers:
            policies = helper_args.policies(
                peer,
                self.engine.peer_policies[peer.name],
                self.config.engine.address,
                self.ranges,
            )
            before = self._policies.get(peer.name)
            self._policies[peer.name] = policies
            requests += [("update_policy", policy) for policy in policies]
            owners += [peer.name] * len(policies)
            if before:  # none at start-up: nothing to compare (10,000s of keys)
                keys = {_policy_key(p) for p in policies}
                stale.append((peer.name, [p for p in before if _policy_key(p) not in keys]))
        outcomes = await self.helper.call_all(requests)
        for name, (_, policy), outcome in zip(owners, requests, outcomes, strict=True):
            if isinstance(outcome, HelperError | HelperGone):
                log.error("%s: cannot install policy %s: %s", name, policy["dir"], outcome)
        if len(peers) == 1:
            log.info("%s: %d policies installed", peers[0].name, len(requests))
        elif peers:
            log.info("%d policies of %d peers installed", len(requests), len(peers))
        for name, old in stale:
            await self._delete_policies(name, old)

    async def _responder_policies(self, reqid: int) -> None:
        """A respond-only peer gets its policies with its first SA, before the SA is filled
        and before the reply that lets the initiator use it (RFC 4430 §3.2): the peer's
        traffic must never meet our SAs without our policies (it would go out in the clear)."""
        peer = self._unguarded(reqid)
        if peer is not None:
            self.writer.flush()  # saved meanwhile: the install waits for the helper
            await self._install_policies(peer)

    def _unguarded(self, reqid: int) -> PeerConfig | None:
        """The respond-only peer whose SA of `reqid` would be its first without its policies
        (_responder_policies); None if it has them, or if it is not such a peer."""
        owner = self.engine.policies.get(reqid)  # by reqid: not a walk of every peer's
        if owner is not None and owner[0].config.name not in self._policies:
            return owner[0].config
        return None

    async def _remove_policies(self, name: str, *, retired: bool = False) -> None:
        """Remove the policies of `name` (retired: those of a peer removed by a reload, but
        not those its successor of the same name has now)."""
        if retired:
            keep = {_policy_key(p) for p in self._policies.get(name, [])}
            policies = [p for p in self._retired.pop(name, []) if _policy_key(p) not in keep]
        else:
            policies = self._policies.pop(name, [])
        await self._delete_policies(name, policies)

    async def _delete_policies(self, name: str, policies: list[dict[str, Any]]) -> None:
        if not policies:
            return
        ids = [("delete_policy", helper_args.policy_id(policy)) for policy in policies]
        for outcome in await self.helper.call_all(ids):
            if isinstance(outcome, HelperGone):
                log.warning("%s: helper gone while removing policies", name)
                return
            if isinstance(outcome, HelperError) and outcome.code != hp.ERR_NOT_FOUND:
                log.warning("%s: cannot remove policy: %s", name, outcome)

    async def _drop_retired(self, name: str) -> None:
        await self._remove_policies(name, retired=True)

    def _maybe_remove_responder_policies(self, name: str) -> None:
        """A respond-only peer's policies exist while it has SAs: checked once the executor
        has carried out the actions at hand (_check_policies), not per event (a snapshot of
        every child each time)."""
        peer = self.engine.peers.get(name)
        if peer is not None and name in self._policies:
            self._policy_checks.add(name)

    def _check_policies(self) -> None:
        checks, self._policy_checks = self._policy_checks, set()
        for name in checks:
            peer = self.engine.peers.get(name)
            if peer is None or name not in self._policies or self.engine.has_children(name):
                continue
            if peer.config.start_action not in _POLICY_ACTIONS:
                assert self._nursery is not None
                self._nursery.start_soon(self._remove_policies, name)

    async def _install_bypass(self) -> None:
        """ICMPv6 neighbour discovery in the clear, when we speak IPv6 (helper_args.nd_bypass)."""
        if ":" not in self.config.engine.address:
            return
        self._bypass = helper_args.nd_bypass(self.ranges)
        for policy in self._bypass:
            try:
                await self.helper.call("update_policy", policy)
            except (HelperError, HelperGone) as exc:
                log.error("cannot install the neighbour discovery bypass: %s", exc)
                return

    async def _remove_bypass(self) -> None:
        for policy in self._bypass:
            try:
                await self.helper.call("delete_policy", helper_args.policy_id(policy))
            except HelperError as exc:
                if exc.code != hp.ERR_NOT_FOUND:
                    log.warning("cannot remove the neighbour discovery bypass: %s", exc)
            except HelperGone:
                return
        self._bypass = []

    # ----------------------------------------------------------------------------- reload

    async def reload(self) -> dict[str, list[str]]:
        """Re-read the configuration and apply it with Engine.reconfigure: new peers added,
        removed peers' SAs deleted with DELETE (their policies go once that is over:
        PeerRemoved), changed peers updated, unchanged peers untouched."""
        self.notifier.reloading()
        try:
            try:
                new = with_principal(await trio.to_thread.run_sync(self._loader))
            except ConfigError as exc:
                raise cp.ControlError(cp.ERR_CONFIG, str(exc)) from None
            before = {name: state.config for name, state in self.engine.peers.items()}
            try:
                done = self.engine.reconfigure(new.engine, trio.current_time())
            except ConfigChangeError as exc:
                raise cp.ControlError(
                    cp.ERR_CONFIG, f"{exc}; restart kinkd for that change"
                ) from None
            self.config = new
            self._wake()
            for name in done.removed + done.changed:
                if name not in self.engine.peers or _moved(
                    before[name], self.engine.peers[name].config
                ):
                    # Gone, or replaced by a new peer of that name (remove + add): the old
                    # policies stay until PeerRemoved says its DELETE is over.
                    self._retired[name] = self._policies.pop(name, [])
            wanted: list[PeerConfig] = []
            for name in done.added + done.changed:
                peer = self.engine.peers[name].config
                if self._wants_policies(peer):
                    wanted.append(peer)
                elif name in self._policies:
                    await self._remove_policies(name)
            await self._install_policies(*wanted)
            added, removed, changed = sorted(done.added), sorted(done.removed), sorted(done.changed)
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
            return {**result, "unchanged": sorted(done.unchanged)}
        finally:
            self.notifier.ready("reloaded")

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
        if name not in self.engine.peers:
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
            "transport": {
                "received": t.received,
                "sent": t.sent,
                "send_errors": t.send_errors,
                # What a flood made the kernel drop before kinkd saw it (never in "counters").
                "receive_queue_drops": t.receive_queue_drops(),
            },
            "kerberos": {"fetches": self.kerberos.fetches, "failures": self.kerberos.failures},
        }

    def _peers(self) -> list[dict[str, Any]]:
        snapshot = self.engine.snapshot()
        installed = Counter(c.peer for c in snapshot.children if c.state == "installed")
        out = []
        for view in snapshot.peers:
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
                    "sas": installed[view.name],
                    "transactions": view.transactions,
                    "queued": view.queued,
                    "rtt": view.rtt,
                }
            )
        return out

    async def _sas(self, now: float) -> list[dict[str, Any]]:
        counters: dict[SaId, dict[str, Any]] = {}  # of each kernel SA: all sa_report uses

        def part(result: dict[str, Any]) -> None:
            for sa in result.get("sas", ()):
                counters[_sa_id(sa)] = sa.get("counters", {})

        try:
            await self.helper.call("dump", {"what": "sa"}, part)
        except (HelperError, HelperGone):
            counters.clear()
        local, wall = self.engine.config.address, time.time()
        return [
            child_entry(child, local, peer.config.address, counters, now, wall)
            for child in self.engine.snapshot().children
            if (peer := self.engine.peers.get(child.peer)) is not None
        ]


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


def _moved(old: PeerConfig, new: PeerConfig) -> bool:
    """Engine.replace_peer removes and adds a peer whose address, principal or mode changed:
    its old SAs and policies go with a DELETE, PeerRemoved coming once it is over."""
    return (old.address, old.principal, old.mode) != (new.address, new.principal, new.mode)


def _policy_key(policy: dict[str, Any]) -> tuple[str, tuple[tuple[str, Any], ...]]:
    """A kernel policy's identity (XFRM: direction and selector)."""
    return policy["dir"], tuple(sorted(policy["selector"].items()))


def hp_name(protocol: int) -> str:
    return helper_args.PROTOCOL_NAMES.get(protocol, str(protocol))


def _who() -> str:
    ids = identity()
    return f"uid {ids['uid']} gid {ids['gid']}"


def _ignore(kind: str, data: dict[str, Any]) -> None:
    """Events before the control server exists have no listener."""


def _ignore_outcome(outcome: Outcome) -> None:
    """The delete half of an UpdateSa: the add that follows decides."""
