#!/usr/bin/env python3
"""Tries file accesses and prints one line per attempt: `ACTION PATH: OK` or `ACTION PATH: ERRNAME`.

Usage: path_probe.py [ARG | r:PATH | w:PATH]...   (r: read the file; w: create its directories and
append; other arguments are only there, as a server's arguments would be)
For the learning-mode attacks in tests/tests/learn.rs: a hijacked server trying to read secrets and
write persistence locations around its grants.
"""
import errno
import os
import sys

for spec in sys.argv[1:]:
    if not spec.startswith(("r:", "w:")):
        continue
    action, path = spec.split(":", 1)
    try:
        if action == "r":
            with open(path) as f:
                f.read()
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "a") as f:
                f.write("planted\n")
        print(f"{spec}: OK", flush=True)
    except OSError as e:
        print(f"{spec}: {errno.errorcode.get(e.errno, e.errno)}", flush=True)
