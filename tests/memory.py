"""The memory a node holds: proportional set size (PSS) per process.

PSS counts a page shared by N processes as 1/N in each, so the sum over a node's
processes is what the node costs the machine (RSS would count the pages the
forked roles share with the launcher once per process).
"""

import psutil

MB = 2**20


def pss(pid):
    """PSS of one process, in bytes (0 when it is gone)."""
    try:
        return psutil.Process(pid).memory_full_info().pss
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return 0


def node_processes(pid, root_name="launcher"):
    """[(name, pid, PSS in bytes)] for the process `pid` (called `root_name`) and every live process under it."""
    root = psutil.Process(pid)
    rows = []
    for process in [root] + root.children(recursive=True):
        try:
            name = root_name if process.pid == pid else process.name()
            rows.append((name, process.pid, process.memory_full_info().pss))
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    return rows


def describe(rows):
    """One line per process and the total, in MB."""
    lines = [f"{name:<16} {pid:>8} {size / MB:8.1f} MB" for name, pid, size in rows]
    lines.append(f"{'total':<16} {len(rows):>8} {sum(size for _, _, size in rows) / MB:8.1f} MB")
    return "\n".join(lines)
