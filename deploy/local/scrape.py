"""Reads Prometheus /metrics endpoints for `make bench` (deploy/local/bench.sh).

usage:
  scrape.py sum METRIC [LABEL=VALUE ...] -- URL...        the sum over every URL and series
  scrape.py by METRIC GROUP [LABEL=VALUE ...] -- URL...   one "GROUP_VALUE SUM" line per value
  scrape.py max METRIC [LABEL=VALUE ...] -- URL...        the largest value of any series

A series counts when it carries every LABEL=VALUE given. An endpoint that does not answer
counts as nothing (the process may have exited); the exit status is 0 either way.
"""

import re
import sys
import urllib.request

LINE = re.compile(r'^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def series(url, metric):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode("utf-8", "replace")
    except OSError:
        return
    for line in text.splitlines():
        m = LINE.match(line)
        if not m or m.group(1) != metric:
            continue
        labels = dict(LABEL.findall(m.group(2) or ""))
        try:
            yield labels, float(m.group(3))
        except ValueError:
            continue


def main() -> int:
    args = sys.argv[1:]
    if "--" not in args or len(args) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    split = args.index("--")
    head, urls = args[:split], args[split + 1:]
    mode, metric, rest = head[0], head[1], head[2:]
    group = None
    if mode == "by":
        group, rest = rest[0], rest[1:]
    wanted = dict(kv.split("=", 1) for kv in rest)
    values = []
    groups = {}
    for url in urls:
        for labels, value in series(url, metric):
            if any(labels.get(k) != v for k, v in wanted.items()):
                continue
            values.append(value)
            if group is not None:
                key = labels.get(group, "")
                groups[key] = groups.get(key, 0.0) + value
    if mode == "sum":
        print(f"{sum(values):.0f}")
    elif mode == "max":
        print(f"{max(values, default=0.0):.0f}")
    elif mode == "by":
        for key in sorted(groups):
            print(f"{key} {groups[key]:.0f}")
    else:
        print(f"scrape.py: unknown mode {mode}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
