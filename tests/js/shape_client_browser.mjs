// shape_sync.mjs in a page (Chromium): the test exposes `report(event)` before the page
// loads; `window.conformance.start(options)` starts the client, `window.conformance.await(N)`
// reports {"event":"txid",...} like the Node client's "await N". `window.conformance.scope(
// {module, token, name})` syncs a sync scope through the app's lockstep.js (syncScope):
// {"event":"progress",...} per step, {"event":"scope-rows","name",ids} after each up-to-date,
// then {"event":"scope-done"}.
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
window.conformance.scope = async ({ module, token, name }) => {
  const { Lockstep } = await import(module);
  const ls = await Lockstep.start({ scope: "conformance", token: () => token, worker: false });
  try {
    await ls.syncScope(name, {
      onProgress: (step) => print({ event: "progress", ...step }),
      onRows: (shape, rows) =>
        print({ event: "scope-rows", name: shape, ids: rows.map((r) => String(r.id)) }),
    });
    print({ event: "scope-done" });
  } catch (error) {
    print({ event: "error", message: String(error && error.message) });
  }
  return true;
};
print({ event: "loaded" });
