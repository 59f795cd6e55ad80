// Finding a racer of a large race by name or bib, as the spectator types:
// the one or two name index objects a prefix needs (each fetched once),
// each match with their rank, distance and status once their shard is in.
import { findRacers } from "./field.js";
import { follow, unfollow } from "./follow.js";
import { recordOf, wantDetails } from "./shape.js";
import { S } from "./state.js";
import { fmtDistance } from "./units.js";

const MORE = 20; // matches listed at a time
const WAIT_MS = 250; // typing pauses this long before a search
let query = "";
let matches = [];
let listed = MORE;
let asked = 0; // the newest search: an older answer is not shown
let timer = null;

function numbersOf(r) {
  if (!r) return "…";
  const place = r.position ? fmtDistance(r.distance_m) : "";
  return [`#${r.rank}`, place, r.status].filter(Boolean).join(" · ");
}

// The matches, each a button to follow them (drawn again with every redraw:
// their numbers come with the shards).
export function renderMatches() {
  const list = document.getElementById("find-results");
  const more = document.getElementById("find-more");
  if (!list) return;
  list.replaceChildren();
  more.hidden = matches.length <= listed;
  if (!query) return;
  for (const m of matches.slice(0, listed)) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    const who = document.createElement("span");
    who.className = "who";
    who.textContent = m.bib ? `${m.name} (${m.bib})` : m.name;
    const what = document.createElement("span");
    what.className = "what";
    what.textContent = numbersOf(S.snapshot ? recordOf(S.snapshot, m.id) : null);
    b.append(who, what);
    b.addEventListener("click", () => {
      clear();
      follow(m.id);
    });
    li.appendChild(b);
    list.appendChild(li);
  }
}

function say(text) {
  document.getElementById("find-msg").textContent = text;
}

function clear() {
  query = "";
  matches = [];
  listed = MORE;
  say("");
  renderMatches();
}

function show(q, found) {
  query = q;
  matches = found;
  listed = MORE;
  if (!found.length) say(`No racer matches ${q}.`);
  else
    say(found.length === 1 ? "1 racer matches." : `${found.length.toLocaleString()} racers match.`);
  wantDetails(found.slice(0, listed).map((m) => m.id));
  renderMatches();
}

function search(q, then) {
  const mine = ++asked;
  findRacers(q).then((found) => {
    if (mine !== asked) return; // typed on since
    show(q, found);
    if (then) then(found);
  });
}

// Enter (or Find): one match, or a racer whose id or bib it is, is followed.
function choose(q, found) {
  if (!found.length) {
    for (const id of S.following.filter((x) => S.field.missing[x])) unfollow(id); // not there
    return;
  }
  const exact = found.filter((r) => r.id === q || r.bib === q);
  if (exact.length || found.length === 1) {
    clear();
    follow((exact[0] || found[0]).id);
  }
}

export function initSearch() {
  const input = document.getElementById("find-id");
  input.addEventListener("input", () => {
    clearTimeout(timer);
    const q = input.value.trim();
    if (!q) {
      asked++;
      clear();
      return;
    }
    timer = setTimeout(() => search(q), WAIT_MS);
  });
  document.getElementById("find").addEventListener("submit", (e) => {
    e.preventDefault();
    clearTimeout(timer);
    const q = input.value.trim();
    if (q) search(q, (found) => choose(q, found));
  });
  document.getElementById("find-more").addEventListener("click", () => {
    listed += MORE;
    wantDetails(matches.slice(0, listed).map((m) => m.id));
    renderMatches();
  });
}
