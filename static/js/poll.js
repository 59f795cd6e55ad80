// Polling snapshot.json: plain GETs the CDN can cache, timed to just after
// each publish; the server's clock from Date + Age; back-off with jitter.
import { renderFreshness } from "./board.js";
import { fetchJSON } from "./net.js";
import { polled } from "./shape.js";
import { cfg, now, redraw, S } from "./state.js";

const intervalMs = Math.max(1, cfg.interval_s) * 1000;
let failures = 0;
let stalls = 0;
let timer = null;
// How long after generated_at the publisher's snapshot is in place: the
// least seen between generated_at and the origin's Date.
let lagMs = null;

function schedule(ms) {
  clearTimeout(timer);
  timer = setTimeout(poll, ms);
}
function header(res, name) {
  return res.headers.get(name) || "";
}

// Server clock minus ours: a phone's clock may be off. From Date + Age (a
// CDN serving a cached or stale-if-error copy sends the origin's Date and
// how long it has kept it). Both are whole seconds, so while estimates
// agree the largest is the closest; one that jumps is believed at once.
function learnClock(res) {
  const date = Date.parse(header(res, "Date"));
  if (Number.isNaN(date)) return;
  const sample = date + (parseFloat(header(res, "Age")) || 0) * 1000 - Date.now();
  S.skewMs =
    S.skewMs !== null && Math.abs(sample - S.skewMs) < 1500 ? Math.max(sample, S.skewMs) : sample;
}

// When the next snapshot can first be had: just after the publisher has
// written it (generated_at + interval + its usual lag). Polling then, not
// on a timer of our own, shows each publish about a lag old, with one
// request per interval; every spectator asking then also keeps the CDN's
// copies in phase with publishing (its copy expires just before the next).
function nextPollMs(res, snap) {
  const date = Date.parse(header(res, "Date"));
  const generated = Date.parse(snap.generated_at);
  if (Number.isNaN(generated)) return intervalMs;
  if (!Number.isNaN(date) && !parseFloat(header(res, "Age"))) {
    // fresh from the origin
    const seen = Math.max(0, date - generated);
    lagMs = lagMs === null ? seen : Math.min(lagMs, seen);
  }
  // The publisher says how long its last snapshot took to be in place;
  // else the least Date - generated_at seen (whole seconds: a rough guess).
  const lag = typeof snap.publish_lag_s === "number" ? 1000 * snap.publish_lag_s : lagMs || 0;
  const due =
    generated + intervalMs + Math.min(lag, intervalMs) + 250 + (Math.random() * intervalMs) / 10;
  return Math.min(Math.max(due - now(), 250), 2 * intervalMs);
}

// No news in a poll: the CDN's copy is still within its max-age (it may
// be kept that much longer), or the publisher is late (ask again soon).
function retryMs(res) {
  const age = parseFloat(header(res, "Age"));
  const ttl =
    /s-maxage=(\d+)/.exec(header(res, "Cache-Control")) ||
    /max-age=(\d+)/.exec(header(res, "Cache-Control"));
  if (age > 0 && ttl && age < parseInt(ttl[1], 10)) {
    return (parseInt(ttl[1], 10) - age) * 1000 + 100;
  }
  return Math.min(intervalMs, (intervalMs / 4) * 2 ** (stalls - 1));
}

export function poll() {
  if (document.hidden) return; // resumed by visibilitychange
  // no-cache: the browser asks (conditionally) every time rather than
  // reuse its own copy; the CDN still answers from its cache.
  fetchJSON("snapshot.json", { cache: "no-cache" })
    .then(({ json: snap, res }) => {
      learnClock(res);
      failures = 0;
      const news = !S.snapshot || snap.seq > S.snapshot.seq;
      if (!S.snapshot || snap.seq >= S.snapshot.seq) S.snapshot = snap; // never step back
      redraw();
      polled(S.snapshot);
      stalls = news ? 0 : stalls + 1;
      schedule(news ? nextPollMs(res, snap) : retryMs(res));
    })
    .catch(() => {
      failures += 1;
      if (S.snapshot) renderFreshness(S.snapshot);
      // Exponential backoff with full jitter: a CDN hiccup must not synchronise everyone.
      const ceiling = Math.min(60000, intervalMs * 2 ** failures);
      schedule(intervalMs + Math.random() * ceiling);
    });
}

export function initPolling() {
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) clearTimeout(timer);
    else schedule(0);
  });
  poll();
}
