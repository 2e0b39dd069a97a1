"""``labctl serve-sim`` starts the virtual instruments, prints their addresses, answers
over pyvisa-py and stops cleanly on Ctrl+C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pyvisa


def test_serve_sim_prints_addresses_serves_and_stops_on_ctrl_c() -> None:
    proc = subprocess.Popen([sys.executable, "-m", "labctl", "serve-sim", "--seed", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "Ctrl+C" in line:
                break
        text = "".join(lines)
        visa = re.findall(r"(TCPIP0::127\.0\.0\.1::\d+::SOCKET)", text)
        assert len(visa) == 3
        assert re.search(r"socket://127\.0\.0\.1:\d+", text)
        rm = pyvisa.ResourceManager("@py")
        res = rm.open_resource(visa[0], read_termination="\n", write_termination="\n")
        assert "2450" in res.query("*IDN?")
        res.close()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0
        assert "stopping" in out
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
