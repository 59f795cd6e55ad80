// A large race (its snapshot's `field` block, DESIGN.md "Large races"): the
// followed racer's live record from their shard's columns, their trail from
// the pieces their trail group lists, and finding a racer by name or bib.
import { getJSON } from "./net.js";
import { fnv1a, redraw, S } from "./state.js";
import { loadPieces, trailPoints } from "./trails.js";

const F = S.field;

// The rows and markers shown: the head, with the followed racer's live
// record in place of (or below) theirs.
export function shown(snap) {
  const mine = F.record && F.record.id === S.following ? F.record : null;
  if (!S.following || !mine) return snap.racers;
  const inHead = snap.racers.some((x) => x.id === mine.id);
  return inHead ? snap.racers : snap.racers.concat([mine]);
}

// A racer's record from their shard's columns (entry j of the roster, whose
// columns say who each racer is: every field of a record's identity).
function recordOf(roster, doc, j) {
  const statuses = ["finished", "racing", "stale", "waiting"];
  const r = {
    rank: doc.rank[j],
    status: statuses[doc.status[j]],
    distance_m: doc.distance_m[j] || 0,
    pace_s_per_km: doc.pace_s_per_km[j],
    gap_s: doc.gap_s[j],
    eta_s: doc.eta_s[j],
    finish_s: doc.finish_s[j],
    estimated: doc.estimated ? doc.estimated[j] === 1 : false, // placed by timing mats
    position: null,
    tail: [],
    track: [],
  };
  for (const key of Object.keys(roster.identity)) r[key] = roster.identity[key][j];
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

// Following someone anew: forget the last one's live record.
export function followed() {
  F.record = null;
  F.missing = false;
  F.live = [];
  pollFollowed();
}

// Every poll: the followed racer's live shard (a few KB, fresh each cycle);
// its roster once; its trail group when due (rewritten every trail_every_s).
export function pollFollowed() {
  const field = S.snapshot?.field;
  if (!field || !S.following) return;
  const id = S.following;
  const n = fnv1a(id) % field.shards;
  const roster = F.rosters[n];
  if (!roster) {
    getJSON(field.roster_url.replace("{shard}", String(n)))
      .then((doc) => {
        F.rosters[n] = doc;
        pollFollowed();
      })
      .catch(() => {
        /* asked again next poll */
      });
    return;
  }
  const j = roster.identity.id.indexOf(id);
  F.missing = j < 0;
  if (j < 0) {
    redraw();
    return;
  }
  getJSON(field.shard_url.replace("{shard}", String(n)), { cache: "no-cache" })
    .then((doc) => {
      if (S.following !== id) return;
      const rec = recordOf(roster, doc, j);
      if (F.record && F.record.seq > doc.seq) return; // never step back to an older copy
      rec.seq = doc.seq;
      F.record = rec;
      if (rec.position) {
        const ms = Date.parse(rec.position.at);
        const last = F.live[F.live.length - 1];
        if (!last || ms > last[2]) F.live.push([rec.position.lat, rec.position.lon, ms]);
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
// rewritten every trail_every_s); then the pieces they list, each once.
export function loadTrails(ids) {
  const field = S.snapshot?.field;
  if (!field) return;
  const byUrl = {};
  for (const id of ids) {
    const have = F.trails[id];
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
          F.trails[id] = {
            at: Date.now(),
            refs: refs.map((ref) => [doc.packs[ref[0]], ref[1], ref[2]]),
            splits: doc.splits ? doc.splits[k] : null,
          };
          loadPieces(F.trails[id].refs);
        }
        redraw();
      })
      .catch(() => {
        /* asked again next time */
      });
  }
}

// A racer's trail as the page has it: their pieces, and for the followed
// racer the positions seen since.
export function trailOf(r) {
  const refs = F.trails[r.id] ? F.trails[r.id].refs : [];
  return trailPoints(refs, r.id === S.following ? F.live : []);
}

// -- finding a racer by name or bib -------------------------------------------
// As the publisher folds (shapes/field.py fold/tokens/name_key): accents
// off, lower case, words of letters and digits.
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
// The racers (their identity: id, name...) with a word of each field the
// index says is searched (name, id, bib) starting with every word asked.
export function findRacers(query) {
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
      (doc.racers || [])
        .map((values) => Object.fromEntries(doc.fields.map((f, k) => [f, values[k]])))
        .filter((r) => {
          const have = words(doc.searched.map((f) => r[f] || "").join(" "));
          return want.every((w) => have.some((h) => h.indexOf(w) === 0));
        }),
    );
}
