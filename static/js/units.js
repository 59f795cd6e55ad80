// Units and the words of times, distances and paces: one rounding rule for
// times (road-race results round up to the next whole second: 1,250.5 s is
// 20:51), as results.csv and results.html write them (shapes/page.py).
import { cfg, now, S } from "./state.js";

export const METRES = { km: 1000, mi: 1609.344 };
let units = readUnits();

function readUnits() {
  let u = null;
  try {
    u = localStorage.getItem("racepub.units");
  } catch (_e) {
    /* private mode */
  }
  u = u || cfg.units || "km";
  return METRES[u] ? u : "km";
}

export function currentUnits() {
  return units;
}

// The units control: two buttons, the one in use pressed; remembered on
// this device.
export function initUnits(changed) {
  const group = document.getElementById("units");
  const buttons = group.querySelectorAll("button[data-units]");
  function show() {
    for (const b of buttons) b.setAttribute("aria-pressed", String(b.dataset.units === units));
  }
  group.classList.remove("pending");
  show();
  for (const b of buttons) {
    b.addEventListener("click", () => {
      if (b.dataset.units === units) return;
      units = b.dataset.units;
      try {
        localStorage.setItem("racepub.units", units);
      } catch (_e) {
        /* private mode */
      }
      show();
      changed();
    });
  }
}

// Whole seconds, rounded up (a time already whole stays: 1250.0 is 20:50).
export function wholeSeconds(s) {
  return Math.ceil(Math.round(s * 1000) / 1000);
}

export function fmtClock(s) {
  if (s === null || s === undefined) return "";
  s = Math.max(0, wholeSeconds(s));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const mm = `${h ? String(m).padStart(2, "0") : String(m)}:${String(s % 60).padStart(2, "0")}`;
  return h ? `${h}:${mm}` : mm;
}

// A race time for a screen reader: "1 hour 2 minutes 5 seconds".
export function fmtSpoken(s) {
  s = Math.max(0, wholeSeconds(s || 0));
  const parts = [];
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h) parts.push(`${h} hour${h === 1 ? "" : "s"}`);
  if (h || m) parts.push(`${m} minute${m === 1 ? "" : "s"}`);
  parts.push(`${sec} second${sec === 1 ? "" : "s"}`);
  return parts.join(" ");
}

// A duration to come, roughly: "40 s", "15 min", "1 h 05 min".
export function fmtIn(s) {
  s = Math.max(0, wholeSeconds(s));
  if (s < 60) return `${s} s`;
  const min = Math.ceil(s / 60);
  if (min < 60) return `${min} min`;
  return `${Math.floor(min / 60)} h ${String(min % 60).padStart(2, "0")} min`;
}

// A moment as the race's own clock reads it (its UTC offset at the start):
// "11:42", or "11:42:05" with seconds.
export function fmtTimeOfDay(ms, seconds) {
  const local = new Date(ms + 60000 * (cfg.utc_offset_min || 0));
  const hh = String(local.getUTCHours()).padStart(2, "0");
  const mm = String(local.getUTCMinutes()).padStart(2, "0");
  const ss = String(local.getUTCSeconds()).padStart(2, "0");
  return seconds ? `${hh}:${mm}:${ss}` : `${hh}:${mm}`;
}

export function fmtAgo(iso) {
  const s = Math.max(0, Math.round((now() - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}
export function fmtDistance(m) {
  return `${(m / METRES[units]).toFixed(2)} ${units}`;
}
// "0.35 of 1.41 mi"
export function fmtOf(m, total) {
  const per = METRES[units];
  return `${(m / per).toFixed(2)} of ${(total / per).toFixed(2)} ${units}`;
}
// A short distance between two racers: metres (feet in a race in miles)
// under a tenth of the unit, else the unit.
export function fmtMargin(m) {
  if (m < METRES[units] / 10) {
    return units === "mi" ? `${Math.round(m * 3.28084)} ft` : `${Math.round(m)} m`;
  }
  return fmtDistance(m);
}
export function fmtPace(sPerKm) {
  return sPerKm ? `${fmtClock((sPerKm * METRES[units]) / 1000)} /${units}` : "";
}
// An elevation: metres, or feet in a race in miles.
export function fmtHeight(m) {
  return units === "mi" ? `${Math.round(m * 3.28084)} ft` : `${Math.round(m)} m`;
}

// Behind the leader. Finishers: the difference of their finish times as
// shown (each rounded up), so the gaps add up to what the times say; by gun
// time (the publisher's order) or, ordered by net time, by net time.
export function fmtGap(r, leader, net) {
  if (r.id === leader?.id && r.status !== "waiting") return "leader";
  const key = net || r.gun_finish_s == null ? "finish_s" : "gun_finish_s";
  if (r[key] !== null && r[key] !== undefined && leader?.[key] != null) {
    return `+${fmtClock(wholeSeconds(r[key]) - wholeSeconds(leader[key]))}`;
  }
  return r.gap_s === null || r.gap_s === undefined ? "" : `+${fmtClock(r.gap_s)}`;
}

// The finish time, or when the finish is expected: [main line, second
// line]: "20:51", "finished"; "in 15 min", "at ≈ 11:42" (the race's clock).
export function fmtFinish(r, snap) {
  if (r.finish_s !== null && r.finish_s !== undefined) return [fmtClock(r.finish_s), "finished"];
  if (r.eta_s === null || r.eta_s === undefined || r.status !== "racing") return ["", ""];
  const base = S.replay ? S.replay.t : Date.parse(snap.generated_at);
  return [`in ${fmtIn(r.eta_s)}`, `at ≈ ${fmtTimeOfDay(base + 1000 * r.eta_s)}`];
}

// The last fix, in words: "12 s ago", "waiting", "finished".
export function fmtFix(r) {
  if (!r.position) return "waiting";
  if (r.status === "finished") return "finished";
  if (S.replay) return "";
  return fmtAgo(r.position.at);
}
