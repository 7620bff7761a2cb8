"""Runs a command and appends its CPU seconds and peak RSS to a file, for `make bench`.

usage: rusage.py NAME OUT_FILE COMMAND [ARG...]; exits with the command's status.
Appends `NAME CPU_SECONDS PEAK_RSS_MIB` (the format of bench.sh's table) to OUT_FILE.
"""

import resource
import subprocess
import sys


def main() -> int:
    name, out, command = sys.argv[1], sys.argv[2], sys.argv[3:]
    status = subprocess.call(command)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "a", encoding="utf-8") as f:
        f.write(f"{name:<26} {usage.ru_utime + usage.ru_stime:12.2f} {usage.ru_maxrss / 1024:14.1f}\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
