// A followed racer's track as GPX, made in the browser from what the page
// already has (the pieces of their trail, and what came since).
import { followedRecords, trailOf } from "./shape.js";
import { S } from "./state.js";
import { fmtClock } from "./units.js";

function xmlText(s) {
  const entities = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" };
  return String(s).replace(/[&<>"']/g, (c) => entities[c]);
}

function downloadGpx() {
  const snap = S.snapshot;
  const r = followedRecords(snap).find((x) => x.id === S.focus);
  if (!r) return;
  const pts = trailOf(r).map(
    (p) =>
      `   <trkpt lat="${p[0]}" lon="${p[1]}"><time>${new Date(p[2]).toISOString()}</time></trkpt>`,
  );
  const gpx =
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    '<gpx version="1.1" creator="racepub" xmlns="http://www.topografix.com/GPX/1/1">\n' +
    ` <metadata><name>${xmlText(snap.race.title)}</name></metadata>\n` +
    ` <trk><name>${xmlText(r.name)}</name>` +
    (r.finish_s !== null ? `<desc>finished in ${fmtClock(r.finish_s)}</desc>` : "") +
    "\n  <trkseg>\n" +
    pts.join("\n") +
    "\n  </trkseg>\n </trk>\n</gpx>\n";
  const url = URL.createObjectURL(new Blob([gpx], { type: "application/gpx+xml" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = `${`${snap.race.id}-${r.id}`.replace(/[^A-Za-z0-9_.-]+/g, "_")}.gpx`;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

export function initGpx() {
  document.getElementById("gpx").addEventListener("click", downloadGpx);
}
