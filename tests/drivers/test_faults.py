"""Wire faults through pyvisa-py and pyserial against the virtual instruments: garbled,
truncated and dropped replies and replies delayed past the timeout are each detected,
reported as a labctl error, end in the safe state, and leave a link that works — with no
stale reply ever taken for a later answer. Instrument errors surface from the error
queue with their code."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from labctl.core.cells import Cells
from labctl.core.errors import (
    CommunicationError,
    InstrumentError,
    InstrumentFault,
    InstrumentTimeout,
)
from sim_backend import SimBackend
from sim_backend.virtual import FaultInjector, VirtualLab
from tests.drivers.helpers import open_wire, small_direct, small_lab

SEED = 3
TIMEOUT_S = 0.5
"""Short enough to keep the suite fast, long enough that a loaded CI box does not time out
a healthy exchange on the small test array."""
CELLS = Cells.block(0, range(4), range(4))


@pytest.fixture
def lab() -> Iterator[VirtualLab]:
    with small_lab(SEED, FaultInjector(seed=1, delay_s=2.5 * TIMEOUT_S)) as lab:
        yield lab


def formed_pair(lab: VirtualLab, topology: str) -> tuple[SimBackend, object]:
    direct = small_direct(SEED)
    wire = open_wire(lab, topology, timeout_s=5.0)
    for be in (direct, wire):
        be.pulse(CELLS, "FORM", 3.3, 1.5, 5e-4, 1e-4)  # type: ignore[attr-defined]
    # Short timeouts only after the first touch of the tile (which builds its state).
    wire.board.timeout_s = TIMEOUT_S
    for inst in (wire.smu, wire.pulsegen):
        if inst is not None:
            inst.timeout(TIMEOUT_S)
    return direct, wire


@pytest.mark.parametrize(("kind", "error"), [("garble", CommunicationError),
                                             ("truncate", CommunicationError),
                                             ("drop", InstrumentTimeout),
                                             ("delay", InstrumentTimeout)])
def test_board_faults_are_detected_and_end_safe(lab: VirtualLab, kind: str,
                                                error: type[Exception]) -> None:
    direct, wire = formed_pair(lab, "board")
    with wire:  # type: ignore[attr-defined]
        lab.faults.schedule("board", kind)
        with pytest.raises(error) as info:
            wire.read(CELLS)  # type: ignore[attr-defined]
        assert isinstance(info.value, InstrumentFault)
        assert info.value.safe_state_reached is True
        assert lab.faults.injected == [("board", kind)]
        direct.read(CELLS)  # the faulty read did happen on the chip; mirror it
        assert lab.board.flags & 4  # ABORT reached the board
        # The link recovers, and the next answer is the right one, not a stale reply.
        assert np.array_equal(wire.read(CELLS), direct.read(CELLS))  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", ["garble", "truncate", "drop", "delay"])
def test_smu_faults_are_detected_and_end_safe(lab: VirtualLab, kind: str) -> None:
    direct, wire = formed_pair(lab, "board+smu+pulsegen")
    with wire:  # type: ignore[attr-defined]
        lab.faults.schedule("smu2450", kind)
        with pytest.raises(InstrumentFault) as info:
            wire.read(CELLS)  # type: ignore[attr-defined]
        assert isinstance(info.value, CommunicationError | InstrumentTimeout)
        assert info.value.safe_state_reached is True
        assert lab.hub.cells is None  # board aborted: route open
        # The faulted exchange was the first of the read (filter setting): nothing was
        # measured, so the chip is unchanged (the same event counts); the next read matches
        # the direct path — statistically, since the SMU forms cell by cell and the running
        # clock gives the cells other ages than the direct path's batch (docs/simulator.md).
        got, want = wire.read(CELLS), direct.read(CELLS)  # type: ignore[attr-defined]
        assert np.array_equal(lab.macro.events, direct.macro.events)  # type: ignore[attr-defined]
        assert np.median(np.abs(got - want) / np.maximum(np.abs(want), 1e-6)) < 0.05


def test_pulsegen_garble_is_detected(lab: VirtualLab) -> None:
    _, wire = formed_pair(lab, "board+smu+pulsegen")
    with wire:  # type: ignore[attr-defined]
        lab.faults.schedule("pulsegen", "garble")
        with pytest.raises(CommunicationError) as info:
            wire.pulse(CELLS, "SET", 2.0, 1.8, 1e-6)  # type: ignore[attr-defined]
        assert info.value.safe_state_reached is True


def test_seeded_random_faults_are_reproducible() -> None:
    def run() -> list[tuple[str, str]]:
        with small_lab(SEED, FaultInjector(seed=9, delay_s=0.0)) as lab:
            wire = open_wire(lab)
            wire.pulse(CELLS, "FORM", 3.3, 1.5, 5e-4, 1e-4)
            wire.board.timeout_s = TIMEOUT_S
            lab.faults.rates = {"garble": 0.3}
            for _ in range(6):
                with contextlib.suppress(CommunicationError):
                    wire.read(CELLS)
            lab.faults.rates = {}
            wire.close()
            return list(lab.faults.injected)

    first = run()
    assert first
    assert first == run()


def test_board_error_queue_and_clamp_refusal(lab: VirtualLab) -> None:
    _, wire = formed_pair(lab, "board")
    with wire:  # type: ignore[attr-defined]
        wire.board.set_clamp(2.0, 3.3, 5.0, 0.3)  # type: ignore[attr-defined]
        with pytest.raises(InstrumentError, match=r"board error 301 .*refused, nothing applied"):
            wire.pulse(CELLS, "SET", 2.5, 1.8, 1e-6)  # type: ignore[attr-defined]
        code, msg = wire.board.next_error()  # type: ignore[attr-defined]
        assert code == 301
        assert "clamp" in msg
        assert wire.board.next_error() == (0, "no error")  # type: ignore[attr-defined]


def test_smu_instrument_error_surfaces_with_code(lab: VirtualLab) -> None:
    _, wire = formed_pair(lab, "board+smu+pulsegen")
    with wire:  # type: ignore[attr-defined]
        with pytest.raises(InstrumentError, match=r'error -113 .{0,2}"Undefined header'):
            wire.smu.write(":SOUR:BOGUS 1")  # type: ignore[attr-defined]
        with pytest.raises(InstrumentError, match=r'error -222 .{0,2}"Data out of range'):
            wire.smu.write(":SOUR:VOLT 300")  # type: ignore[attr-defined]


def test_watchdog_aborts_a_silent_host(lab: VirtualLab) -> None:
    _, wire = formed_pair(lab, "board")
    with wire:  # type: ignore[attr-defined]
        board = wire.board  # type: ignore[attr-defined]
        board.route("READ", [0], [0], [0], [2.5])
        board.watchdog_s(0.05)
        threading.Event().wait(1.0)  # the host goes quiet
        st = board.status()
        assert st["watchdog_tripped"]
        assert not st["routed"]
        assert board.next_error()[0] == 310


def test_virtual_time_moves_only_on_wait(lab: VirtualLab) -> None:
    with open_wire(lab) as wire:
        assert wire.capabilities.virtual_clock
        t0 = wire.clock.now()
        wire.clock.wait(86400.0)
        assert wire.clock.now() == t0 + 86400.0 == lab.macro.clock.now()


@pytest.mark.skipif(os.name != "posix", reason="needs SIGINT delivery to the main thread")
def test_ctrl_c_never_splits_a_query_from_its_reply(lab: VirtualLab) -> None:
    direct, wire = formed_pair(lab, "board")
    lab.faults.delay_s = 0.2
    with wire:  # type: ignore[attr-defined]
        wire.board.timeout_s = 2.0  # type: ignore[attr-defined]
        lab.faults.schedule("board", "delay")
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            wire.read(CELLS)  # type: ignore[attr-defined]
        # The interrupted read completed its exchange first, so the link is in step.
        direct.read(CELLS)
        assert np.array_equal(wire.read(CELLS), direct.read(CELLS))  # type: ignore[attr-defined]


def test_heartbeat_keeps_the_watchdog_fed_while_idle() -> None:
    with small_lab(SEED) as lab, open_wire(lab, watchdog_s=0.6) as wire:
        wire.board.route("READ", [0], [0], [0], [2.5])
        threading.Event().wait(1.5)  # idle host, but the heartbeat thread keeps talking
        st = wire.board.status()
        assert not st["watchdog_tripped"]
        assert st["routed"]


def test_board_answers_bad_frame_to_a_corrupted_request() -> None:
    import socket

    from labctl.wire import board_protocol as bp

    with small_lab(SEED) as lab:
        port = int(lab.addresses["board"].rsplit(":", 1)[1])
        raw = bytearray(bp.encode(bp.Frame(bp.Op.STATUS, 77, b"")))
        raw[-1] ^= 0xFF  # break the CRC-32
        with socket.create_connection(("127.0.0.1", port), timeout=2.0) as s:
            s.sendall(b"\x00\x13noise" + bytes(raw) + bp.encode(bp.Frame(bp.Op.HEARTBEAT, 78, b"")))
            buf = bytearray()
            replies: list[bp.Frame] = []
            while len(replies) < 2:
                buf += s.recv(4096)
                while True:
                    f, consumed, _ = bp.try_parse(buf)
                    del buf[:consumed]
                    if f is None:
                        break
                    replies.append(f)
        assert (replies[0].seq, replies[0].status) == (77, bp.Status.BAD_FRAME)
        assert (replies[1].seq, replies[1].status) == (78, bp.Status.OK)


@pytest.mark.parametrize(("topology", "p"), [("board", 0.1), ("board+smu+pulsegen", 0.03)])
def test_random_faults_only_ever_raise_instrument_faults(topology: str, p: float) -> None:
    """A flaky link (seeded random garble/truncate/drop on every instrument) makes
    operations fail, but only ever with an InstrumentFault, each ending in a reached safe
    state, and the backend stays usable once the link is clean again."""
    with small_lab(SEED, FaultInjector(seed=4)) as lab:
        direct = small_direct(SEED)
        wire = open_wire(lab, topology, timeout_s=5.0)
        with wire:
            wire.pulse(CELLS, "FORM", 3.3, 1.5, 5e-4, 1e-4)
            direct.pulse(CELLS, "FORM", 3.3, 1.5, 5e-4, 1e-4)
            wire.board.timeout_s = TIMEOUT_S
            for inst in (wire.smu, wire.pulsegen):
                if inst is not None:
                    inst.timeout(TIMEOUT_S)
            lab.faults.rates = {"garble": 2 * p, "truncate": p, "drop": p}
            failures: list[InstrumentFault] = []
            for k in range(12):
                try:
                    if k % 2:
                        wire.read(CELLS)
                    else:
                        wire.pulse(CELLS, "SET", 2.0, 1.8, 1e-6)
                except InstrumentFault as e:  # anything else escapes and fails the test
                    failures.append(e)
            lab.faults.rates = {}
            assert failures
            assert all(e.safe_state_reached is True for e in failures)
            assert lab.faults.injected
            assert wire.read(CELLS).shape == (len(CELLS),)


@pytest.mark.skipif(os.name != "posix", reason="needs SIGINT delivery to the main thread")
def test_ctrl_c_never_splits_a_visa_query_from_its_reply(lab: VirtualLab) -> None:
    direct, wire = formed_pair(lab, "board+smu+pulsegen")
    lab.faults.delay_s = 0.2
    with wire:  # type: ignore[attr-defined]
        wire.smu.timeout(2.0)  # type: ignore[attr-defined]
        lab.faults.schedule("smu2450", "delay")
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            wire.read(CELLS)  # type: ignore[attr-defined]
        assert wire.smu._dirty is False  # type: ignore[attr-defined]  # reply was read
        # Interrupted before the sweep: the chip is unchanged (same event counts) and the
        # link in step; the values agree statistically (discrete instruments, running clock).
        got, want = wire.read(CELLS), direct.read(CELLS)  # type: ignore[attr-defined]
        assert np.array_equal(lab.macro.events, direct.macro.events)  # type: ignore[attr-defined]
        assert np.median(np.abs(got - want) / np.maximum(np.abs(want), 1e-6)) < 0.05


@pytest.mark.skipif(os.name != "posix", reason="needs SIGINT delivery to the main thread")
def test_forced_ctrl_c_between_write_and_read_resyncs_the_link(
        lab: VirtualLab, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second Ctrl+C forces a KeyboardInterrupt through DelayedKeyboardInterrupt while the
    query waits for its (delayed) reply. The link is then marked dirty, so the next query
    reconnects and gets its own answer — not the stale reply to the interrupted one."""
    _, wire = formed_pair(lab, "board+smu+pulsegen")
    lab.faults.delay_s = 0.4
    with wire:  # type: ignore[attr-defined]
        smu = wire.smu  # type: ignore[attr-defined]
        smu.timeout(2.0)
        smu.compliance_A(1.5e-4)
        nplc = smu.nplc()
        assert nplc != 1.5e-4
        lab.faults.schedule("smu2450", "delay")
        pick = lab.faults._pick

        def pick_then_interrupt(instrument: str) -> str | None:
            # The instrument has the query and delays its reply: only now is the client
            # certainly waiting, however loaded the machine. The second SIGINT is forceful.
            kind = pick(instrument)
            if kind == "delay":
                for t in (0.05, 0.1):
                    threading.Timer(t, os.kill, (os.getpid(), signal.SIGINT)).start()
            return kind

        monkeypatch.setattr(lab.faults, "_pick", pick_then_interrupt)
        with pytest.raises(KeyboardInterrupt):
            smu.compliance_A()  # its reply arrives 0.4 s later, after the interrupt
        assert smu._dirty is True
        threading.Event().wait(0.6)  # the stale reply is now in the socket buffer
        assert smu.nplc() == nplc
        assert smu.compliance_A() == 1.5e-4
