// Who a racer is at a glance: their colour. A configured colour always
// wins. A small race gives each racer a colour of its own (no two share
// one while there are colours left); a large race gives the racers followed
// one each, and colours the rest by category, or without categories by rank
// band, and says which in the map's key.
import { isField } from "./shape.js";
import { cfg, fnv1a, S } from "./state.js";

// Twelve colours told apart on a light map and from the course's green.
export const PALETTE = [
  "#e6194b",
  "#4363d8",
  "#f58231",
  "#911eb4",
  "#1fa8c9",
  "#f032e6",
  "#3cb44b",
  "#e0b000",
  "#9a6324",
  "#000075",
  "#800000",
  "#469990",
];

// Rank bands of a large race without categories: [first rank, last, colour, words].
export const BANDS = [
  [1, 10, "#e6194b", "ranks 1–10"],
  [11, 25, "#f58231", "ranks 11–25"],
  [26, 100, "#4363d8", "ranks 26–100"],
  [101, Infinity, "#469990", "rank 101 on"],
];

// A small race's colours, assigned once for its set of racers: by id, so
// they are the same at every poll and after a reload.
let assigned = null;
let assignedFor = "";
function assign(racers) {
  const ids = racers.map((r) => r.id).sort();
  const key = ids.join("\u0000");
  if (assigned && key === assignedFor) return assigned;
  const taken = new Set(racers.filter((r) => r.color).map((r) => r.color.toLowerCase()));
  const free = PALETTE.filter((c) => !taken.has(c));
  const out = {};
  let k = 0;
  for (const id of ids) {
    const r = racers.find((x) => x.id === id);
    if (r.color) continue;
    out[id] = k < free.length ? free[k] : PALETTE[fnv1a(id) % PALETTE.length];
    k += 1;
  }
  assigned = out;
  assignedFor = key;
  return out;
}

export function categoryColor(category) {
  const k = (cfg.categories || []).indexOf(category);
  return k < 0 ? null : PALETTE[k % PALETTE.length];
}

export function bandOf(rank) {
  return BANDS.find((b) => rank >= b[0] && rank <= b[1]) || BANDS[BANDS.length - 1];
}

// How the race is coloured: "own" (every racer their own), "category" or "band".
export function colouring() {
  if (!isField(S.snapshot)) return "own";
  return (cfg.categories || []).length ? "category" : "band";
}

export function colorOf(r) {
  if (r.color) return r.color;
  const how = colouring();
  // The racers followed in a large race: each their own, whatever their rank,
  // from the palette's far end (its first colours are the categories').
  const mine = how === "own" ? -1 : S.following.indexOf(r.id);
  if (mine >= 0) return PALETTE[PALETTE.length - 1 - (mine % PALETTE.length)];
  if (how === "category") return categoryColor(r.category) || "#555555";
  if (how === "band") return bandOf(r.rank || Infinity)[2];
  const own = S.snapshot ? assign(S.snapshot.racers)[r.id] : null;
  return own || PALETTE[fnv1a(r.id) % PALETTE.length];
}
