// A real Electric client syncing one lockstep shape, for the conformance tests.
//
//   node shape_client.mjs '{"url": ..., "token": ..., "params": {...}, "mode": "stream"}'
//
// mode "stream": @electric-sql/client's ShapeStream + Shape; mode "tanstack": TanStack DB's
// Electric collection. Prints one JSON line per event on stdout:
//   {"event":"rows","rows":{key: row}}   the materialized shape after each up-to-date batch
//   {"event":"must-refetch"}             the server rotated the shape (409)
//   {"event":"txid","txid":N,"ok":true}  after "await N" on stdin (TanStack's awaitTxId)
//   {"event":"error","message":...}
// Reads commands on stdin: "await <txid>", "quit".
import { ShapeStream, Shape, isControlMessage } from "@electric-sql/client";
import { createCollection } from "@tanstack/db";
import { electricCollectionOptions } from "@tanstack/electric-db-collection";
import readline from "node:readline";

const options = JSON.parse(process.argv[2]);
const print = (event) =>
  process.stdout.write(
    JSON.stringify(event, (_, v) => (typeof v === "bigint" ? v.toString() : v)) + "\n",
  );
const shapeOptions = {
  url: options.url,
  params: options.params,
  headers: { Authorization: `Bearer ${options.token}` },
  onError: (error) => {
    print({ event: "error", message: String(error && error.message), status: error.status });
    return undefined; // stop: a conformance failure must not be retried away
  },
};

let awaitTxId = async () => {
  throw new Error("awaitTxId needs mode tanstack");
};

if (options.mode === "tanstack") {
  const collection = createCollection(
    electricCollectionOptions({
      id: "conformance",
      shapeOptions,
      getKey: (row) => String(row.id),
    }),
  );
  awaitTxId = (txid) => collection.utils.awaitTxId(txid, 15000);
  const report = () => print({ event: "rows", rows: Object.fromEntries(collection.state) });
  collection.subscribeChanges(report);
  collection.onFirstReady(report);
  collection.preload();
} else {
  const stream = new ShapeStream(shapeOptions);
  stream.subscribe((messages) => {
    for (const message of messages) {
      if (isControlMessage(message) && message.headers.control === "must-refetch") {
        print({ event: "must-refetch" });
      }
    }
  });
  const shape = new Shape(stream);
  shape.subscribe(({ rows }) => {
    print({ event: "rows", rows: Object.fromEntries(rows.map((r) => [String(r.id), r])) });
  });
}

const input = readline.createInterface({ input: process.stdin });
input.on("line", async (line) => {
  const [command, argument] = line.trim().split(/\s+/);
  if (command === "quit") process.exit(0);
  if (command === "await") {
    try {
      const ok = await awaitTxId(Number(argument));
      print({ event: "txid", txid: Number(argument), ok });
    } catch (error) {
      print({ event: "txid", txid: Number(argument), ok: false, message: String(error) });
    }
  }
});
