// The followed racer (the one the map follows): who and where they are in
// words, the racers either side, their margins on the vehicles, their
// splits; the button to stop following them and their GPX.
import { rankedProgress, statusWords } from "./numbers.js";
import { placeOnProfile } from "./profile.js";
import { S } from "./state.js";
import { neighbours, versusLine } from "./story.js";
import { fmtClock, fmtDistance, fmtFinish, fmtOf, fmtPace } from "./units.js";

function line(parent, text, cls) {
  if (!text) return;
  const p = document.createElement("p");
  if (cls) p.className = cls;
  p.textContent = text;
  parent.appendChild(p);
}

export function renderCard(snap, r, known, total, lapM) {
  const card = document.getElementById("card");
  const btn = document.getElementById("unfollow");
  btn.hidden = !S.focus;
  if (S.focus) {
    const who = r ? r.name : S.focus;
    btn.textContent = r ? `Following ${who} ✕` : `Finding ${who}…`;
    btn.setAttribute("aria-label", `Stop following ${who}`);
  }
  const msg = document.getElementById("find-msg");
  const missing = S.following.filter((id) => S.field.missing[id]);
  if (msg && missing.length) msg.textContent = `No racer ${missing.join(", ")} in this race.`;
  document.getElementById("gpx").hidden = !r?.position;
  card.hidden = !r;
  renderSplits(r);
  placeOnProfile(r || known[0]);
  if (!r) return;
  const body = document.createDocumentFragment();
  const leader = known.find((x) => x.rank === 1);
  line(
    body,
    `#${r.rank} of ${total.toLocaleString()} · ${statusWords(r, leader, lapM, false)}`,
    "card-rank",
  );
  if (r.position) {
    const pace = fmtPace(r.pace_s_per_km);
    const [d, est] = rankedProgress(r);
    const of = fmtOf(d, snap.race.course_length_m);
    line(body, `${est ? "≈ " : ""}${of}${pace ? ` · ${pace}` : ""}`);
  }
  const [when, at] = fmtFinish(r, snap);
  if (r.finish_s !== null && r.finish_s !== undefined) line(body, `Finished in ${when}`);
  else if (when) line(body, `Finishes ${at.replace("at ", "")}, ${when}`);
  line(body, neighbours(r, known));
  for (const v of r.vs_vehicles || []) line(body, versusLine(v), "story");
  const head = document.createElement("h3");
  head.id = "card-title";
  head.textContent = r.bib ? `${r.name} (bib ${r.bib})` : r.name;
  card.replaceChildren(head, body);
}

function cell(tr, text, tag) {
  const td = document.createElement(tag || "td");
  td.textContent = text;
  tr.appendChild(td);
  return td;
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
    cell(tr, s.name, "th").scope = "row";
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
