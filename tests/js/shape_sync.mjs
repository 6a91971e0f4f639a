// One real Electric client syncing one lockstep shape: the code the conformance tests run,
// in Node (shape_client.mjs) and in Chromium (shape_client_browser.mjs, through an import
// map). `print(event)` receives:
//   {"event":"rows","rows":{key: row}}   the materialized shape after each up-to-date batch
//   {"event":"must-refetch"}             the server rotated the shape (409)
//   {"event":"error","message":...}
// mode "stream": @electric-sql/client's ShapeStream + Shape; mode "tanstack": TanStack DB's
// Electric collection (electricCollectionOptions). Returns { awaitTxId(txid) }.
import { ShapeStream, Shape, isControlMessage } from "@electric-sql/client";
import { createCollection } from "@tanstack/db";
import { electricCollectionOptions } from "@tanstack/electric-db-collection";

export function sync(options, print) {
  const shapeOptions = {
    url: options.url,
    params: options.params,
    headers: { Authorization: `Bearer ${options.token}` },
    onError: (error) => {
      print({ event: "error", message: String(error && error.message), status: error.status });
      return undefined; // stop: a conformance failure must not be retried away
    },
  };
  if (options.mode === "tanstack") {
    const collection = createCollection(
      electricCollectionOptions({
        id: `conformance-${options.params.table}`,
        shapeOptions,
        getKey: (row) => String(row.id),
      }),
    );
    const report = () => print({ event: "rows", rows: Object.fromEntries(collection.state) });
    collection.subscribeChanges(report);
    collection.onFirstReady(report);
    collection.preload();
    return { awaitTxId: (txid) => collection.utils.awaitTxId(txid, 15000) };
  }
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
  return {
    awaitTxId: async () => {
      throw new Error("awaitTxId needs mode tanstack");
    },
  };
}

export const plain = (event) =>
  JSON.parse(JSON.stringify(event, (_, v) => (typeof v === "bigint" ? v.toString() : v)));
