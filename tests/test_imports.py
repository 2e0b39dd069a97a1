"""Importing labctl stays cheap: no qcodes, no simulator, no drivers."""

from __future__ import annotations

import subprocess
import sys


def test_import_labctl_does_not_import_qcodes_or_backends() -> None:
    code = ("import sys, labctl, labctl.core.station_spec, labctl.app.cli; "
            "bad = [m for m in ('qcodes', 'pyvisa', 'serial', 'sim_backend', 'drivers') "
            "if m in sys.modules]; print(bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


PACKAGES = ("labctl", "drivers", "calibration", "sim_backend")


def _import_graph() -> dict[str, set[str]]:
    """Module → the project modules it imports (at any depth of the file: lazy imports count)."""
    import grimp

    graph = grimp.build_graph(*PACKAGES)
    return {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(edges.get(nxt, ())))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_modules() -> None:
    """Not even a package ``__init__`` and its own modules form a loop (the old
    ``labctl.station`` ↔ ``drivers.station`` / ``sim_backend.station`` circle is gone)."""
    assert _cycles(_import_graph()) == []
