"""The virtual board's protocol state machine, property-tested against a small model:
clamp programming and readback, refusal (never clipping) above the clamp with nothing
applied, the error queue's FIFO order, routing and abort, unknown opcodes."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from labctl.wire import board_protocol as bp
from sim_backend.virtual.board import VirtualBoard
from sim_backend.virtual.hub import Hub
from sim_backend.virtual.transport import FaultInjector
from tests.drivers.helpers import small_direct

volts = st.floats(0.0, 6.0, allow_nan=False)


class BoardMachine(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.macro = small_direct(0).macro
        self.board = VirtualBoard(Hub(self.macro), FaultInjector())
        self.seq = 0
        self.clamp = (0.0, 0.0, 0.0, 0.0)
        self.errors: list[int] = []
        self.routed = False

    def teardown(self) -> None:
        self.board.close()

    def send(self, op: int, payload: bytes = b"") -> bp.Frame:
        self.seq = (self.seq + 1) & 0xFFFF
        # Through the codec both ways, as on the wire.
        raw = bp.encode(self.board.handle(bp.decode_one(bp.encode(bp.Frame(op, self.seq,
                                                                             payload)))))
        reply = bp.decode_one(raw)
        assert reply.seq == self.seq
        assert reply.op == op
        return reply

    @rule(bl=volts, sl=volts, wl=volts, rd=st.floats(0.0, 1.5, allow_nan=False))
    def set_clamp(self, bl: float, sl: float, wl: float, rd: float) -> None:
        r = self.send(bp.Op.SET_CLAMP, bp.CLAMP.pack(bl, sl, wl, rd))
        if max(bl, sl, wl) > 10.0 or rd > 1.0:
            assert r.status == bp.Status.ERROR
            self.errors.append(220)
        else:
            assert r.status == bp.Status.OK
            assert bp.CLAMP.unpack(r.payload) == (bl, sl, wl, rd)
            self.clamp = (bl, sl, wl, rd)

    @rule(kind=st.sampled_from(["SET", "RESET", "FORM"]), amp=volts, gate=volts,
          row=st.integers(0, 40))
    def pulse(self, kind: str, amp: float, gate: float, row: int) -> None:
        before = self.macro.events.copy()
        payload = (bp.PULSE_HEAD.pack(bp.KIND_CODES[kind], 0, 0)
                   + bp.pack_cells([0], [row], [1]) + bp.pack_f64([amp], [gate], [1e-6]))
        r = self.send(bp.Op.PULSE_BATCH, payload)
        limit = self.clamp[1] if kind == "RESET" else self.clamp[0]
        if row >= 32:
            expect = 201
        elif amp > limit or gate > self.clamp[2]:
            expect = 301
        else:
            expect = 0
        if expect:
            assert r.status == bp.Status.ERROR
            assert bp.unpack_error(r.payload)[0] == expect
            assert np.array_equal(before, self.macro.events)  # refused: nothing applied
            self.errors.append(expect)
        else:
            assert r.status == bp.Status.OK
            assert self.macro.events.sum() == before.sum() + 1

    @rule(gate=volts)
    def route(self, gate: float) -> None:
        r = self.send(bp.Op.ROUTE, bp.ROUTE_HEAD.pack(0) + bp.pack_cells([0], [0], [0])
                      + bp.pack_f64([gate]))
        if gate > self.clamp[2]:
            assert r.status == bp.Status.ERROR
            self.errors.append(301)
        else:
            assert r.status == bp.Status.OK
            self.routed = True

    @rule()
    def abort(self) -> None:
        assert self.send(bp.Op.ABORT).status == bp.Status.OK
        self.routed = False

    @rule()
    def next_error(self) -> None:
        code, _ = bp.unpack_error(self.send(bp.Op.ERROR_NEXT).payload)
        assert code == (self.errors.pop(0) if self.errors else 0)

    @rule(op=st.integers(0x40, 0xFF))
    def unknown_opcode(self, op: int) -> None:
        assert self.send(op).status == bp.Status.UNSUPPORTED

    @rule(dt=st.floats(0.0, 1e6, allow_nan=False))
    def advance_time(self, dt: float) -> None:
        t0 = self.macro.clock.now()
        r = self.send(bp.Op.TIME_ADVANCE, struct.pack("<d", dt))
        assert struct.unpack("<d", r.payload)[0] == t0 + dt

    @invariant()
    def status_matches_model(self) -> None:
        if not hasattr(self, "board"):
            return
        s = bp.status_dict(self.board.handle(bp.Frame(bp.Op.STATUS, 0, b"")).payload)
        assert s["pending_errors"] == len(self.errors)
        assert s["routed"] == self.routed
        assert (s["clamp_bitline_V"], s["clamp_sourceline_V"], s["clamp_gate_V"],
                s["clamp_read_V"]) == self.clamp


TestBoardStateMachine = BoardMachine.TestCase
