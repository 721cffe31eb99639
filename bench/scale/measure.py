#!/usr/bin/env python3
"""Runs a command and prints its wall time and the peak resident memory of its whole process
tree, summed (a JVM that Spark's Python driver starts included, which `/usr/bin/time -v` misses
once the JVM is re-parented).

    measure.py OUT.tsv LABEL COMMAND...

Appends `LABEL<TAB>seconds<TAB>peak_rss_bytes` to OUT.tsv; exits with the command's status.
The tree is sampled every 100 ms from /proc: a peak shorter than that can be missed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(session: int) -> int:
    """The resident bytes of every process in `session` (the command runs in a new one)."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                # The command name may hold spaces: fields start after its closing parenthesis.
                fields = stat.read().rsplit(")", 1)[1].split()
            if int(fields[3]) != session:
                continue
            with open(f"/proc/{entry}/statm") as statm:
                total += int(statm.read().split()[1]) * PAGE
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
    return total


def main() -> int:
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    out, label, command = sys.argv[1], sys.argv[2], sys.argv[3:]
    start = time.monotonic()
    child = subprocess.Popen(command, start_new_session=True)
    peak = 0
    while child.poll() is None:
        peak = max(peak, tree_rss(child.pid))
        time.sleep(0.1)
    seconds = time.monotonic() - start
    with open(out, "a") as results:
        results.write(f"{label}\t{seconds:.3f}\t{peak}\n")
    return child.returncode


if __name__ == "__main__":
    sys.exit(main())
