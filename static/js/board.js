// The leaderboard, the race clock, the freshness banner, the followed
// racer's bar and their splits.
import { follow } from "./follow.js";
import { map, markers } from "./map.js";
import { placeOnProfile } from "./profile.js";
import { isField } from "./shape.js";
import { cfg, colorOf, now, S } from "./state.js";
import { fmtAgo, fmtClock, fmtDistance, fmtEta, fmtFix, fmtGap, fmtPace } from "./units.js";

function cell(tr, text, cls, tag) {
  const td = document.createElement(tag || "td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

export function renderBoard(snap, racers) {
  const rows = document.createDocumentFragment();
  racers.forEach((r, i) => {
    if (i > 0 && r.rank > racers[i - 1].rank + 1) {
      // a large race: the followed racer, below the head
      const gap = document.createElement("tr");
      gap.className = "more";
      cell(gap, "⋮").colSpan = 7;
      rows.appendChild(gap);
    }
    const tr = document.createElement("tr");
    tr.dataset.racer = r.id;
    tr.className = r.status + (S.following === r.id ? " following" : "");
    tr.tabIndex = 0;
    tr.setAttribute("aria-selected", S.following === r.id ? "true" : "false");
    cell(tr, String(r.rank));
    const name = cell(tr, "", null, "th");
    name.scope = "row";
    name.title = r.name;
    const sw = document.createElement("span");
    sw.className = `swatch ${r.kind}`;
    sw.style.background = colorOf(r);
    name.appendChild(sw);
    if (r.bib) {
      const bib = document.createElement("span");
      bib.className = "bib";
      bib.textContent = r.bib;
      name.appendChild(bib);
    }
    const label = document.createElement("span");
    label.className = "name";
    label.textContent = r.name;
    name.appendChild(label);
    const sub = document.createElement("span");
    sub.className = "sub";
    sub.textContent = fmtFix(r);
    name.appendChild(sub);
    cell(tr, r.position ? fmtDistance(r.distance_m) : "–");
    cell(tr, fmtPace(r.pace_s_per_km), "opt");
    cell(tr, fmtGap(r));
    cell(tr, fmtEta(r));
    cell(tr, fmtFix(r) + (r.status === "stale" ? " (stale)" : ""), "opt");
    tr.addEventListener("click", () => follow(r.id));
    tr.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        follow(r.id);
      }
    });
    rows.appendChild(tr);
  });
  const body = document.querySelector("#board tbody");
  const focused = document.activeElement?.dataset ? document.activeElement.dataset.racer : null;
  body.replaceChildren(rows);
  if (focused) {
    // keep keyboard focus on the same racer across redraws
    const again = body.querySelector(`tr[data-racer="${CSS.escape(focused)}"]`);
    if (again) again.focus();
  }
  document.getElementById("board-title").textContent =
    snap.race.state === "finished" ? "Results" : "Leaderboard";
  const field = snap.field;
  document.getElementById("field").hidden = !isField(snap);
  if (isField(snap)) {
    const by = field.by_status;
    document.getElementById("field-count").textContent =
      `The leaders of ${field.count.toLocaleString()} racers (${by.racing.toLocaleString()} ` +
      `racing, ${by.finished.toLocaleString()} finished). The course is shaded by how many ` +
      "are on each stretch.";
  }
}

export function renderClock(snap) {
  const start = Date.parse(snap.race.starts_at);
  const el = document.getElementById("clock");
  if (S.replay) el.textContent = `Replay ${fmtClock((S.replay.t - start) / 1000)}`;
  else if (snap.race.state === "finished") el.textContent = "Finished";
  else if (now() < start) el.textContent = `Starts in ${fmtClock((start - now()) / 1000)}`;
  else el.textContent = `Race time ${fmtClock((now() - start) / 1000)}`;
}

export function renderFreshness(snap) {
  const age = (now() - Date.parse(snap.generated_at)) / 1000;
  const banner = document.getElementById("stale");
  const paused = snap.race.state !== "finished" && age > 3 * cfg.interval_s + 2;
  banner.hidden = !paused;
  if (paused) banner.textContent = `Updates paused — last update ${fmtAgo(snap.generated_at)}.`;
}

export function renderFollow(racers) {
  const following = S.following;
  const btn = document.getElementById("unfollow");
  const r = racers.filter((x) => x.id === following)[0];
  btn.hidden = !following;
  if (following) btn.textContent = `${r ? `Following ${r.name}` : `Finding ${following}…`} ✕`;
  const msg = document.getElementById("find-msg");
  if (msg && following) {
    msg.textContent = S.field.missing ? `No racer ${following} in this race.` : "";
  }
  if (r && markers[r.id]) map.panTo(markers[r.id].getLatLng(), { animate: false });
  document.getElementById("gpx").hidden = !r?.position;
  renderSplits(r);
  placeOnProfile(r || racers[0]);
}

// The followed racer's time at each checkpoint (record.splits), if the race has any.
function renderSplits(r) {
  const box = document.getElementById("splits");
  box.hidden = !r?.splits?.length;
  if (box.hidden) return;
  document.getElementById("splits-title").textContent = `Splits — ${r.name}`;
  const rows = document.createDocumentFragment();
  let prevAt = 0;
  let prevD = 0;
  for (const s of r.splits) {
    const tr = document.createElement("tr");
    cell(tr, s.name, null, "th").scope = "row";
    cell(tr, fmtDistance(s.distance_m));
    cell(tr, s.at_s === null ? "–" : fmtClock(s.at_s));
    // The pace over the stretch since the previous split.
    const pace =
      s.at_s !== null && prevAt !== null && s.distance_m > prevD
        ? (1000 * (s.at_s - prevAt)) / (s.distance_m - prevD)
        : null;
    cell(tr, pace === null ? "" : fmtPace(pace));
    prevAt = s.at_s;
    prevD = s.distance_m;
    rows.appendChild(tr);
  }
  box.querySelector("tbody").replaceChildren(rows);
}
