"""``labctl serve-sim``: serve the simulated chip as virtual instruments on loopback.

Starts the virtual test board (framed binary protocol over TCP, for pyserial
``socket://``), a Keithley 2450, a Keithley 2600B and a Keysight 33500B (SCPI/TSP over TCP,
for VISA ``TCPIP0::127.0.0.1::PORT::SOCKET``), all sharing one simulated macro, prints how
to reach them and runs until Ctrl+C. Point a station file's addresses at them to drive the
simulator through the real drivers, or connect with any VISA tool.
"""

from __future__ import annotations

import argparse
import signal
import threading

NAME = "serve-sim"
HELP = "serve the simulated chip as virtual instruments on 127.0.0.1 until Ctrl+C"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--station", help="take preset, seed and chip_id from this station file")
    p.add_argument("--preset", default=None, help="simulator preset (default: default_180nm)")
    p.add_argument("--seed", type=int, default=None, help="simulator seed (default: 0)")
    p.add_argument("--faults", default="", metavar="KIND=P,...",
                   help="damage replies at random, e.g. garble=0.01,drop=0.005 (kinds: garble, "
                        "truncate, drop, delay); for testing a client's error handling")
    p.add_argument("--base-port", type=int, default=None, metavar="PORT",
                   help="bind fixed ports: board PORT, smu2450 PORT+1, smu2600b PORT+2, "
                        "pulsegen PORT+3 (default: free ports)")
    p.add_argument("--fault-seed", type=int, default=0, help="seed of the fault generator")
    p.add_argument("--fault-delay", type=float, default=1.0, metavar="S",
                   help="how late a 'delay' fault sends its reply, seconds (default 1)")


def main(args: argparse.Namespace) -> int:
    from labctl.core.errors import ConfigError
    from labctl.core.station_spec import load_station

    preset, seed, chip_id = "default_180nm", 0, None
    if args.station:
        st = load_station(args.station).station
        preset = st.get("preset", preset)
        seed = st.get("seed", seed)
        chip_id = st.get("chip_id")
        if not isinstance(preset, str):
            raise ConfigError(args.station, "station.preset", "must be a preset name")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(args.station, "station.seed", "must be an integer")
    preset = args.preset or preset
    seed = seed if args.seed is None else args.seed

    rates: dict[str, float] = {}
    for item in filter(None, (s.strip() for s in args.faults.split(","))):
        kind, _, p = item.partition("=")
        try:
            rates[kind] = float(p)
        except ValueError:
            raise ConfigError("--faults", kind,
                              f"expected KIND=PROBABILITY, got {item!r}") from None
        if kind not in ("garble", "truncate", "drop", "delay") or not 0.0 <= rates[kind] <= 1.0:
            raise ConfigError("--faults", kind, "kind must be garble, truncate, drop or delay, "
                              "with a probability in [0, 1]")

    from sim_backend.virtual import FaultInjector, start_lab

    faults = FaultInjector(args.fault_seed, rates, args.fault_delay)
    ports = None
    if args.base_port is not None:
        if not 1024 <= args.base_port <= 65532:
            raise ConfigError("--base-port", "base-port", "must be a port in 1024..65532")
        ports = {name: args.base_port + k for k, name in
                 enumerate(("board", "smu2450", "smu2600b", "pulsegen"))}
    lab = start_lab(preset, seed, chip_id=chip_id, faults=faults, ports=ports)
    try:
        print(f"virtual instruments on 127.0.0.1 (preset {preset}, seed {seed}, "
              f"chip {lab.macro.chip.chip_id}):")
        for name, address in lab.addresses.items():
            print(f"  {name:<10} {address}")
        if rates:
            print(f"injecting faults {rates} (seed {args.fault_seed})")
        print("press Ctrl+C to stop", flush=True)
        stop = threading.Event()
        # SIGTERM (service managers, `kill PID`) stops as cleanly as Ctrl+C.
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        while not stop.wait(0.5):
            pass
        print("stopping virtual instruments")
    except KeyboardInterrupt:
        print("stopping virtual instruments")
    finally:
        lab.close()
    return 0
