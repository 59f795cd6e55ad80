// Following one racer: the link (#racer=ID), the button to stop, and in a
// large race finding them by name or bib (field.js).
import { findRacers, followed } from "./field.js";
import { isField } from "./shape.js";
import { redraw, S } from "./state.js";

export function follow(id) {
  S.following = S.following === id ? null : id;
  history.replaceState(
    null,
    "",
    S.following ? `#racer=${encodeURIComponent(S.following)}` : location.pathname,
  );
  if (isField(S.snapshot)) followed();
  redraw();
}

export function linkedRacer() {
  const m = /#racer=([^&]+)/.exec(location.hash);
  try {
    return m ? decodeURIComponent(m[1]) : null;
  } catch (_e) {
    return null; // a mangled link
  }
}

function showMatches(query, found) {
  const list = document.getElementById("find-results");
  const msg = document.getElementById("find-msg");
  list.replaceChildren();
  if (!found.length) {
    if (S.following && S.field.missing) follow(S.following); // stop looking for one who is not there
    msg.textContent = `No racer matches ${query}.`;
    return;
  }
  const exact = found.filter((r) => r.id === query || r.bib === query);
  if (exact.length || found.length === 1) {
    msg.textContent = "";
    follow((exact[0] || found[0]).id);
    return;
  }
  msg.textContent = `${found.length} racers match:`;
  for (const r of found.slice(0, 20)) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = `${r.name} (${r.bib || r.id})`;
    b.addEventListener("click", () => {
      list.replaceChildren();
      msg.textContent = "";
      follow(r.id);
    });
    li.appendChild(b);
    list.appendChild(li);
  }
}

export function initFollowing() {
  S.following = linkedRacer();
  window.addEventListener("hashchange", () => {
    // a link opened in this tab
    const id = linkedRacer();
    if (id !== S.following) {
      S.following = null;
      follow(id);
    }
  });
  document.getElementById("unfollow").addEventListener("click", () => follow(S.following));
  document.getElementById("find").addEventListener("submit", (e) => {
    e.preventDefault();
    const query = document.getElementById("find-id").value.trim();
    if (!query) return;
    findRacers(query).then((found) => showMatches(query, found));
  });
}
