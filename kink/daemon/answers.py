"""The responder's answers to CREATE, kept across a restart of kinkd.

The engine answers a retransmitted command from its reply cache (RFC 4430 §9), which dies with
the process. A responder killed after its REPLY left (and was lost) would otherwise meet the
initiator's retransmitted CREATE as a new one: the outbound SA it installed for the first one
holds the initiator's SPI (EEXIST), it answers INVALID-SPI, and the pair it took over from its
state file has no counterpart at the initiator. So the REPLY of a CREATE that installed a child
in one go (2-way: the child is installed and saved before the REPLY leaves, state_writer) is
saved with that child for reply_cache_lifetime, and a restarted kinkd that took the child over
sends it again for a CREATE of the same XID from the same address, as the engine's cache would
have: without decrypting, so before the engine sees the datagram. An answer is handed to the
state file once (take(), at the save that follows its REPLY), with its children, by child id.

A 3-way REPLY (ACKREQ) is not kept: the responder's outbound SA waits for the ACK. Its children,
awaiting the ACK, are saved before it leaves all the same (asks_ack; Engine.record_changes), since
the initiator may install the pair on it: a restarted kinkd takes them over only to DELETE them
(RFC 4430 §3.3, Engine.restore), and answers a retransmitted CREATE anew.

Matching on address and XID alone is what a reflection of the peer's own CREATE could trigger:
the answer goes to the configured peer address only, and only what that peer was sent already.
"""

import struct
import time
from collections.abc import Callable, Iterable, Mapping

from kink.daemon.state import SaId, SavedAnswer, SavedChild
from kink.engine.events import Address
from kink.wire import MessageType
from kink.wire.constants import HEADER_LENGTH
from kink.wire.header import HEADER, Header

_ASKED_MAX = 4096  # CREATEs awaiting our REPLY that we remember (oldest forgotten first)
_CREATE = int(MessageType.CREATE)
_XID = struct.Struct(">I")
_XID_OFFSET = 8  # Type(1) MjVer(1) Length(2) DOI(4), then XID (RFC 4430 §4, kink.wire.header)


def _header(data: bytes) -> Header | None:
    try:
        return Header(*HEADER.unpack_from(data))
    except struct.error:
        return None


def asks_ack(data: bytes) -> bool:
    """A REPLY with ACKREQ: a 3-way CREATE's, whose children await the ACK (§3.2)."""
    header = _header(data)
    return header is not None and header.type == MessageType.REPLY and header.ackreq


class Answers:
    """Answers(lifetime, clock): what the daemon feeds it, in the order the datagrams and
    notices come: received(), established(), sent(); then take() at each save, and after a
    restart restore() and replay(). `clock`: the wall clock, read only by replay() when it has
    an answer (a system call in user-mode Linux, issue 9: not one per datagram)."""

    def __init__(self, lifetime: float, clock: Callable[[], float] = time.time) -> None:
        self.lifetime = lifetime
        self._clock = clock
        self._asked: dict[tuple[str, int], None] = {}  # (address, xid) of CREATEs received
        self._fresh: list[int] = []  # children installed since the last datagram, by id
        # REPLYs kept since the last save: (children, to, xid, REPLY); each gets its `until`
        # from the save's time (take), which its REPLY waits for (write-ahead): no clock read
        # per REPLY.
        self._sent: list[tuple[list[int], Address, int, bytes]] = []
        self._new: dict[int, SavedAnswer] = {}  # by child id: restored answers not saved yet
        self._replay: dict[tuple[str, int], SavedAnswer] = {}  # after a restart
        self.replayed = 0

    def received(self, data: bytes, address: str) -> None:
        # Every datagram from a configured peer's address comes here, a flood's too (issue 9):
        # the Type octet and the XID are read as they are, without a Header for the rest.
        if len(data) >= HEADER_LENGTH and data[0] == _CREATE:
            asked = self._asked
            asked[(address, _XID.unpack_from(data, _XID_OFFSET)[0])] = None
            if len(asked) > _ASKED_MAX:
                del asked[next(iter(asked))]

    def established(self, child: int) -> None:
        """A responder child (engine id) installed in one go (not 3-way): its REPLY comes
        next."""
        self._fresh.append(child)

    def sent(self, data: bytes, to: Address) -> bool:
        """A datagram we send: the REPLY to a CREATE is kept with the children installed for
        it. Whether it was (the state file must have it before it leaves)."""
        fresh, self._fresh = self._fresh, []
        header = _header(data)
        if header is None or header.type != MessageType.REPLY:
            return False
        asked = (to[0], header.xid)
        if asked not in self._asked:
            return False  # not the answer to a CREATE we received
        del self._asked[asked]
        if header.ackreq or not fresh:
            return False
        self._sent.append((fresh, to, header.xid, data))
        return True

    def take(self, now: float) -> dict[int, SavedAnswer]:
        """The answers not saved yet, by child id (`now`: the save's wall clock time; a REPLY
        sent since the last save is kept reply_cache_lifetime from it, a restored answer until
        its own time, expired ones left out); each is handed out once."""
        new, self._new = self._new, {}
        taken = {child: answer for child, answer in new.items() if answer.until > now}
        sent, self._sent = self._sent, []
        for children, to, xid, data in sent:
            answer = SavedAnswer(to, xid, data, now + self.lifetime)
            for child in children:
                taken[child] = answer
        return taken

    def restore(
        self, children: Iterable[SavedChild], taken_over: Mapping[frozenset[SaId], int]
    ) -> None:
        """After a restart: the answers of the saved children, each kept only if every child
        it created was taken over (else the initiator would install what we do not have);
        `taken_over`: the SAs of each child taken over -> its id in the new engine."""
        created: dict[tuple[str, int], list[SavedChild]] = {}
        for child in children:
            if child.answer is not None:
                created.setdefault((child.answer.to[0], child.answer.xid), []).append(child)
        for key, group in created.items():
            if all(child.sas in taken_over for child in group):
                for child in group:
                    assert child.answer is not None
                    self._new[taken_over[child.sas]] = child.answer  # saved again
                    self._replay[key] = child.answer

    def replay(self, data: bytes, address: str) -> SavedAnswer | None:
        """The saved REPLY for this datagram if it is a CREATE answered before the restart."""
        if not self._replay:
            return None
        header = _header(data)
        if header is None or header.type != MessageType.CREATE:
            return None
        answer = self._replay.get((address, header.xid))
        if answer is None:
            return None
        if answer.until <= self._clock():
            del self._replay[(address, header.xid)]
            return None
        self.replayed += 1
        return answer
