#!/usr/bin/env python3
"""Drive one MCP session with the official Python SDK (PyPI `mcp`) over stdio.

Usage: mcp_session.py TOOL JSON_ARGUMENTS -- CMD [ARGS...]

Starts CMD as an MCP server, runs initialize, tools/list and one tools/call, and prints one JSON
object on stdout: {"server", "tools", "is_error", "text"}. The environment is passed to CMD as is
(the SDK would otherwise pass only a small default set), so mcp-warden's own filtering is tested.
"""
import json
import os
import sys

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client


async def main() -> None:
    sep = sys.argv.index("--")
    tool, arguments = sys.argv[1], json.loads(sys.argv[2])
    command = sys.argv[sep + 1 :]
    params = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            tools = await session.list_tools()
            result = await session.call_tool(tool, arguments)
    text = "\n".join(getattr(c, "text", "") for c in result.content)
    print(json.dumps({
        "server": init.server_info.name,
        "tools": sorted(t.name for t in tools.tools),
        "is_error": bool(result.is_error),
        "text": text,
    }))


anyio.run(main)
