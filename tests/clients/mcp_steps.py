#!/usr/bin/env python3
"""Drive one MCP session step by step with the official Python SDK (PyPI `mcp`), over stdio.

Usage: mcp_steps.py STEPS_JSON -- CMD [ARGS...]

STEPS_JSON is a list of steps: ["list"], ["call", TOOL, ARGUMENTS], ["call-progress", TOOL,
ARGUMENTS] (asks for progress notifications), ["call-big", TOOL, ARGUMENT, BYTES] (a string of
BYTES "x" as ARGUMENT; the step reports the result's length instead of its text), ["ping"]. Prints one JSON object on stdout:
{"server", "steps": [...]} where a list step gives {"tools": [names], "descriptions": {...}} and a
call step {"is_error", "text", "structured"} or {"error": {"code", "message", "data"}} when the
call was answered with a JSON-RPC error. A sampling request from the server is answered with a
fixed message, so that server-to-client requests are exercised. The environment is passed to CMD
as is.
"""
import json
import os
import sys

import anyio
from mcp import ClientSession, types
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError


async def sampling(context, params):
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="sampled by the test client"),
        model="test-model",
    )


async def main() -> None:
    sep = sys.argv.index("--")
    steps = json.loads(sys.argv[1])
    command = sys.argv[sep + 1 :]
    params = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    out = []
    progress = []

    async def on_progress(p, total, message):
        progress.append(p)

    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write, sampling_callback=sampling) as session:
            init = await session.initialize()
            for step in steps:
                kind = step[0]
                try:
                    if kind == "list":
                        tools = await session.list_tools()
                        out.append({
                            "tools": sorted(t.name for t in tools.tools),
                            "descriptions": {t.name: t.description for t in tools.tools},
                        })
                    elif kind == "ping":
                        await session.send_ping()
                        out.append({"pong": True})
                    elif kind == "call-big":
                        r = await session.call_tool(step[1], {step[2]: "x" * step[3]})
                        text = "".join(getattr(c, "text", "") for c in r.content)
                        out.append({"is_error": bool(r.is_error), "length": len(text), "all_x": text == "x" * step[3]})
                    else:
                        cb = on_progress if kind == "call-progress" else None
                        r = await session.call_tool(step[1], step[2], progress_callback=cb)
                        text = "\n".join(getattr(c, "text", "") for c in r.content)
                        out.append({
                            "is_error": bool(r.is_error),
                            "text": text,
                            "structured": r.structured_content,
                            "progress": len(progress),
                        })
                except MCPError as e:
                    out.append({"error": {"code": e.code, "message": e.message, "data": e.data}})
    print(json.dumps({"server": init.server_info.name, "steps": out}))


anyio.run(main)
