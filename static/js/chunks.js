// A small race's track chunks (tracks/<racer>/<n>.json): immutable, each
// fetched once, on first need.
import { fetchJSON } from "./net.js";
import { redraw } from "./state.js";

const cache = {};

// The chunk's points ([lat, lon, iso time]): [] until it has arrived.
export function chunkPoints(key) {
  if (!cache[key]) {
    cache[key] = [];
    fetchJSON(key)
      .then(({ json }) => {
        cache[key] = json.points;
        redraw();
      })
      .catch(() => {
        delete cache[key]; // asked again when next needed
      });
  }
  return cache[key];
}
