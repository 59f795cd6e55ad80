// The race's story in words: each runner's margin on each vehicle (the
// founding race was four runners against a trolley), the head-to-head strip
// at the top, and for a followed racer the racers just ahead and behind.
import { isField } from "./shape.js";
import { S } from "./state.js";
import { fmtClock, fmtMargin, wholeSeconds } from "./units.js";

// How far a runner is from a vehicle: [time, distance] (either may be null).
function margin(v) {
  const by = v.seconds !== null && v.seconds !== undefined ? fmtClock(v.seconds) : null;
  return [by, v.metres ? fmtMargin(v.metres) : null];
}

// One runner against one vehicle (a record's vs_vehicles entry):
// "1:12 ahead of The T (120 m)", or "" before both have started.
export function versusText(v) {
  if (v.ahead === null || v.ahead === undefined) return "";
  const side = v.ahead ? "ahead of" : "behind";
  const [by, far] = margin(v);
  if (by && far) return `${by} ${side} ${v.name} (${far})`;
  return `${by || far || "level"} ${side} ${v.name}`;
}

// The same from the vehicle's side: "vs The T: 1:12 ahead (120 m)".
export function versusLine(v) {
  if (v.ahead === null || v.ahead === undefined) return "";
  const [by, far] = margin(v);
  const side = v.ahead ? "ahead" : "behind";
  return `vs ${v.name}: ${[by, side].filter(Boolean).join(" ")}${far ? ` (${far})` : ""}`;
}

// Every vehicle margin of a runner, in words.
export function versusAll(r) {
  return (r.vs_vehicles || []).map(versusText).filter(Boolean);
}

// How far apart two racers are in time: finishers by their finish times as
// shown (rounded up), else the one behind's gap_ahead_s when they are
// neighbours, else the difference of their gaps to the leader.
function between(front, back) {
  if (front.finish_s != null && back.finish_s != null) {
    return wholeSeconds(back.finish_s) - wholeSeconds(front.finish_s);
  }
  if (back.rank === front.rank + 1 && back.gap_ahead_s != null) return back.gap_ahead_s;
  if (back.gap_s != null && front.gap_s != null) return Math.max(0, back.gap_s - front.gap_s);
  return null;
}

// The racers just ahead and behind a racer, among the records the page has,
// in one line ("" when it has neither).
export function neighbours(r, known) {
  if (r.status === "waiting") return "";
  const byRank = new Map(known.map((x) => [x.rank, x]));
  const out = [];
  const ahead = byRank.get(r.rank - 1);
  const behind = byRank.get(r.rank + 1);
  const said = (s, side, x) =>
    s === 0
      ? `level with ${x.name} (#${x.rank})`
      : `${s === null ? "" : `${fmtClock(s)} `}${side} ${x.name} (#${x.rank})`;
  if (ahead) out.push(said(between(ahead, r), "behind", ahead));
  if (behind && behind.status !== "waiting") out.push(said(between(r, behind), "ahead of", behind));
  return out.join(" · ");
}

function chip(parent, text, cls) {
  const el = document.createElement("span");
  el.className = `chip ${cls || ""}`;
  el.textContent = text;
  parent.appendChild(el);
  return el;
}

// The strip at the top when the race has vehicles: each runner's margin on
// each (a small race), or how many runners are ahead and behind (a large one).
export function renderStrip(snap, racers) {
  const box = document.getElementById("story");
  const vehicles = racers.filter((r) => r.kind === "vehicle");
  box.hidden = !vehicles.length;
  if (!vehicles.length) return;
  const rows = document.createDocumentFragment();
  for (const v of vehicles) {
    const line = document.createElement("p");
    const title = document.createElement("strong");
    title.textContent = `Runners vs ${v.name}: `;
    line.appendChild(title);
    if (!v.position) {
      chip(line, `${v.name} has not started`, "waiting");
    } else if (isField(snap) && !S.replay) {
      const vehiclesAhead = snap.racers.filter((x) => x.kind === "vehicle" && x.rank < v.rank);
      const ahead = Math.max(0, v.rank - 1 - vehiclesAhead.length);
      const runners = snap.field.count - snap.racers.filter((x) => x.kind === "vehicle").length;
      chip(line, `${ahead.toLocaleString()} ahead`, "ahead");
      chip(line, `${Math.max(0, runners - ahead).toLocaleString()} behind`, "behind");
    } else {
      for (const r of racers) {
        if (r.kind === "vehicle") continue;
        const mine = (r.vs_vehicles || []).find((x) => x.id === v.id);
        if (!mine || mine.ahead === null || mine.ahead === undefined) {
          chip(line, `${r.name}: not started`, "waiting");
          continue;
        }
        const by =
          mine.seconds !== null && mine.seconds !== undefined
            ? fmtClock(mine.seconds)
            : fmtMargin(mine.metres);
        chip(
          line,
          `${r.name}: ${by} ${mine.ahead ? "ahead" : "behind"}`,
          mine.ahead ? "ahead" : "behind",
        );
      }
    }
    rows.appendChild(line);
  }
  box.replaceChildren(rows);
}
