// Following one racer: the link (#racer=ID), and in a large race their live
// shard, their trail from the packs, and finding them by name or bib.
import { chunkPoints } from "./chunks.js";
import { getJSON, getPiece } from "./net.js";
import { fnv1a, redraw, S } from "./state.js";

const big = S.big;

export function follow(id) {
  S.following = S.following === id ? null : id;
  history.replaceState(
    null,
    "",
    S.following ? `#racer=${encodeURIComponent(S.following)}` : location.pathname,
  );
  big.record = null;
  big.missing = false;
  big.live = [];
  if (S.snapshot?.field) pollFollowed();
  redraw();
}

export function linkedRacer() {
  const m = /#racer=([^&]+)/.exec(location.hash);
  try {
    return m ? decodeURIComponent(m[1]) : null;
  } catch (_e) {
    return null; // a mangled link
  }
}

// The rows and markers shown: every racer of a small race; for a large one
// the head, with the followed racer's live record in place of (or below) theirs.
export function shown(snap) {
  if (!snap.field || !S.following) return snap.racers;
  const mine = big.record && big.record.id === S.following ? big.record : null;
  if (!mine) return snap.racers;
  const inHead = snap.racers.some((x) => x.id === mine.id);
  return inHead ? snap.racers : snap.racers.concat([mine]);
}

// -- a large race: the followed racer's record, from their shard's columns --
function recordOf(roster, doc, j) {
  const statuses = ["finished", "racing", "stale", "waiting"];
  const r = {
    id: roster.ids[j],
    name: roster.names[j],
    kind: roster.kinds[j],
    color: roster.colors[j],
    rank: doc.rank[j],
    status: statuses[doc.status[j]],
    distance_m: doc.distance_m[j] || 0,
    pace_s_per_km: doc.pace_s_per_km[j],
    gap_s: doc.gap_s[j],
    eta_s: doc.eta_s[j],
    finish_s: doc.finish_s[j],
    position: null,
    tail: [],
    track: [],
  };
  if (doc.lat_e6[j] !== null) {
    const at = Date.parse(doc.generated_at) - doc.age_ms[j];
    r.position = {
      lat: doc.lat0 + doc.lat_e6[j] / 1e6,
      lon: doc.lon0 + doc.lon_e6[j] / 1e6,
      at: new Date(at).toISOString(),
    };
  }
  return r;
}

// Every poll: the followed racer's live shard (a few KB, fresh each cycle);
// its roster once; its trail group when due (rewritten every trail_every_s).
export function pollFollowed() {
  const snap = S.snapshot;
  const field = snap?.field;
  if (!field || !S.following) return;
  const id = S.following;
  const n = fnv1a(id) % field.shards;
  const roster = big.rosters[n];
  if (!roster) {
    getJSON(field.roster_url.replace("{shard}", String(n)))
      .then((doc) => {
        big.rosters[n] = doc;
        pollFollowed();
      })
      .catch(() => {
        /* asked again next poll */
      });
    return;
  }
  const j = roster.ids.indexOf(id);
  big.missing = j < 0;
  if (j < 0) {
    redraw();
    return;
  }
  getJSON(field.shard_url.replace("{shard}", String(n)), { cache: "no-cache" })
    .then((doc) => {
      if (S.following !== id) return;
      const rec = recordOf(roster, doc, j);
      if (big.record && big.record.seq > doc.seq) return; // never step back to an older copy
      rec.seq = doc.seq;
      big.record = rec;
      if (rec.position) {
        const s = (Date.parse(rec.position.at) - Date.parse(S.snapshot.race.starts_at)) / 1000;
        const last = big.live[big.live.length - 1];
        if (!last || s > last[2]) big.live.push([rec.position.lat, rec.position.lon, s]);
      }
      redraw();
    })
    .catch(() => {
      /* asked again next poll */
    });
  loadTrails([id]);
}

// Racers' trails (the followed one; in a replay, all shown): their trail
// groups, fetched again once trail_every_s / 3 old (the recent trail is
// rewritten every trail_every_s); then each piece of the packs they list,
// once (immutable).
export function loadTrails(ids) {
  const field = S.snapshot?.field;
  if (!field) return;
  const byUrl = {};
  for (const id of ids) {
    const have = big.trails[id];
    if (have && Date.now() - have.at < (1000 * field.trail_every_s) / 3) continue;
    const url = field.trail_url.replace("{trail}", String(fnv1a(id) % field.trails));
    byUrl[url] = byUrl[url] || [];
    byUrl[url].push(id);
  }
  for (const url of Object.keys(byUrl)) {
    getJSON(url, { cache: "no-cache" })
      .then((doc) => {
        for (const id of byUrl[url]) {
          const k = doc.ids.indexOf(id);
          if (k < 0) continue;
          const refs = doc.chunks[k].slice();
          if (doc.recent[k]) refs.push(doc.recent[k]);
          big.trails[id] = {
            at: Date.now(),
            refs: refs.map((ref) => [doc.packs[ref[0]], ref[1], ref[2]]),
          };
          big.trails[id].refs.forEach(loadPiece);
        }
        redraw();
      })
      .catch(() => {
        /* asked again next time */
      });
  }
}

function loadPiece(ref) {
  const key = `${ref[0]}@${ref[1]}`;
  if (big.pieces[key]) return;
  big.pieces[key] = "asked";
  getPiece(ref[0], ref[1], ref[2])
    .then((piece) => {
      big.pieces[key] = piece.points;
      redraw();
    })
    .catch(() => {
      delete big.pieces[key];
    });
}

// A racer's track as the page has it, in time order: [lat, lon, ms]. A small
// race: their chunks and tail; a large one: their pack pieces, and for the
// followed racer the positions seen since.
export function trackPoints(r) {
  const out = [];
  const start = Date.parse(S.snapshot.race.starts_at);
  let last = -Infinity;
  function add(lat, lon, ms) {
    if (ms > last) {
      out.push([lat, lon, ms]);
      last = ms;
    }
  }
  if (S.snapshot.field) {
    for (const ref of big.trails[r.id] ? big.trails[r.id].refs : []) {
      const got = big.pieces[`${ref[0]}@${ref[1]}`];
      if (Array.isArray(got)) for (const p of got) add(p[0], p[1], start + 1000 * p[2]);
    }
    if (r.id === S.following) for (const p of big.live) add(p[0], p[1], start + 1000 * p[2]);
  } else {
    for (const key of r.track || []) {
      for (const p of chunkPoints(key)) add(p[0], p[1], Date.parse(p[2]));
    }
    for (const p of r.tail || []) add(p[0], p[1], Date.parse(p[2]));
  }
  return out;
}

// -- a large race: finding a racer by name or bib -----------------------------
// As the publisher folds (large.py fold/tokens/name_key): accents off,
// lower case, words of letters and digits.
function fold(text) {
  return text
    .normalize("NFKD")
    .replace(/\p{Mn}/gu, "")
    .toLowerCase();
}
function words(text) {
  return fold(text)
    .split(/[^\p{L}\p{N}]+/u)
    .filter(Boolean);
}
function nameKey(prefix) {
  if (/^[a-z0-9]+$/.test(prefix)) return prefix;
  let hex = "";
  for (const b of new TextEncoder().encode(prefix)) hex += b.toString(16).padStart(2, "0");
  return `~${hex}`;
}
function findRacers(query) {
  const field = S.snapshot?.field;
  const want = words(query);
  if (!field || !want.length) return Promise.resolve([]);
  const first = Array.from(want[0]);
  function lookup(prefix) {
    return getJSON(field.names_url.replace("{key}", nameKey(prefix))).catch(() => ({
      racers: [],
    }));
  }
  return lookup(first.slice(0, 2).join(""))
    .then((doc) =>
      // A crowded prefix lists only exact two-letter words; the rest are one letter on.
      doc.split && first.length > 2 ? lookup(first.slice(0, 3).join("")) : doc,
    )
    .then((doc) =>
      doc.racers.filter((r) => {
        const have = words(`${r[1]} ${r[0]}`);
        return want.every((w) => have.some((h) => h.indexOf(w) === 0));
      }),
    );
}
function showMatches(query, found) {
  const list = document.getElementById("find-results");
  const msg = document.getElementById("find-msg");
  list.replaceChildren();
  if (!found.length) {
    if (S.following && big.missing) follow(S.following); // stop looking for one who is not there
    msg.textContent = `No racer matches ${query}.`;
    return;
  }
  const exact = found.filter((r) => r[0] === query);
  if (exact.length || found.length === 1) {
    msg.textContent = "";
    follow((exact[0] || found[0])[0]);
    return;
  }
  msg.textContent = `${found.length} racers match:`;
  for (const r of found.slice(0, 20)) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = `${r[1]} (${r[0]})`;
    b.addEventListener("click", () => {
      list.replaceChildren();
      msg.textContent = "";
      follow(r[0]);
    });
    li.appendChild(b);
    list.appendChild(li);
  }
}

export function initFollowing() {
  S.following = linkedRacer();
  window.addEventListener("hashchange", () => {
    // a link opened in this tab
    const id = linkedRacer();
    if (id !== S.following) {
      S.following = null;
      follow(id);
    }
  });
  document.getElementById("unfollow").addEventListener("click", () => follow(S.following));
  document.getElementById("find").addEventListener("submit", (e) => {
    e.preventDefault();
    const query = document.getElementById("find-id").value.trim();
    if (!query) return;
    findRacers(query).then((found) => showMatches(query, found));
  });
}
