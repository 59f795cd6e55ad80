// Markers that would pile up on screen: grouped (shown as one with a count)
// and their labels placed where they do not cover each other. Pure: points
// on screen in, groups and labels out.

// items: [{id, x, y, keep, label}] in order of priority (keep: never grouped,
// always labelled: the followed). radius: markers closer than this on screen
// across or down (their boxes would touch: a finger could not tell them
// apart) group.
// Returns {groups: [[id, ...]], labelled: Map of id -> the side its name goes}.
export function crowd(items, radius, labels) {
  const cells = new Map();
  const groups = [];
  const key = (x, y) => `${Math.floor(x / radius)},${Math.floor(y / radius)}`;
  function near(x, y) {
    const cx = Math.floor(x / radius);
    const cy = Math.floor(y / radius);
    for (let i = cx - 1; i <= cx + 1; i++) {
      for (let j = cy - 1; j <= cy + 1; j++) {
        for (const g of cells.get(`${i},${j}`) || []) {
          if (Math.abs(g.x - x) <= radius && Math.abs(g.y - y) <= radius) return g;
        }
      }
    }
    return null;
  }
  for (const it of items) {
    const g = it.keep ? null : near(it.x, it.y);
    if (g && !g.keep) {
      g.ids.push(it.id);
      continue;
    }
    const fresh = { x: it.x, y: it.y, keep: it.keep, ids: [it.id], item: it };
    groups.push(fresh);
    const k = key(it.x, it.y);
    if (!cells.has(k)) cells.set(k, []);
    cells.get(k).push(fresh);
  }
  // Labels: beside each single marker (right, else left, above, below),
  // the followed first, none over another label or another marker.
  const labelled = new Map();
  const boxes = [];
  const dots = groups.map((g) => [g.x - 12, g.y - 12, g.x + 12, g.y + 12]);
  const hits = (b, list, skip) =>
    list.some((o, k) => k !== skip && b[0] < o[2] && o[0] < b[2] && b[1] < o[3] && o[1] < b[3]);
  groups.forEach((g, k) => {
    if (g.ids.length > 1 || !(g.keep || labels)) return;
    const w = 7 * Math.min(g.item.label.length, 28) + 10;
    const sides = {
      right: [g.x + 14, g.y - 9, g.x + 14 + w, g.y + 9],
      left: [g.x - 14 - w, g.y - 9, g.x - 14, g.y + 9],
      above: [g.x - w / 2, g.y - 34, g.x + w / 2, g.y - 16],
      below: [g.x - w / 2, g.y + 16, g.x + w / 2, g.y + 34],
    };
    const free = Object.keys(sides).find(
      (side) => !hits(sides[side], boxes, -1) && !hits(sides[side], dots, k),
    );
    if (free || g.keep) {
      const side = free || "right"; // the followed are always named
      boxes.push(sides[side]);
      labelled.set(g.ids[0], side);
    }
  });
  return { groups: groups.map((g) => g.ids), labelled };
}
