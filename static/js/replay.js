// Replay: every racer shown (a large race: the head and the followed) as the
// published chunks put them at a chosen moment, the board as it was then.
import { shown, trailOf, wantTrails } from "./shape.js";
import { cfg, now, redraw, S } from "./state.js";

// The course in metres, for progress along it.
const course = (() => {
  const c = cfg.course;
  const lat0 = c.length ? c[0][0] : 0;
  const lon0 = c.length ? c[0][1] : 0;
  const ky = 111195;
  const kx = ky * Math.cos((lat0 * Math.PI) / 180);
  const xy = [];
  const cum = [0];
  c.forEach((p, i) => {
    xy.push([(p[1] - lon0) * kx, (p[0] - lat0) * ky]);
    if (i) cum.push(cum[i - 1] + Math.hypot(xy[i][0] - xy[i - 1][0], xy[i][1] - xy[i - 1][1]));
  });
  return { xy, cum, kx, ky, lat0, lon0 };
})();

// Progress along the course of a point, searched near the racer's last (hint).
function progressOf(lat, lon, hint) {
  const x = (lon - course.lon0) * course.kx;
  const y = (lat - course.lat0) * course.ky;
  let best = Infinity;
  let at = 0;
  const from = hint === null ? 0 : hint;
  for (let k = Math.max(0, from - 2); k < course.xy.length - 1; k++) {
    if (hint !== null && course.cum[k] > course.cum[from] + 2000) break; // far ahead
    const a = course.xy[k];
    const b = course.xy[k + 1];
    const dx = b[0] - a[0];
    const dy = b[1] - a[1];
    const len2 = dx * dx + dy * dy;
    let f = len2 ? ((x - a[0]) * dx + (y - a[1]) * dy) / len2 : 0;
    f = Math.max(0, Math.min(1, f));
    const off = Math.hypot(a[0] + f * dx - x, a[1] + f * dy - y);
    if (off < best) {
      best = off;
      at = k + f;
    }
  }
  const i = Math.floor(at);
  return {
    seg: i,
    d: course.cum[i] + (at - i) * ((course.cum[i + 1] || course.cum[i]) - course.cum[i]),
  };
}

const tracks = {}; // racer id -> {n, t[], lat[], lon[], d[]}, rebuilt when their points change
function replayTrack(r) {
  const pts = trailOf(r);
  const have = tracks[r.id];
  if (have && have.n === pts.length) return have;
  const tr = { n: pts.length, t: [], lat: [], lon: [], d: [] };
  let hint = null;
  let best = 0;
  for (const p of pts) {
    const got = progressOf(p[0], p[1], hint);
    hint = got.seg;
    best = Math.max(best, got.d); // progress never goes back
    tr.t.push(p[2]);
    tr.lat.push(p[0]);
    tr.lon.push(p[1]);
    tr.d.push(best);
  }
  tracks[r.id] = tr;
  return tr;
}
function lastBefore(arr, v) {
  // the last index with arr[i] <= v, or -1
  let lo = 0;
  let hi = arr.length - 1;
  let ans = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (arr[mid] <= v) {
      ans = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return ans;
}

export function replayTrail(id) {
  const tr = tracks[id];
  const pts = [];
  if (!tr) return pts;
  const k = lastBefore(tr.t, S.replay.t);
  for (let i = 0; i <= k; i++) pts.push([tr.lat[i], tr.lon[i]]);
  return pts;
}

// The records as they were at replay.t: position and progress interpolated
// between the fixes either side, ranked as the publisher ranks.
export function replayRacers(snap) {
  const T = S.replay.t;
  const start = Date.parse(snap.race.starts_at);
  const out = shown(snap).map((r) => {
    const tr = replayTrack(r);
    const k = lastBefore(tr.t, T);
    const rec = {
      id: r.id,
      name: r.name,
      kind: r.kind,
      color: r.color,
      status: "waiting",
      position: null,
      distance_m: 0,
      pace_s_per_km: null,
      gap_s: null,
      eta_s: null,
      finish_s: null,
      tail: [],
      track: [],
      _tr: tr,
      // only the splits reached by then
      splits: (r.splits || []).map((sp) =>
        sp.at_s !== null && start + 1000 * sp.at_s <= T ? sp : { ...sp, at_s: null },
      ),
    };
    if (k < 0) return rec;
    const f = k + 1 < tr.n && tr.t[k + 1] > tr.t[k] ? (T - tr.t[k]) / (tr.t[k + 1] - tr.t[k]) : 0;
    const j = Math.min(k + 1, tr.n - 1);
    rec.position = {
      lat: tr.lat[k] + (tr.lat[j] - tr.lat[k]) * f,
      lon: tr.lon[k] + (tr.lon[j] - tr.lon[k]) * f,
      at: new Date(tr.t[k]).toISOString(),
    };
    rec.distance_m = tr.d[k] + (tr.d[j] - tr.d[k]) * f;
    rec.status = "racing";
    if (r.finish_s !== null && start + 1000 * r.finish_s <= T) {
      rec.status = "finished";
      rec.finish_s = r.finish_s;
    }
    const back = lastBefore(tr.t, T - 1000 * cfg.pace_window_s);
    if (back >= 0 && tr.d[k] > tr.d[back]) {
      rec.pace_s_per_km = (1000 * (tr.t[k] - tr.t[back])) / 1000 / (tr.d[k] - tr.d[back]);
    }
    return rec;
  });
  const order = { finished: 0, racing: 1, waiting: 2 };
  out.sort(
    (a, b) =>
      order[a.status] - order[b.status] ||
      (a.status === "finished" ? a.finish_s - b.finish_s : b.distance_m - a.distance_m),
  );
  const leader = out[0];
  out.forEach((r, i) => {
    r.rank = i + 1;
    if (r.status === "finished") r.gap_s = r.finish_s - leader.finish_s;
    else if (r.status === "racing" && leader && leader.status !== "waiting") {
      const lt = leader._tr;
      const m = lastBefore(lt.d, r.distance_m); // when the leader was here
      if (m >= 0) r.gap_s = Math.max(0, (T - lt.t[m]) / 1000);
    }
  });
  return out;
}

// -- the time control ----------------------------------------------------------
const box = document.getElementById("replay");
const scrub = document.getElementById("replay-at");

function replayEnd(snap) {
  // the last moment there is to replay: now, or the race's end
  return Math.min(now(), Date.parse(snap.generated_at));
}
function setReplay(t) {
  const snap = S.snapshot;
  if (!snap) return;
  const start = Date.parse(snap.race.starts_at);
  const end = replayEnd(snap);
  if (t >= end) {
    stopReplay();
    return;
  }
  S.replay = S.replay || { playing: false, speed: 1 };
  S.replay.t = Math.max(start, t);
  // A large race: the trails of those shown, read from the packs once each.
  wantTrails(shown(snap).map((r) => r.id));
  scrub.max = String(Math.round((end - start) / 1000));
  scrub.value = String(Math.round((S.replay.t - start) / 1000));
  document.getElementById("replay-live").disabled = false;
  redraw();
}
function stopReplay() {
  S.replay = null;
  document.getElementById("replay-play").textContent = "Play";
  document.getElementById("replay-live").disabled = true;
  if (S.snapshot) {
    const start = Date.parse(S.snapshot.race.starts_at);
    scrub.max = scrub.value = String(Math.round((replayEnd(S.snapshot) - start) / 1000));
    redraw();
  }
}

// Each redraw: shown unless the race has not started; live, the scrubber at now.
export function renderReplayControl(snap) {
  box.hidden = snap.race.state === "pre";
  if (!S.replay) {
    const start = Date.parse(snap.race.starts_at);
    scrub.max = scrub.value = String(Math.max(0, Math.round((replayEnd(snap) - start) / 1000)));
  }
}

export function initReplay() {
  scrub.addEventListener("input", () => {
    if (S.snapshot) setReplay(Date.parse(S.snapshot.race.starts_at) + 1000 * Number(scrub.value));
  });
  document.getElementById("replay-play").addEventListener("click", function () {
    if (!S.snapshot) return;
    if (!S.replay) setReplay(Date.parse(S.snapshot.race.starts_at));
    if (!S.replay) return;
    S.replay.playing = !S.replay.playing;
    this.textContent = S.replay.playing ? "Pause" : "Play";
  });
  document.getElementById("replay-speed").addEventListener("change", function () {
    if (S.replay) S.replay.speed = Number(this.value);
  });
  document.getElementById("replay-live").addEventListener("click", stopReplay);
  setInterval(() => {
    // playing: 4 steps a second
    if (S.replay?.playing) {
      S.replay.speed = Number(document.getElementById("replay-speed").value);
      setReplay(S.replay.t + 250 * S.replay.speed);
    }
  }, 250);
}
