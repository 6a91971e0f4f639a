// shape_sync.mjs in a page (Chromium): the test exposes `report(event)` before the page
// loads; `window.conformance.start(options)` starts the client, `window.conformance.await(N)`
// reports {"event":"txid",...} like the Node client's "await N".
import { plain, sync } from "./shape_sync.mjs";

let client = null;
const print = (event) => window.report(plain(event));
window.addEventListener("error", (e) => print({ event: "error", message: String(e.message) }));
window.addEventListener("unhandledrejection", (e) =>
  print({ event: "error", message: `unhandled: ${e.reason && e.reason.message}` }),
);
window.conformance = {
  start(options) {
    client = sync(options, print);
    return true;
  },
  async await(txid) {
    try {
      const ok = await client.awaitTxId(txid);
      print({ event: "txid", txid, ok });
    } catch (error) {
      print({ event: "txid", txid, ok: false, message: String(error) });
    }
    return true;
  },
};
print({ event: "loaded" });
