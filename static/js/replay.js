// Replay: every racer shown (a large race: the head and the followed) as the
// published trails put them at a chosen moment, the board as it was then; a
// scrubber that reads as a race clock, and a plain "caught up with live".
import { progressOf } from "./course.js";
import { shown, trailOf, wantTrails } from "./shape.js";
import { cfg, now, redraw, S } from "./state.js";
import { fmtClock, fmtSpoken } from "./units.js";

const tracks = {}; // racer id -> {n, t[], lat[], lon[], d[]}, rebuilt when their points change
function replayTrack(r) {
  const pts = trailOf(r);
  const have = tracks[r.id];
  if (have && have.n === pts.length) return have;
  const tr = { n: pts.length, t: [], lat: [], lon: [], d: [] };
  let hint = null;
  let best = 0;
  let laps = 0; // a race of laps: the drawn course is a lap, progress goes on
  const lap = cfg.laps > 1 ? cfg.lap_m : null;
  for (const p of pts) {
    let got = progressOf(p[0], p[1], hint);
    // Not near where they were (round a lap, back from a silence): anywhere.
    if (hint !== null && got.off > 50) got = progressOf(p[0], p[1], null);
    if (lap && got.d + laps * lap < best - lap / 2) laps += 1; // round the lap
    hint = got.seg;
    best = Math.max(best, got.d + (lap ? laps * lap : 0)); // progress never goes back
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

// The trail up to the replayed moment, as [lat, lon, ms].
export function replayTrail(id) {
  const tr = tracks[id];
  const pts = [];
  if (!tr) return pts;
  const k = lastBefore(tr.t, S.replay.t);
  for (let i = 0; i <= k; i++) pts.push([tr.lat[i], tr.lon[i], tr.t[i]]);
  return pts;
}

// A runner against each vehicle at the replayed moment: by metres (the
// seconds are the publisher's, of now).
function versus(r, vehicles) {
  return vehicles.map((v) => {
    const out = { id: v.id, name: v.name, ahead: null, metres: null, seconds: null };
    if (!r.position || !v.position) return out;
    out.ahead =
      r.status === "finished" && v.status === "finished"
        ? r.finish_s < v.finish_s
        : r.status === "finished" || (v.status !== "finished" && r.distance_m > v.distance_m);
    out.metres = Math.abs(r.distance_m - v.distance_m);
    return out;
  });
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
      bib: r.bib,
      category: r.category,
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
  const vehicles = out.filter((r) => r.kind === "vehicle");
  out.forEach((r, i) => {
    r.rank = i + 1;
    if (r.status === "finished") r.gap_s = r.finish_s - leader.finish_s;
    else if (r.status === "racing" && leader && leader.status !== "waiting") {
      const lt = leader._tr;
      const m = lastBefore(lt.d, r.distance_m); // when the leader was here
      if (m >= 0) r.gap_s = Math.max(0, (T - lt.t[m]) / 1000);
    }
    if (r.kind === "runner" && vehicles.length) r.vs_vehicles = versus(r, vehicles);
  });
  return out;
}

// -- the time control ----------------------------------------------------------
const box = document.getElementById("replay");
const scrub = document.getElementById("replay-at");
const said = document.getElementById("replay-msg");
let saidTimer = null;

function say(text) {
  said.textContent = text;
  clearTimeout(saidTimer);
  if (text) saidTimer = setTimeout(() => say(""), 6000);
}

function replayEnd(snap) {
  // the last moment there is to replay: now, or the race's end
  return Math.min(now(), Date.parse(snap.generated_at));
}

// The scrubber at a race time: its value, what a screen reader says, the
// time over its handle and at its ends.
function placeScrub(snap, t) {
  const start = Date.parse(snap.race.starts_at);
  const end = Math.max(0, Math.round((replayEnd(snap) - start) / 1000));
  const at = Math.min(end, Math.max(0, Math.round((t - start) / 1000)));
  scrub.max = String(end);
  scrub.value = String(at);
  scrub.setAttribute(
    "aria-valuetext",
    S.replay ? `race time ${fmtSpoken(at)}` : `live, race time ${fmtSpoken(at)}`,
  );
  document.getElementById("replay-end").textContent = fmtClock(end);
  const handle = document.getElementById("replay-time");
  const paused = handle.classList.contains("paused"); // (board.js renderFreshness)
  handle.textContent = S.replay ? fmtClock(at) : paused ? "Paused" : "Live";
  // Over the handle, sliding from left-aligned at the start to right-aligned at the end.
  const f = end ? at / end : 1;
  handle.style.left = `calc(8px + (100% - 16px) * ${f.toFixed(4)})`;
  handle.style.transform = `translateX(-${(100 * f).toFixed(1)}%)`;
  box.classList.toggle("replaying", !!S.replay);
}

function setReplay(t) {
  const snap = S.snapshot;
  if (!snap) return;
  const start = Date.parse(snap.race.starts_at);
  if (t >= replayEnd(snap)) {
    stopReplay(!!S.replay);
    return;
  }
  if (!S.replay) say("");
  S.replay = S.replay || { playing: false, speed: 1 };
  S.replay.t = Math.max(start, t);
  // A large race: the trails of those shown, read from the packs once each.
  wantTrails(shown(snap).map((r) => r.id));
  document.getElementById("replay-live").disabled = false;
  placeScrub(snap, S.replay.t);
  redraw();
}

// Back to live: said in words when the replay ran into now.
function stopReplay(caughtUp) {
  S.replay = null;
  document.getElementById("replay-play").textContent = "Play";
  document.getElementById("replay-live").disabled = true;
  say(caughtUp ? "Caught up with live." : "");
  if (S.snapshot) {
    placeScrub(S.snapshot, replayEnd(S.snapshot));
    redraw();
  }
}

// Each redraw: shown unless the race has not started; live, the scrubber at now.
export function renderReplayControl(snap) {
  box.hidden = snap.race.state === "pre";
  box.classList.remove("pending");
  if (!S.replay) placeScrub(snap, replayEnd(snap));
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
  document.getElementById("replay-live").addEventListener("click", () => stopReplay(false));
  setInterval(() => {
    // playing: 4 steps a second
    if (S.replay?.playing) {
      S.replay.speed = Number(document.getElementById("replay-speed").value);
      setReplay(S.replay.t + 250 * S.replay.speed);
    }
  }, 250);
}
