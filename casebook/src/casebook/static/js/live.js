// The realtime connection (centrifuge-js, vendored): one per tab, opened after login.
// The access token goes in the connect command (never the URL); when it expires the SDK
// asks for a new one (error 109), which the refresh token buys.
import { renew, session } from "./api.js";

let client = null;

export function connect(onNotice) {
  if (client || !window.Centrifuge) return;
  const indicator = document.getElementById("live");
  client = new window.Centrifuge(`${location.origin.replace(/^http/, "ws")}/connection/websocket`, {
    token: session.token,
    getToken: () => renew().catch(() => { throw new window.Centrifuge.UnauthorizedError("log in again"); }),
  });
  client.on("connected", () => { indicator.textContent = "● live"; });
  client.on("connecting", () => { indicator.textContent = "○ reconnecting"; });
  client.on("disconnected", () => { indicator.textContent = ""; });
  // user:{id} is subscribed by the server: a case assigned to me changed.
  client.on("publication", (ctx) => {
    if (ctx.channel.startsWith("user:") && ctx.data.key) onNotice(ctx.data.key[0]);
  });
  client.connect();
}

/** Follow a channel until the returned function is called; onGap runs when the server
 * could not recover what was missed during a disconnect (reload what is shown),
 * onSubscribed each time the subscription is (again) in place. */
export function follow(channel, onPublication, onGap, onSubscribed) {
  if (!client) return () => {};
  const existing = client.getSubscription(channel);
  if (existing) { existing.unsubscribe(); client.removeSubscription(existing); }
  const sub = client.newSubscription(channel);
  sub.on("publication", (ctx) => onPublication(ctx.data));
  sub.on("subscribed", (ctx) => {
    if (ctx.wasRecovering && !ctx.recovered && onGap) onGap();
    if (onSubscribed) onSubscribed();
  });
  sub.subscribe();
  return () => { sub.unsubscribe(); client.removeSubscription(sub); };
}

/** A burst of calls (an import's commits) runs fn once, shortly after the last. */
export function debounce(fn, ms = 200) {
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(fn, ms); };
}
