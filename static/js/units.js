// Units and the formatting of times, distances and paces.
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

// The units button: km <-> mi, remembered on this device.
export function initUnits(changed) {
  const button = document.getElementById("units");
  function show() {
    button.textContent = units === "km" ? "Miles" : "Kilometres";
    button.setAttribute(
      "aria-label",
      units === "km" ? "Show distances in miles" : "Show distances in kilometres",
    );
  }
  button.hidden = false;
  show();
  button.addEventListener("click", () => {
    units = units === "km" ? "mi" : "km";
    try {
      localStorage.setItem("racepub.units", units);
    } catch (_e) {
      /* private mode */
    }
    show();
    changed();
  });
}

export function fmtClock(s) {
  if (s === null || s === undefined) return "";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const mm = `${h ? String(m).padStart(2, "0") : String(m)}:${String(s % 60).padStart(2, "0")}`;
  return h ? `${h}:${mm}` : mm;
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
export function fmtPace(sPerKm) {
  return sPerKm ? `${fmtClock((sPerKm * METRES[units]) / 1000)} /${units}` : "";
}
export function fmtGap(r) {
  if (r.rank === 1 && r.status !== "waiting") return "leader";
  return r.gap_s === null || r.gap_s === undefined ? "" : `+${fmtClock(r.gap_s)}`;
}
export function fmtEta(r) {
  if (r.finish_s !== null) return `finished ${fmtClock(r.finish_s)}`;
  return r.eta_s !== null && r.status === "racing" ? `in ${fmtClock(r.eta_s)}` : "";
}
export function fmtFix(r) {
  if (!r.position) return "waiting";
  if (S.replay) return "";
  return fmtAgo(r.position.at);
}
