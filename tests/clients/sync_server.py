#!/usr/bin/env python3
"""A minimal MCP server that works one line at a time, synchronously: it reads a request, writes
its answer (padded to 2 KiB), and reads the next only once the write returned. A client that
pipelines more than a pipe holds would wedge a relay whose writes block; the tests use it to
show mcp-warden's does not.

With `stray`, 50 responses to requests nobody made go before each answer: the layer drops each
(and would tell each on stderr, which a client may never read).
"""
import json
import sys

PAD = "x" * 2048
STRAY = len(sys.argv) > 1 and sys.argv[1] == "stray"

for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg or "method" not in msg:
        continue
    if msg["method"] == "initialize":
        result = {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "sync", "version": "1"}}
    else:
        result = {"pad": PAD}
    for k in range(50 if STRAY else 0):
        sys.stdout.write('{"jsonrpc": "2.0", "id": "stray-%d", "result": {}}\n' % k)
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + "\n")
    sys.stdout.flush()
