// The leaderboard: the followed racers pinned on top, then the board's rows
// (a page of ranks in a large race), each a button to follow them; its
// controls (pages, category, gun or net order); the race clock and the
// freshness banner.
import { colorOf } from "./colors.js";
import { PAGE } from "./field.js";
import { follow } from "./follow.js";
import { hasNet, rankedProgress, statusWords } from "./numbers.js";
import { boardChanged, isField } from "./shape.js";
import { cfg, now, redraw, S } from "./state.js";
import { versusAll } from "./story.js";
import {
  currentUnits,
  fmtAgo,
  fmtClock,
  fmtDistance,
  fmtFinish,
  fmtFix,
  fmtGap,
  fmtPace,
  METRES,
} from "./units.js";

function cell(tr, text, cls, tag) {
  const td = document.createElement(tag || "td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}
function span(parent, text, cls) {
  const el = document.createElement("span");
  el.className = cls;
  el.textContent = text;
  parent.appendChild(el);
  return el;
}

// Rank within each category, by the order of the rows the page has (a
// large race's whole field: worked out once per copy of it).
let ranked = null;
let ranks = {};
function categoryRanks(rows) {
  if (rows === ranked) return ranks;
  ranked = rows;
  ranks = countPlaces(rows);
  return ranks;
}
function countPlaces(rows) {
  const seen = {};
  const out = {};
  for (const r of rows) {
    if (!r.category) continue;
    seen[r.category] = (seen[r.category] || 0) + 1;
    out[r.id] = seen[r.category];
  }
  return out;
}

function row(r, ctx) {
  const { snap, leader, lapM, catRank } = ctx;
  const tr = document.createElement("tr");
  tr.dataset.racer = r.id;
  const mine = S.following.includes(r.id);
  tr.className = `${r.status}${mine ? " following" : ""}${S.focus === r.id ? " focus" : ""}`;
  cell(tr, String(ctx.place ? ctx.place(r) : r.rank));
  const name = cell(tr, "", "who", "th");
  name.scope = "row";
  const b = document.createElement("button");
  b.type = "button";
  b.className = "follow";
  b.setAttribute("aria-pressed", String(mine));
  const sw = span(b, "", `swatch ${r.kind}${r.estimated ? " estimated" : ""}`);
  sw.style.background = r.estimated ? "transparent" : colorOf(r);
  sw.style.borderColor = colorOf(r);
  span(b, mine ? "Stop following " : "Follow ", "visually-hidden");
  span(b, r.name, "name");
  name.appendChild(b);
  // Said in words beside the name: stale, estimated, laps (never only a colour).
  const words = statusWords(r, leader, lapM, true);
  if (words) span(name, words, "words");
  // On a phone the bib and category columns fold under the name.
  const rank = catRank[r.id];
  const extra = [r.bib && cfg.bibs ? `bib ${r.bib}` : "", r.category || ""];
  if (r.category && rank) extra[1] += ` #${rank}`;
  span(name, [fmtFix(r), ...extra].filter(Boolean).join(" · "), "sub");
  for (const text of versusAll(r)) span(name, text, "vs");
  if (cfg.bibs) {
    const td = cell(tr, "", "bibcol");
    if (r.bib) span(td, r.bib, "bib");
  }
  if ((cfg.categories || []).length) {
    const td = cell(tr, r.category || "", "cat");
    if (r.category && rank) span(td, `#${rank} in ${r.category}`, "soon");
  }
  const [d, est] = rankedProgress(r);
  const dist = cell(tr, r.position ? `${est ? "≈ " : ""}${fmtDistance(d)}` : "–");
  if (est) dist.title = `estimated now; ${fmtDistance(r.distance_m)} at the last fix`;
  cell(tr, fmtPace(r.pace_s_per_km), "opt");
  cell(tr, fmtGap(r, ctx.byNet ? ctx.first : leader, ctx.byNet));
  const [when, soon] = fmtFinish(r, snap);
  // A race with net times: the time the board is ordered by first, the other beside.
  const both = ctx.net && r.finish_s !== null && r.gun_finish_s !== null;
  const fin = cell(tr, both && !ctx.byNet ? fmtClock(r.gun_finish_s) : when);
  if (soon) span(fin, soon, "soon");
  if (both) {
    const other = ctx.byNet ? `gun ${fmtClock(r.gun_finish_s)}` : `net ${fmtClock(r.finish_s)}`;
    span(fin, other, "soon");
  }
  cell(tr, fmtFix(r), "opt");
  tr.addEventListener("click", () => follow(r.id));
  return tr;
}

// rows: the board's rows; pinned: the followed racers' records; total: how
// many the rows are of; from: the first row's place in them.
export function renderBoard(snap, view, pinned, lapM) {
  let rows = view.rows || [];
  const leader = rows.find((r) => r.rank === 1) || snap.racers[0];
  const netTimes = hasNet(isField(snap) ? snap.racers.concat(rows) : snap.racers);
  const net = S.board.order === "net" && netTimes;
  let place = null;
  if (net) {
    const byNet = netOrder(rows);
    const at = new Map(byNet.map((r, k) => [r.id, view.from + k + 1]));
    rows = byNet;
    place = (r) => at.get(r.id) || r.rank;
  }
  const all = isField(snap) ? S.field.all?.byRank || snap.racers : snap.racers;
  const first = rows.find((r) => r.status !== "waiting");
  const ctx = {
    snap,
    leader,
    lapM,
    catRank: categoryRanks(all),
    place,
    net: netTimes, // the race has net times: rows say the gun time too
    byNet: net, // ordered by net time: places and gaps by it
    first,
  };
  const focused = document.activeElement?.closest?.("tr")?.dataset.racer;
  const focusedIn = document.activeElement?.closest?.("tbody")?.id;
  const mine = document.getElementById("mine");
  const cols = document.querySelectorAll("#board thead th").length;
  const caption = document.createElement("tr");
  caption.className = "caption";
  const th = cell(
    caption,
    pinned.length > 1 ? "Racers you follow" : "The racer you follow",
    "",
    "th",
  );
  th.colSpan = cols;
  th.scope = "colgroup";
  const byRank = pinned.slice().sort((a, b) => a.rank - b.rank);
  const pins = byRank.map((r) => row(r, { ...ctx, place: null }));
  if (pins.length) mine.replaceChildren(caption, ...pins);
  else mine.replaceChildren();
  mine.hidden = !pinned.length;
  const body = document.getElementById("rows");
  body.replaceChildren(...rows.map((r) => row(r, ctx)));
  if (view.rows === null) {
    const tr = document.createElement("tr");
    cell(tr, "Loading…", "more").colSpan = cols;
    body.appendChild(tr);
  }
  if (focused) {
    // keep keyboard focus on the same racer's button across redraws
    const again = document.querySelector(
      `#${focusedIn} tr[data-racer="${CSS.escape(focused)}"] button`,
    );
    if (again) again.focus();
  }
  document.getElementById("board-title").textContent =
    snap.race.state === "finished" ? "Results" : "Leaderboard";
  document.getElementById("dist-of").textContent =
    `of ${(snap.race.course_length_m / METRES[currentUnits()]).toFixed(2)} ${currentUnits()}`;
  renderControls(snap, view, netTimes);
  renderCounts(snap, view);
}

function netOrder(rows) {
  const done = rows.filter((r) => r.finish_s !== null && r.finish_s !== undefined);
  const rest = rows.filter((r) => r.finish_s === null || r.finish_s === undefined);
  done.sort((a, b) => a.finish_s - b.finish_s || a.rank - b.rank);
  return done.concat(rest);
}

function renderControls(snap, view, netTimes) {
  const order = document.getElementById("order");
  order.hidden = !netTimes;
  for (const b of order.querySelectorAll("button")) {
    b.setAttribute("aria-pressed", String(b.dataset.order === S.board.order));
  }
  const pager = document.getElementById("pager");
  const pages = isField(snap) && !S.replay ? Math.ceil(view.total / PAGE) : 1;
  pager.hidden = pages <= 1;
  if (pages > 1) {
    const from = S.board.page * PAGE + 1;
    const to = Math.min(view.total, from + PAGE - 1);
    document.getElementById("pager-at").textContent =
      `Ranks ${from.toLocaleString()}–${to.toLocaleString()} of ${view.total.toLocaleString()}` +
      (S.board.category ? ` in ${S.board.category}` : "");
    document.getElementById("pager-prev").disabled = S.board.page === 0;
    document.getElementById("pager-next").disabled = S.board.page >= pages - 1;
  }
}

// How many are racing, finished...: of the whole field, or of the replayed moment.
function renderCounts(snap, view) {
  const el = document.getElementById("field-count");
  if (!el) return;
  if (S.replay) {
    const rows = view.rows || [];
    const racing = rows.filter((r) => r.status === "racing").length;
    const done = rows.filter((r) => r.status === "finished").length;
    el.textContent =
      `At ${fmtClock((S.replay.t - Date.parse(snap.race.starts_at)) / 1000)}: ` +
      `${racing} racing and ${done} finished of the ${rows.length} replayed` +
      (isField(snap) ? " (the leaders and the racers you follow)." : ".");
    return;
  }
  if (!isField(snap)) {
    el.textContent = "";
    return;
  }
  const by = snap.field.by_status;
  el.textContent =
    `${snap.field.count.toLocaleString()} racers: ${by.racing.toLocaleString()} racing, ` +
    `${by.finished.toLocaleString()} finished. The course is shaded by how many are on each ` +
    "stretch.";
}

export function initBoard() {
  const go = (page) => {
    S.board.page = page;
    boardChanged();
    redraw();
  };
  document.getElementById("pager-prev").addEventListener("click", () => {
    go(Math.max(0, S.board.page - 1));
  });
  document.getElementById("pager-next").addEventListener("click", () => go(S.board.page + 1));
  document.getElementById("pager-top").addEventListener("click", () => go(0));
  const cat = document.getElementById("category");
  if (cat) {
    cat.addEventListener("change", () => {
      S.board.category = cat.value;
      go(0);
    });
  }
  for (const b of document.querySelectorAll("#order button")) {
    b.addEventListener("click", () => {
      S.board.order = b.dataset.order;
      redraw();
    });
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
  // The scrubber's badge says so too: never "Live" over a race that has stopped updating.
  const handle = document.getElementById("replay-time");
  handle.classList.toggle("paused", paused);
  if (!S.replay) handle.textContent = paused ? "Paused" : "Live";
}
