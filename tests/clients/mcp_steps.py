#!/usr/bin/env python3
"""Drive one MCP session step by step with the official Python SDK (PyPI `mcp`), over stdio.

Usage: mcp_steps.py [--era 2025|2026] [--roots URI[,URI...]] STEPS_JSON -- CMD [ARGS...]

--era 2025 (the default) opens the session with the `initialize` handshake (2025-11-25). --era 2026
opens it the 2026-07-28 way: no initialize; `server/discover`, whose result the session adopts, so
that every later request carries `_meta["io.modelcontextprotocol/protocolVersion"]`,
`clientInfo` and `clientCapabilities`. --roots declares the roots capability and answers roots
requests with these URIs (file://...); without it the client has no roots capability.

STEPS_JSON is a list of steps: ["list"], ["call", TOOL, ARGUMENTS], ["call-progress", TOOL,
ARGUMENTS] (asks for progress notifications), ["call-big", TOOL, ARGUMENT, BYTES] (a string of
BYTES "x" as ARGUMENT; the step reports the result's length instead of its text), ["ping"],
["notifications"], ["result-meta"]. Prints one JSON object on stdout: {"server", "steps": [...]},
where "server" is the server's name (2026: from the discover result's serverInfo stamp, null when
absent) and
- a list step gives {"tools": [names], "descriptions": {tool: text}, "annotations": {tool: dict or
  null}, "meta": {tool: _meta or null}};
- a call step gives {"is_error", "text", "structured" (the structuredContent), "progress"}, or
  {"error": {"code", "message", "data"}} when the call was answered with a JSON-RPC error, or
  {"client_error": MESSAGE} when the SDK client itself refused the result: it checks
  structuredContent against the tool's outputSchema (listing the tools first if needed) and
  raises, and it rejects a result that does not fit the protocol version;
- a notifications step gives {"notifications": [method, ...]}: every notification that came from
  the server so far, in order (taken off the wire, so methods the SDK would drop are there too);
- a result-meta step gives {"result_meta": the `_meta` of the initialize result (2025) or of the
  discover result (2026), or null}.
A sampling request from the server is answered with a fixed message, so that server-to-client
requests are exercised. In 2026 a call answered `resultType: "input_required"` is resolved the
SDK's way: each input request (sampling, roots) goes to the same callbacks, and the call is retried
with `inputResponses` and the echoed `requestState` until a final result. The environment is
passed to CMD as is.
"""
import json
import os
import sys

import anyio
from mcp import ClientSession, types
from mcp.client._input_required import run_input_required_driver
from mcp.client.session import ClientRequestContext
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import JSONRPCNotification
from pydantic import ValidationError


async def sampling(context, params):
    return types.CreateMessageResult(
        role="assistant",
        content=types.TextContent(type="text", text="sampled by the test client"),
        model="test-model",
    )


def roots_callback(uris):
    async def list_roots(context):
        return types.ListRootsResult(roots=[types.Root(uri=u) for u in uris])
    return list_roots


def parse_args(argv):
    """(era, roots, steps, command) from [--era E] [--roots URIS] STEPS_JSON -- CMD..."""
    sep = argv.index("--")
    era, roots, steps = "2025", None, None
    args = iter(argv[1:sep])
    for arg in args:
        if arg == "--era":
            era = next(args)
        elif arg == "--roots":
            roots = next(args).split(",")
        else:
            steps = json.loads(arg)
    if era not in ("2025", "2026") or steps is None:
        sys.exit(__doc__)
    return era, roots, steps, argv[sep + 1 :]


async def tap(source, sink, seen):
    """Pass the server's messages on to the session, noting each notification's method."""
    async with sink:
        async for item in source:
            if isinstance(getattr(item, "message", None), JSONRPCNotification):
                seen.append(item.message.method)
            await sink.send(item)


async def call_tool(session, name, arguments, progress_callback=None):
    """tools/call, resolving 2026 input_required rounds through the session's callbacks."""

    async def send(responses, state):
        return await session.call_tool(
            name, arguments, progress_callback=progress_callback,
            input_responses=responses, request_state=state, allow_input_required=True,
        )

    async def dispatch(key, request):
        meta = request.params.meta if request.params else None
        ctx = ClientRequestContext(session=session, request_id=key, meta=meta)
        return await session.dispatch_input_request(ctx, request)

    return await run_input_required_driver(await send(None, None), dispatch=dispatch, retry=send)


def dump(model):
    return model.model_dump(by_alias=True, mode="json", exclude_none=True) if model is not None else None


async def run_step(session, step, progress, notifications, opening):
    kind = step[0]

    async def on_progress(p, total, message):
        progress.append(p)

    if kind == "list":
        tools = (await session.list_tools()).tools
        return {
            "tools": sorted(t.name for t in tools),
            "descriptions": {t.name: t.description for t in tools},
            "annotations": {t.name: dump(t.annotations) for t in tools},
            "meta": {t.name: t.meta for t in tools},
        }
    if kind == "ping":
        await session.send_ping()
        return {"pong": True}
    if kind == "notifications":
        return {"notifications": list(notifications)}
    if kind == "result-meta":
        return {"result_meta": opening.meta}
    try:
        if kind == "call-big":
            r = await call_tool(session, step[1], {step[2]: "x" * step[3]})
            text = "".join(getattr(c, "text", "") for c in r.content)
            return {"is_error": bool(r.is_error), "length": len(text), "all_x": text == "x" * step[3]}
        r = await call_tool(session, step[1], step[2], on_progress if kind == "call-progress" else None)
    except (RuntimeError, ValidationError) as e:
        return {"client_error": str(e)}
    return {
        "is_error": bool(r.is_error),
        "text": "\n".join(getattr(c, "text", "") for c in r.content),
        "structured": r.structured_content,
        "progress": len(progress),
    }


async def main() -> None:
    era, roots, steps, command = parse_args(sys.argv)
    params = StdioServerParameters(command=command[0], args=command[1:], env=dict(os.environ))
    out = []
    progress = []
    notifications = []
    callbacks = {"sampling_callback": sampling}
    if roots is not None:
        callbacks["list_roots_callback"] = roots_callback(roots)

    async with stdio_client(params) as (read, write), anyio.create_task_group() as tg:
        sink, tapped = anyio.create_memory_object_stream(0)
        tg.start_soon(tap, read, sink, notifications)
        async with ClientSession(tapped, write, **callbacks) as session:
            opening = await (session.discover() if era == "2026" else session.initialize())
            for step in steps:
                try:
                    out.append(await run_step(session, step, progress, notifications, opening))
                except MCPError as e:
                    out.append({"error": {"code": e.code, "message": e.message, "data": e.data}})
        tg.cancel_scope.cancel()
    server = session.server_info.name if session.server_info is not None else None
    print(json.dumps({"server": server, "steps": out}))


anyio.run(main)
