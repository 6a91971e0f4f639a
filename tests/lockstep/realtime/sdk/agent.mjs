// A real centrifuge-js client steered by the Python tests: JSON commands on stdin, JSON
// events and replies on stdout (one object per line).
//
//   node agent.mjs centrifuge        # the latest 5.x (package "centrifuge")
//   node agent.mjs centrifuge-5.0    # 5.0.x
//
// Commands: connect {url, token, tokenUrl?}, subscribe {channel}, unsubscribe {channel},
// disconnect, reconnect, publish {channel, data}, presence_stats {channel},
// history {channel, limit}, pause, resume, quit. Every command is answered with
// {"reply": id, "ok": ...} or {"reply": id, "error": ...}.
import readline from "node:readline";
import WebSocket from "ws";

const pkg = process.argv[2] || "centrifuge";
const { Centrifuge } = await import(pkg);

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
let client = null;
const subs = new Map();

function socket() {
  // The ws WebSocket under the SDK's transport, and its TCP socket.
  const transport = client && client._transport && client._transport._transport;
  return transport && transport._socket;
}

function watchClient(c) {
  c.on("connected", () => {
    // Server pings are not events of the SDK: watch its socket to see them answered.
    const transport = c._transport && c._transport._transport;
    if (transport && transport.on) {
      transport.on("message", (data) => { if (String(data) === "{}") out({ event: "ping" }); });
    }
  });
  for (const name of ["connecting", "connected", "disconnected", "error"]) {
    c.on(name, (ctx) => out({ event: name, code: ctx.code, reason: ctx.reason,
      error: ctx.error ? { code: ctx.error.code, message: ctx.error.message } : undefined,
      client: ctx.client }));
  }
  c.on("subscribed", (ctx) => out({ event: "server_subscribed", channel: ctx.channel,
    recovered: ctx.recovered, wasRecovering: ctx.wasRecovering }));
  c.on("publication", (ctx) => out({ event: "server_publication", channel: ctx.channel,
    data: ctx.data, offset: ctx.offset }));
}

function watchSub(sub) {
  sub.on("subscribed", (ctx) => out({ event: "subscribed", channel: ctx.channel,
    recovered: ctx.recovered, wasRecovering: ctx.wasRecovering,
    recoverable: ctx.recoverable, offset: ctx.streamPosition && ctx.streamPosition.offset,
    epoch: ctx.streamPosition && ctx.streamPosition.epoch }));
  sub.on("subscribing", (ctx) => out({ event: "subscribing", channel: sub.channel,
    code: ctx.code, reason: ctx.reason }));
  sub.on("unsubscribed", (ctx) => out({ event: "unsubscribed", channel: sub.channel,
    code: ctx.code, reason: ctx.reason }));
  sub.on("publication", (ctx) => out({ event: "publication", channel: ctx.channel,
    data: ctx.data, offset: ctx.offset }));
  sub.on("error", (ctx) => out({ event: "sub_error", channel: ctx.channel,
    error: { code: ctx.error.code, message: ctx.error.message } }));
}

async function run(cmd) {
  switch (cmd.op) {
    case "connect": {
      const options = { websocket: WebSocket, minReconnectDelay: 50, maxReconnectDelay: 300 };
      if (cmd.token) options.token = cmd.token;
      if (cmd.tokenUrl) {
        options.getToken = async () => {
          const response = await fetch(cmd.tokenUrl);
          const body = await response.json();
          out({ event: "get_token" });
          return body.token;
        };
      }
      client = new Centrifuge(cmd.url, options);
      watchClient(client);
      client.connect();
      return null;
    }
    case "subscribe": {
      const sub = client.newSubscription(cmd.channel, { minResubscribeDelay: 50 });
      subs.set(cmd.channel, sub);
      watchSub(sub);
      sub.subscribe();
      return null;
    }
    case "unsubscribe": subs.get(cmd.channel).unsubscribe(); return null;
    case "disconnect": client.disconnect(); return null;
    case "reconnect": client.connect(); return null;
    case "publish": return await client.publish(cmd.channel, cmd.data);
    case "presence_stats": return await client.presenceStats(cmd.channel);
    case "history": return await client.history(cmd.channel, { limit: cmd.limit });
    case "pause": socket().pause(); return null;
    case "resume": socket().resume(); return null;
    case "quit": process.exit(0);
    default: throw new Error("unknown op " + cmd.op);
  }
}

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  const cmd = JSON.parse(line);
  try {
    out({ reply: cmd.id, ok: (await run(cmd)) ?? null });
  } catch (e) {
    out({ reply: cmd.id, error: { code: e.code, message: e.message || String(e) } });
  }
});
lines.on("close", () => process.exit(0));
out({ event: "ready", package: pkg });
