#!/usr/bin/env python3
"""Drive one MCP session with several tool calls (official Python SDK `mcp`, stdio).

Usage: mcp_calls.py CALLS_JSON -- CMD [ARGS...]
CALLS_JSON is a list of [tool, arguments]. Prints one JSON object: {"server", "results": [{"tool",
"is_error", "text"}]}. The environment is passed to CMD as is (see mcp_session.py).
"""
import json
import os
import sys

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client


async def main() -> None:
    sep = sys.argv.index("--")
    calls = json.loads(sys.argv[1])
    command = sys.argv[sep + 1 :]
    params = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    results = []
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            for tool, arguments in calls:
                r = await session.call_tool(tool, arguments)
                text = "\n".join(getattr(c, "text", "") for c in r.content)
                results.append({"tool": tool, "is_error": bool(r.is_error), "text": text})
    print(json.dumps({"server": init.server_info.name, "results": results}))


anyio.run(main)
