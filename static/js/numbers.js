// What a record's numbers say: the progress its rank is decided by, laps
// down on the leader, its status in words.
import { S } from "./state.js";

const EXTRAPOLATE_S = 30; // as the publisher ranks (model/standings.py)

// The progress a rank is decided by (DESIGN.md, "One cycle, one truth"):
// estimated forward from the newest fix to the snapshot's moment at the
// racer's speed, for at most 30 s, never past the finish. [metres, estimated?]
export function rankedProgress(r, snap) {
  if (typeof r.progress_m === "number") return [r.progress_m, r.progress_m !== r.distance_m];
  if (S.replay || !r.position || (r.status !== "racing" && r.status !== "stale")) {
    return [r.distance_m, false];
  }
  const start = Date.parse(snap.race.starts_at);
  const at = Date.parse(r.position.at);
  const since = Math.min(Math.max((Date.parse(snap.generated_at) - at) / 1000, 0), EXTRAPOLATE_S);
  let mps = 0;
  if (r.speed_kmh !== null && r.speed_kmh !== undefined) mps = r.speed_kmh / 3.6;
  else if (r.pace_s_per_km) mps = 1000 / r.pace_s_per_km;
  else if (r.distance_m >= 50 && at > start) mps = r.distance_m / ((at - start) / 1000);
  const cap = Math.max(r.distance_m, snap.race.course_length_m - 0.01);
  const d = Math.min(r.distance_m + mps * since, cap);
  return [d, d - r.distance_m >= 0.5];
}

// Status in words (never only a colour): stale, estimated, the lap, laps
// down on the leader. `plain`: without racing, waiting or finished, which
// the board's other columns say.
export function statusWords(r, leader, lapM, plain) {
  const out = plain && ["racing", "waiting", "finished"].includes(r.status) ? [] : [r.status];
  if (r.estimated) out.push("position estimated");
  const laps = S.snapshot?.race.laps;
  if (r.lap && laps > 1 && r.status !== "finished") out.push(`lap ${r.lap} of ${laps}`);
  const down = lapsDown(r, leader, lapM);
  if (down) out.push(`−${down} lap${down > 1 ? "s" : ""}`);
  return out.join(" · ");
}

// Laps behind the leader: progress more than a lap behind theirs.
function lapsDown(r, leader, lapM) {
  if (!lapM || !leader || r === leader || r.status === "waiting" || r.status === "finished") {
    return 0;
  }
  const ahead = leader.status === "finished" ? snapLength() : leader.distance_m;
  return Math.floor((ahead - r.distance_m) / lapM);
}
function snapLength() {
  return S.snapshot ? S.snapshot.race.course_length_m : Infinity;
}

// Net times (from each racer's own start) differ from gun times: the race
// has waves or chip starts, and the board can be ordered either way.
export function hasNet(racers) {
  return racers.some(
    (r) =>
      r.finish_s !== null &&
      r.finish_s !== undefined &&
      r.gun_finish_s !== null &&
      r.gun_finish_s !== undefined &&
      Math.abs(r.gun_finish_s - r.finish_s) >= 0.05,
  );
}
