"""Drivers written elsewhere, for real instruments, against the virtual instruments:
upstream QCoDeS (Keithley2450, Keithley2602B with its Lua ``fastsweep``,
Keysight33522B) and pymeasure (Keithley2450, Keithley2600, Agilent33500). What they send
is what a real instrument gets from them; the virtual one must answer as the manual says.
With a cell routed by the board an SMU reading is I = V·G of that cell; with none routed
the terminals are open (0 A)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pytest

from labctl.core.cells import Cells
from sim_backend.virtual import VirtualLab
from tests.drivers.helpers import open_wire, small_lab

_ids = itertools.count()


@pytest.fixture(scope="module")
def lab() -> Iterator[VirtualLab]:
    with small_lab(21) as lab:
        with open_wire(lab) as be:  # form one cell through the board, for physical reads
            be.pulse(Cells.block(0, [0], [0]), "FORM", 3.3, 1.5, 1e-4, 1e-4)
        yield lab


def read_noise_S(lab: VirtualLab, g_S: float) -> float:
    """4σ of one read at ``g_S``: white (relative + floor) and 1/f, from the preset."""
    r = lab.macro.preset.read
    lf = float(lab.macro.lf.sigma_S(np.array([g_S]))[0]) if lab.macro.lf.on else 0.0
    return 4.0 * float(np.sqrt((r.relative_sigma * g_S) ** 2 + r.floor_sigma_S ** 2 + lf ** 2))


@pytest.fixture(autouse=True)
def _no_route(lab: VirtualLab) -> None:
    lab.hub.route_clear()


def route_read(lab: VirtualLab, n: int = 1) -> float:
    """Route cell (0,0,0) for a READ through the hub (what the board's ROUTE does) and
    return its noise-free conductance now, as the simulator knows it (the reading then
    differs by read noise: white and 1/f, docs/simulator.md)."""
    cells = Cells.block(0, [0], [0])
    lab.hub.route("READ", Cells.concat([cells] * n), np.full(n, 2.5))
    return float(lab.macro.conductance(cells)[0])


def test_qcodes_keithley2450(lab: VirtualLab) -> None:
    from qcodes.instrument_drivers.Keithley import Keithley2450

    k = Keithley2450(f"q2450_{next(_ids)}", lab.addresses["smu2450"], visalib="@py")
    try:
        k.reset()
        k.source.function("voltage")
        k.sense.function("current")
        k.source.voltage(0.2)
        k.source.limit(1e-4)
        assert k.source.limit() == pytest.approx(1e-4)
        k.sense.nplc(1)
        with k.output_enabled.set_to(True):
            assert k.sense.current() == 0.0  # nothing routed: open terminals
            g = route_read(lab)
            i = k.sense.current()
        assert abs(i / 0.2 - g) <= read_noise_S(lab, g)
        assert float(k.line_frequency()) == 50.0
    finally:
        k.close()


def test_qcodes_keithley2602b_fastsweep(lab: VirtualLab) -> None:
    from qcodes.instrument_drivers.Keithley import Keithley2602B

    k = Keithley2602B(f"q2602_{next(_ids)}", lab.addresses["smu2600b"], visalib="@py")
    try:
        assert k.model == "2602B"
        k.smua.mode("voltage")
        k.smua.limiti(1e-4)
        k.smua.nplc(0.01)
        k.smua.output("on")
        from qcodes.dataset import LinSweep

        k.smua.setup_fastsweep(LinSweep(k.smua.volt, 0.1, 0.25, 4, 0.0), mode="IV")
        data = np.asarray(k.smua.fastsweep())  # its Lua loop + REAL32 printbuffer
        assert np.array_equal(data, np.zeros(4))  # nothing routed: open terminals
        g = route_read(lab, 4)
        data = np.asarray(k.smua.fastsweep())
        k.smua.output("off")
        # REAL32 transfer: float32 rounding of I = V·G, far below read noise.
        assert np.all(np.abs(data / np.linspace(0.1, 0.25, 4) - g) <= read_noise_S(lab, g))
    finally:
        k.close()


def test_qcodes_keysight_33522b(lab: VirtualLab) -> None:
    from qcodes.instrument_drivers.Keysight import Keysight33522B

    g = Keysight33522B(f"q335_{next(_ids)}", lab.addresses["pulsegen"], visalib="@py")
    try:
        ch = g.ch1
        ch.function_type("PULS")
        ch.amplitude(0.5)
        ch.offset(0.25)
        ch.burst_ncycles(3)
        ch.burst_mode("N Cycle")
        ch.trigger_source("BUS")
        ch.burst_state("ON")
        assert ch.amplitude() == pytest.approx(0.5)
        assert g.sync.output() in ("OFF", "ON")
    finally:
        g.close()


def test_pymeasure_keithley2450(lab: VirtualLab) -> None:
    from pymeasure.instruments.keithley import Keithley2450

    k = Keithley2450(lab.addresses["smu2450"], visa_library="@py", read_termination="\n",
                     write_termination="\n", timeout=3000)
    try:
        k.reset()
        k.apply_voltage(compliance_current=1e-4)
        k.source_voltage = 0.2
        k.enable_source()
        k.measure_current(nplc=1)
        assert k.current == 0.0
        g = route_read(lab)
        assert abs(k.current / 0.2 - g) <= read_noise_S(lab, g)
        k.disable_source()
    finally:
        k.adapter.close()


def test_pymeasure_keithley2600(lab: VirtualLab) -> None:
    from pymeasure.instruments.keithley import Keithley2600

    k = Keithley2600(lab.addresses["smu2600b"], visa_library="@py", read_termination="\n",
                     write_termination="\n", timeout=3000)
    try:
        k.ChA.apply_voltage(voltage_range=1, compliance_current=1e-4)
        k.ChA.source_voltage = 0.2
        k.ChA.source_output = "ON"
        g = route_read(lab)
        assert abs(k.ChA.current / 0.2 - g) <= read_noise_S(lab, g)
        k.ChA.source_output = "OFF"
    finally:
        k.adapter.close()


def test_pymeasure_agilent33500(lab: VirtualLab) -> None:
    from pymeasure.instruments.agilent import Agilent33500

    a = Agilent33500(lab.addresses["pulsegen"], visa_library="@py", read_termination="\n",
                     write_termination="\n", timeout=3000)
    try:
        a.shape = "PULS"
        a.output_load = "INF"
        a.voltage_high = 1.0
        a.voltage_low = 0.0
        a.pulse_width = 1e-6
        a.pulse_period = 1e-5
        a.burst_ncycles = 2
        a.trigger_source = "BUS"
        a.burst_state = True
        assert a.voltage_high == pytest.approx(1.0)
        assert a.pulse_width == pytest.approx(1e-6)
    finally:
        a.adapter.close()


@pytest.mark.parametrize("message", [
    # 2450 manual, "Making a basic front-panel/remote measurement" style sequences.
    '*RST;:SOUR:FUNC VOLT;:SOUR:VOLT:RANG 2;:SOUR:VOLT:ILIM 0.01;:SOUR:VOLT 1;'
    ':SENS:FUNC "CURR";:SENS:CURR:RANG:AUTO ON;:OUTP ON;:READ? "defbuffer1",SOUR,READ;:OUTP OFF',
    '*RST;:SOUR:SWE:VOLT:LIN 0,1,6,0.1;:INIT;*WAI;:TRAC:DATA? 1,6,"defbuffer1",SOUR,READ',
])
def test_manual_sequences_on_the_2450(lab: VirtualLab, message: str) -> None:
    import pyvisa

    rm = pyvisa.ResourceManager("@py")
    h = rm.open_resource(lab.addresses["smu2450"], read_termination="\n",
                         write_termination="\n", timeout=5000)
    try:
        reply = h.query(message)
        values = [float(x) for x in reply.split(",")]
        assert len(values) == (2 if "READ?" in message else 12)  # element lists: SOUR, READ
        assert h.query(":SYST:ERR?").startswith("0") or h.query(":SYST:ERR?")
        assert h.query("*LANG?") == "SCPI"
    finally:
        h.close()


def test_manual_tsp_loop_and_script_on_the_2600b(lab: VirtualLab) -> None:
    """2600B manual examples: a loop in one chunk, ``reset()``, ``printbuffer`` under
    ``format.asciiprecision``, and ``loadandrunscript`` … ``endscript``."""
    import pyvisa

    rm = pyvisa.ResourceManager("@py")
    h = rm.open_resource(lab.addresses["smu2600b"], read_termination="\n",
                         write_termination="\n", timeout=5000)
    try:
        h.write("reset() for i = 1, 3 do print(i) end")
        assert [h.read() for _ in range(3)] == ["1.00000e+00", "2.00000e+00", "3.00000e+00"]
        h.write("loadandrunscript\nx = 0\nfor k = 1, 4 do x = x + k end\nprint(x)\nendscript")
        assert h.read() == "1.00000e+01"
        h.write("format.asciiprecision = 3 smua.nvbuffer1.clear() smua.source.output = 1 "
                "smua.measure.count = 2 smua.measure.i(smua.nvbuffer1) smua.source.output = 0 "
                "printbuffer(1, 2, smua.nvbuffer1.readings)")
        assert h.read() == "0.00e+00, 0.00e+00"  # nothing routed: open circuit
        h.write("os.exit()\nprint(errorqueue.next())")
        assert h.read().startswith("-2.86e+02\tTSP Runtime error")  # no os in the sandbox
        h.write("while true do end\nprint(errorqueue.next())")
        assert "budget" in h.read()
    finally:
        h.close()


@pytest.mark.parametrize(("driver", "port"), [("Keithley.Keithley2450", "smu2450"),
                                              ("Keithley.Keithley2602B", "smu2600b"),
                                              ("Keysight.Keysight33522B", "pulsegen")])
def test_qcodes_snapshot_reads_every_parameter(lab: VirtualLab, driver: str, port: str) -> None:
    """``snapshot(update=True)`` queries every gettable parameter of the upstream driver.
    The only header left unanswered is qcodes' own ``…:DELay:USERNone?`` (it formats a
    missing user-delay index as ``None``; a real 2450 answers -113 to it as well)."""
    import importlib

    module, cls = driver.split(".")
    klass = getattr(importlib.import_module(f"qcodes.instrument_drivers.{module}"), cls)
    inst = klass(f"snap_{next(_ids)}", lab.addresses[port], visalib="@py")
    virtual = lab.instruments[port]
    virtual.errors.clear()
    try:
        inst.snapshot(update=True)
    finally:
        inst.close()
    assert all("USERNone" in msg for _, msg in virtual.errors), list(virtual.errors)


def test_qcodes_keithley2450_instrument_run_sweep(lab: VirtualLab) -> None:
    from qcodes.instrument_drivers.Keithley import Keithley2450

    k = Keithley2450(f"q2450s_{next(_ids)}", lab.addresses["smu2450"], visalib="@py")
    try:
        k.reset()
        k.source.function("voltage")
        k.sense.function("current")
        k.source.limit(1e-4)
        k.source.sweep_setup(0.1, 0.25, 4, range_mode="BEST")
        g = route_read(lab, 4)
        with k.output_enabled.set_to(True):
            data = np.asarray(k.sense.sweep())
        assert np.all(np.abs(data / np.linspace(0.1, 0.25, 4) - g) <= read_noise_S(lab, g))
    finally:
        k.close()
