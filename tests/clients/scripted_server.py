#!/usr/bin/env python3
"""A raw JSON-RPC MCP server (no SDK) whose tool calls run a script of protocol breaks, for tests
only.

Usage: scripted_server.py [dup]

Announces the `tools` and `tasks` capabilities; lists `peek` (annotated read-only and
closed-world) and `writer` (no annotations), and with `dup` also two tools named `dup`, the first
read-only, the second not. Answers `ping`. A `tools/call`'s `arguments.script` is a list of
actions, run in order, each adding a line to the report that the final result carries:
- ["raw", LINE]      writes LINE as it is, `{id}` replaced by the call's id as JSON
- ["rawnonl", LINE]  the same without the newline
- ["write", PATH]    tries to append to PATH: "write PATH: OK" or "write PATH: BLOCKED ERRNO"
- ["ask", LINE]      writes LINE (a request), then reads the next line: "asked: LINE-READ"
- ["read"]           reads the next line: "read: LINE-READ"
- ["sleep", SECONDS]
- ["noresp"]         no result at the end (a cancelled call, say)
- ["exit"]           exits at once
Then, unless ["noresp"], the result: one text item, the report's lines.
"""
import errno
import json
import os
import sys
import time

DUP = len(sys.argv) > 1 and sys.argv[1] == "dup"


def send(message, newline=True):
    line = message if isinstance(message, str) else json.dumps(message)
    sys.stdout.write(line + ("\n" if newline else ""))
    sys.stdout.flush()


def write(path):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, b"written by a tool\n")
        os.close(fd)
        return f"write {path}: OK"
    except OSError as e:
        return f"write {path}: BLOCKED {errno.errorcode.get(e.errno, e.errno)}"


def call(request):
    rid = request["id"]
    script = (request.get("params") or {}).get("arguments", {}).get("script", [])
    report, respond = [], True
    for action in script:
        kind = action[0]
        if kind in ("raw", "rawnonl"):
            send(action[1].replace("{id}", json.dumps(rid)), newline=kind == "raw")
        elif kind == "write":
            report.append(write(action[1]))
        elif kind == "ask":
            send(action[1])
            report.append("asked: " + sys.stdin.readline().strip())
        elif kind == "read":
            report.append("read: " + sys.stdin.readline().strip())
        elif kind == "sleep":
            time.sleep(action[1])
        elif kind == "noresp":
            respond = False
        elif kind == "exit":
            os._exit(0)
    if respond:
        text = "\n".join(report) or "ok"
        send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": text}]}})


SCRIPT = {"type": "object", "properties": {"script": {"type": "array"}}}
TOOLS = [
    {"name": "peek", "inputSchema": SCRIPT, "annotations": {"readOnlyHint": True, "openWorldHint": False}},
    {"name": "writer", "inputSchema": SCRIPT},
]
if DUP:
    TOOLS += [
        {"name": "dup", "inputSchema": SCRIPT, "annotations": {"readOnlyHint": True, "openWorldHint": False}},
        {"name": "dup", "inputSchema": SCRIPT},
    ]

for line in sys.stdin:
    request = json.loads(line)
    if not isinstance(request, dict) or "method" not in request or "id" not in request:
        continue
    method, rid = request["method"], request["id"]
    if method == "initialize":
        capabilities = {"tools": {}, "tasks": {"requests": {"tools": {"call": {}}}}}
        result = {"protocolVersion": "2025-11-25", "capabilities": capabilities, "serverInfo": {"name": "scripted", "version": "1"}}
        send({"jsonrpc": "2.0", "id": rid, "result": result})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": rid, "result": {"tools": TOOLS}})
    elif method == "tools/call":
        call(request)
    elif method == "ping":
        send({"jsonrpc": "2.0", "id": rid, "result": {}})
    else:
        send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": "no such method"}})
