#!/usr/bin/env python3
"""System calls in a strace log that a systemd SystemCallFilter group lacks.

Usage: syscalls.py GROUPS TRACE [GROUP]   (GROUP defaults to @system-service)
GROUPS is the output of `systemd-analyze syscall-filter`, TRACE that of
`strace -f -o TRACE …`. Prints "-" and the number of distinct calls made when
every call is in GROUP (groups inside it expanded), else the calls outside it
and that number; "PARSE: …" when either file could not be read as expected.
"""
import re
import sys

groups, cur = {}, None
for line in open(sys.argv[1]):
    s = line.strip()
    if not s or s.startswith("#"):
        continue
    if not line[0].isspace():
        cur = groups.setdefault(s, [])
    elif cur is not None:
        cur.append(s)


def expand(name, seen=()):
    out = set()
    for n in groups.get(name, []):
        if n.startswith("@"):
            if n not in seen:
                out |= expand(n, seen + (name,))
        else:
            out.add(n)
    return out


allowed = expand(sys.argv[3] if len(sys.argv) > 3 else "@system-service")
used = set()
for line in open(sys.argv[2]):
    m = re.match(r"\d+\s+([a-z0-9_]+)\(", line)
    if m:
        used.add(m.group(1))
if len(allowed) < 100 or len(used) < 10:
    print("PARSE: %d allowed, %d used" % (len(allowed), len(used)))
else:
    print(" ".join(sorted(used - allowed)) or "-", len(used))
