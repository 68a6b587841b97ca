#!/usr/bin/env node
// Drive one MCP session step by step with the official TypeScript SDK client (npm
// `@modelcontextprotocol/client`, v2), over stdio: mcp_steps.py's interface, in TypeScript.
//
// Usage: node ts_steps.mjs [--era 2025|2026] [--roots URI[,URI...]] STEPS_JSON -- CMD [ARGS...]
//
// --era 2025 (the default) opens the session with the `initialize` handshake (2025-11-25). --era
// 2026 pins the 2026-07-28 revision: `server/discover` (no fallback to initialize), then the SDK's
// `_meta` envelope on every request. The discover probe runs in place, on the one CMD process (for
// its own base stdio transport the SDK would probe on a short-lived second copy of CMD). --roots
// declares the roots capability and answers roots requests with these URIs; without it the client
// has no roots capability. The sampling capability is always declared, and a sampling request is
// answered with the fixed text "sampled by the ts client". In 2026 a call answered
// `input_required` is resolved by the SDK itself, through the same two handlers.
//
// STEPS_JSON is a list of steps: ["list"], ["call", TOOL, ARGUMENTS], ["call-progress", TOOL,
// ARGUMENTS] (asks for progress notifications), ["call-big", TOOL, ARGUMENT, BYTES] (a string of
// BYTES "x" as ARGUMENT; the step reports the result's length instead of its text), ["ping"],
// ["notifications"], ["result-meta"]. Prints one JSON line on stdout: {"server", "steps": [...]},
// where "server" is the server's name (2026: from the discover result's serverInfo stamp, null
// when absent) and
// - a list step gives {"tools": [sorted names], "descriptions": {tool: text}, "annotations": {tool:
//   annotations or null}, "meta": {tool: _meta or null}} (as the SDK parsed them: annotation keys
//   the SDK does not know are dropped);
// - a call step gives {"is_error", "text" (the text items joined by "\n"), "structured" (the
//   structuredContent or null), "progress" (progress notifications so far)}, or {"error": {"code",
//   "message", "data"}} when it was answered with a JSON-RPC error (as sent), or {"client_error":
//   MESSAGE} for anything else the SDK threw (e.g. structuredContent that does not match the
//   tool's outputSchema, which the SDK checks once the tools were listed);
// - a notifications step gives {"notifications": [method, ...]}: every notification that came from
//   the server so far, in order, taken off the wire;
// - a result-meta step gives {"result_meta": the `_meta` of the initialize result (2025) or of the
//   discover result (2026), as sent, or null}.
// When the handshake fails (e.g. --era 2026 against a 2025-only server) the line is {"server":
// null, "steps": [], "connect_error": {"error" or "client_error" as for a call}} and the exit status
// 1. The environment is passed to CMD as is.
import process from "node:process";

import { Client, ProtocolError } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";

const MODERN_VERSION = "2026-07-28";
const USAGE = "usage: ts_steps.mjs [--era 2025|2026] [--roots URI[,URI...]] STEPS_JSON -- CMD [ARGS...]";

function usage(message) {
  process.stderr.write(`ts_steps.mjs: ${message}\n${USAGE}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const sep = argv.indexOf("--");
  if (sep < 0 || sep + 1 >= argv.length) usage("missing -- CMD");
  let era = "2025";
  let roots = null;
  let steps = null;
  const own = argv.slice(0, sep);
  for (let i = 0; i < own.length; i++) {
    if (own[i] === "--era") {
      era = own[++i];
    } else if (own[i] === "--roots") {
      roots = (own[++i] ?? "").split(",").filter((uri) => uri !== "");
    } else if (steps === null) {
      steps = JSON.parse(own[i]);
    } else {
      usage(`unexpected argument ${own[i]}`);
    }
  }
  if (era !== "2025" && era !== "2026") usage(`unknown era ${era}`);
  if (!Array.isArray(steps)) usage("STEPS_JSON must be a JSON list");
  return { era, roots, steps, command: argv.slice(sep + 1) };
}

// The SDK's stdio transport, subclassed for two reasons: the SDK probes `server/discover` in place
// on a subclass (on a second spawn of CMD for the base class itself), and the subclass sees the
// raw messages: the handshake result's `_meta` as sent, the server's notifications, and the
// JSON-RPC errors that tell a server's error from one the SDK raised itself.
class RecordingStdioTransport extends StdioClientTransport {
  constructor(params) {
    super(params);
    this.handshakeIds = new Set();
    this.handshakeMeta = null;
    this.notifications = [];
    this.wireErrors = []; // the error responses received during the current step
    let inner;
    // `onmessage` is an instance field of the base class, set by the client (and swapped during
    // the discover probe): wrap whichever handler is installed.
    Object.defineProperty(this, "onmessage", {
      configurable: true,
      enumerable: true,
      get: () => inner,
      set: (handler) => {
        inner =
          typeof handler === "function"
            ? (message, extra) => {
                this.record(message);
                return handler(message, extra);
              }
            : handler;
      },
    });
  }

  record(message) {
    if (typeof message !== "object" || message === null) return;
    if ("method" in message) {
      if (!("id" in message)) this.notifications.push(message.method);
      return;
    }
    if (this.handshakeIds.has(message.id) && message.result !== undefined) {
      this.handshakeMeta = message.result._meta ?? null;
    }
    if (message.error !== undefined) this.wireErrors.push(message.error);
  }

  send(message, options) {
    if ((message.method === "initialize" || message.method === "server/discover") && "id" in message) {
      this.handshakeIds.add(message.id);
    }
    return super.send(message, options);
  }
}

// A JSON-RPC error answered on the wire is reported as sent ("error"); anything else the SDK
// throws, including the ProtocolErrors it raises itself, is a "client_error".
function errorStep(e, wireErrors) {
  const wire = e instanceof ProtocolError ? wireErrors.find((w) => w.code === e.code) : undefined;
  if (wire !== undefined) return { error: { code: wire.code, message: wire.message, data: wire.data ?? null } };
  return { client_error: e instanceof Error ? e.message : String(e) };
}

async function runStep(client, transport, step, progress) {
  const kind = step[0];
  if (kind === "list") {
    const { tools } = await client.listTools();
    const of = (field) => Object.fromEntries(tools.map((t) => [t.name, t[field] ?? null]));
    return {
      tools: tools.map((t) => t.name).sort(),
      descriptions: of("description"),
      annotations: of("annotations"),
      meta: of("_meta"),
    };
  }
  if (kind === "ping") {
    await client.ping();
    return { pong: true };
  }
  if (kind === "notifications") return { notifications: [...transport.notifications] };
  if (kind === "result-meta") return { result_meta: transport.handshakeMeta };
  if (kind === "call-big") {
    const r = await client.callTool({ name: step[1], arguments: { [step[2]]: "x".repeat(step[3]) } });
    const text = (r.content ?? []).map((c) => (c.type === "text" ? c.text : "")).join("");
    return { is_error: Boolean(r.isError), length: text.length, all_x: text === "x".repeat(step[3]) };
  }
  if (kind === "call" || kind === "call-progress") {
    const options = kind === "call-progress" ? { onprogress: (p) => progress.push(p.progress) } : {};
    const r = await client.callTool({ name: step[1], arguments: step[2] ?? {} }, options);
    return {
      is_error: Boolean(r.isError),
      text: (r.content ?? []).map((c) => (c.type === "text" ? c.text : "")).join("\n"),
      structured: r.structuredContent ?? null,
      progress: progress.length,
    };
  }
  return { client_error: `unknown step ${JSON.stringify(kind)}` };
}

async function main() {
  const { era, roots, steps, command } = parseArgs(process.argv.slice(2));
  const capabilities = { sampling: {} };
  if (roots !== null) capabilities.roots = {};
  const options = { capabilities };
  if (era === "2026") options.versionNegotiation = { mode: { pin: MODERN_VERSION } };
  const client = new Client({ name: "mcp-warden-ts-test-client", version: "1.0.0" }, options);
  client.setRequestHandler("sampling/createMessage", async () => ({
    role: "assistant",
    content: { type: "text", text: "sampled by the ts client" },
    model: "test-model",
  }));
  if (roots !== null) {
    client.setRequestHandler("roots/list", async () => ({ roots: roots.map((uri) => ({ uri })) }));
  }

  // The whole environment: without `env` the SDK passes only HOME, LOGNAME, PATH, SHELL, TERM, USER.
  const env = Object.fromEntries(Object.entries(process.env).filter(([, v]) => v !== undefined));
  const transport = new RecordingStdioTransport({ command: command[0], args: command.slice(1), env });
  try {
    await client.connect(transport);
  } catch (e) {
    const line = { server: null, steps: [], connect_error: errorStep(e, transport.wireErrors) };
    process.stdout.write(`${JSON.stringify(line)}\n`);
    await transport.close().catch(() => {});
    return 1;
  }

  const out = [];
  const progress = [];
  for (const step of steps) {
    transport.wireErrors = [];
    try {
      out.push(await runStep(client, transport, step, progress));
    } catch (e) {
      out.push(errorStep(e, transport.wireErrors));
    }
  }
  const server = client.getServerVersion()?.name ?? null;
  await client.close();
  process.stdout.write(`${JSON.stringify({ server, steps: out })}\n`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`ts_steps.mjs: ${e?.stack ?? e}\n`);
    process.exit(1);
  },
);
