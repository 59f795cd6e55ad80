// Following racers ("my runners"): several at once, the one the map follows
// first in the link (#racer=a,b,c) and kept on this device across reloads.
import { followedNow } from "./shape.js";
import { cfg, redraw, S } from "./state.js";

const KEY = `racepub.following.${cfg.race}`;

// The followed ids, the map's focus first.
function inOrder() {
  return S.focus ? [S.focus, ...S.following.filter((id) => id !== S.focus)] : S.following;
}

function save() {
  const ids = inOrder();
  history.replaceState(
    null,
    "",
    ids.length
      ? `#racer=${ids.map(encodeURIComponent).join(",")}`
      : location.pathname + location.search,
  );
  try {
    localStorage.setItem(KEY, JSON.stringify(ids));
  } catch (_e) {
    /* private mode */
  }
}

function changed() {
  save();
  followedNow();
  redraw();
}

// A racer chosen (a row, a marker, a search match): followed and the one the
// map follows; chosen again while the map follows them, not followed any more.
export function follow(id) {
  if (S.focus === id) {
    unfollow(id);
    return;
  }
  if (!S.following.includes(id)) S.following.push(id);
  S.focus = id;
  S.centring = true;
  S.arriving = true;
  changed();
}

export function unfollow(id) {
  S.following = S.following.filter((x) => x !== id);
  if (S.focus === id) {
    S.focus = S.following[S.following.length - 1] || null;
    S.centring = true;
  }
  changed();
}

// The ids a link names: #racer=a,b,c (each URI-encoded; one that does not
// decode is left out).
export function linkedRacers() {
  const m = /#racer=([^&]+)/.exec(location.hash);
  if (!m) return null;
  const out = [];
  for (const part of m[1].split(",")) {
    try {
      const id = decodeURIComponent(part);
      if (id && !out.includes(id)) out.push(id);
    } catch (_e) {
      /* a mangled link */
    }
  }
  return out;
}

function remembered() {
  try {
    const ids = JSON.parse(localStorage.getItem(KEY) || "[]");
    return Array.isArray(ids) ? ids.filter((x) => typeof x === "string") : [];
  } catch (_e) {
    return [];
  }
}

function take(ids) {
  S.following = ids;
  S.focus = ids[0] || null;
  S.centring = true;
  S.arriving = !!S.focus;
}

export function initFollowing() {
  const linked = linkedRacers();
  take(linked || remembered());
  if (!linked && S.following.length) save(); // the link says who is followed
  window.addEventListener("hashchange", () => {
    // a link opened in this tab
    const ids = linkedRacers() || [];
    if (ids.join(",") !== inOrder().join(",")) {
      take(ids);
      changed();
    }
  });
  document.getElementById("unfollow").addEventListener("click", () => {
    if (S.focus) unfollow(S.focus);
  });
}
