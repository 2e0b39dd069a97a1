"""``labctl info``: describe the chip and the backend a station opens."""

from __future__ import annotations

import argparse
import json
from typing import Any

NAME = "info"
HELP = "describe the chip and backend of a station (default: the simulated chip)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--station", help="station file (default: simulated 180 nm macro)")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")


def main(args: argparse.Namespace) -> int:
    from labctl.runs.backends import open_backend

    with open_backend(args.station) as be:
        chip = be.chip.to_dict()
        info: dict[str, Any] = {
            "backend": type(be).__name__,
            "chip": chip,
            "envelope": be.envelope.to_dict(),
            "capabilities": {
                k: getattr(be.capabilities, k) for k in be.capabilities.__dataclass_fields__
            },
        }
        describe = getattr(be, "describe", None)
        if callable(describe):
            info["details"] = describe()
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    c = info["chip"]
    print(f"backend   {info['backend']}")
    print(f"chip      {c['chip_id']}  preset {c['preset'] or '-'}")
    print(
        f"array     {c['n_tiles']} tiles × {c['n_rows']} rows × {c['n_cols']} cols "
        f"= {c['n_tiles'] * c['n_rows'] * c['n_cols']:,} 1T1R cells"
    )
    print(f"window    {c['g_min_S'] * 1e6:g} – {c['g_max_S'] * 1e6:g} µS")
    print(f"read      {c['read_V']:g} V, gate {c['read_gate_V']:g} V")
    print(
        f"mvm       DAC {c['dac_bits']} bit ±{c['mvm_input_max_V']:g} V, "
        f"ADC {c['adc_bits']} bit ±{c['adc_range_A'] * 1e6:g} µA"
    )
    print("terminals " + "; ".join(f"{k}: {v}" for k, v in c["terminals"].items()))
    print("envelope  " + ", ".join(f"{k}={v:g}" for k, v in info["envelope"].items()))
    print(
        "caps      "
        + ", ".join(f"{k}={v}" for k, v in info["capabilities"].items() if k != "notes")
    )
    for k, v in info.get("details", {}).items():
        print(f"{k:<9} {v}")
    return 0
