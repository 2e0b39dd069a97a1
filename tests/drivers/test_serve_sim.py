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


def test_serve_sim_binds_fixed_ports() -> None:
    import socket

    with socket.socket() as s:  # a base port that is free right now
        s.bind(("127.0.0.1", 0))
        base = s.getsockname()[1]
    if base > 65000:
        base = 40000 + base % 20000
    proc = subprocess.Popen([sys.executable, "-m", "labctl", "serve-sim", "--base-port",
                             str(base)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        assert proc.stdout is not None
        text = ""
        for line in proc.stdout:
            text += line
            if "Ctrl+C" in line or "rror" in line:
                break
        assert f"socket://127.0.0.1:{base}" in text
        assert f"TCPIP0::127.0.0.1::{base + 1}::SOCKET" in text
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
