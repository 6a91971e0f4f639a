// A real Electric client syncing one lockstep shape in Node, for the conformance tests.
//
//   node shape_client.mjs '{"url": ..., "token": ..., "params": {...}, "mode": "stream"}'
//
// Prints one JSON line per event of shape_sync.mjs on stdout, and after "await N" on stdin
//   {"event":"txid","txid":N,"ok":true}  (TanStack's awaitTxId)
// Reads commands on stdin: "await <txid>", "quit".
import readline from "node:readline";
import { plain, sync } from "./shape_sync.mjs";

const print = (event) => process.stdout.write(JSON.stringify(plain(event)) + "\n");
const client = sync(JSON.parse(process.argv[2]), print);

const input = readline.createInterface({ input: process.stdin });
input.on("line", async (line) => {
  const [command, argument] = line.trim().split(/\s+/);
  if (command === "quit") process.exit(0);
  if (command === "await") {
    try {
      const ok = await client.awaitTxId(Number(argument));
      print({ event: "txid", txid: Number(argument), ok });
    } catch (error) {
      print({ event: "txid", txid: Number(argument), ok: false, message: String(error) });
    }
  }
});
