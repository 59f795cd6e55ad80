// What a record's numbers say: the progress its rank is decided by, laps
// down on the leader, its status in words.
import { S } from "./state.js";

// The progress a rank is decided by (DESIGN.md, "One cycle, one truth"), as
// the publisher worked it out (progress_m: carried on from the newest fix to
// the snapshot's moment); a replayed moment's is where the racer was then.
// [metres, estimated?]
export function rankedProgress(r) {
  if (typeof r.progress_m !== "number") return [r.distance_m, false];
  return [r.progress_m, r.progress_m - r.distance_m >= 0.5];
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
