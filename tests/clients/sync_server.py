#!/usr/bin/env python3
"""A minimal MCP server that works one line at a time, synchronously: it reads a request, writes
its answer (padded to 2 KiB), and reads the next only once the write returned. A client that
pipelines more than a pipe holds would wedge a relay whose writes block; the tests use it to
show mcp-warden's does not.
"""
import json
import sys

PAD = "x" * 2048

for line in sys.stdin:
    msg = json.loads(line)
    if "id" not in msg or "method" not in msg:
        continue
    if msg["method"] == "initialize":
        result = {"protocolVersion": "2025-11-25", "capabilities": {}, "serverInfo": {"name": "sync", "version": "1"}}
    else:
        result = {"pad": PAD}
    sys.stdout.write(json.dumps({"jsonrpc": "2.0", "id": msg["id"], "result": result}) + "\n")
    sys.stdout.flush()
