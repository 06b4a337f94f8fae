"""CPU time of the processes a benchmark measures, read from /proc (Linux, proc(5))."""
from __future__ import annotations

import os
from pathlib import Path


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by `pid` and every live descendant."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total
