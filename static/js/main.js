// racepub spectator page: polls snapshot.json from the CDN and draws it.
// Data is only ever inserted as text (textContent), never as HTML.
// One module per concern; they share state.js's one state object.
import { initBoard, renderBoard, renderClock, renderFreshness } from "./board.js";
import { renderCard } from "./card.js";
import { initFollowing } from "./follow.js";
import { initGpx } from "./gpx.js";
import { drawDensity, drawMap, initMap } from "./map.js";
import { initPolling } from "./poll.js";
import { drawProfile, initProfile } from "./profile.js";
import { initReplay, renderReplayControl, replayRacers } from "./replay.js";
import { initSearch, renderMatches } from "./search.js";
import { boardRows, drawsTrail, followedRecords, isField, shown } from "./shape.js";
import { onRedraw, redraw, S } from "./state.js";
import { renderStrip } from "./story.js";
import { initUnits } from "./units.js";

// One lap's length, in a race of laps.
function lapLength(snap) {
  return (snap.race.laps || 1) > 1 ? snap.race.lap_m : null;
}

function drawAll(snap) {
  const racers = S.replay ? replayRacers(snap) : shown(snap);
  const view = S.replay ? { rows: racers, total: racers.length, from: 0 } : boardRows(snap);
  const pinned = S.replay
    ? S.following.map((id) => racers.find((r) => r.id === id)).filter(Boolean)
    : followedRecords(snap);
  const lapM = lapLength(snap);
  drawMap(racers, (r) => drawsTrail(snap, r));
  if (isField(snap) && !S.replay) drawDensity(snap.field.density);
  renderReplayControl(snap);
  renderStrip(snap, racers);
  renderBoard(snap, view, pinned, lapM);
  renderClock(snap);
  renderFreshness(snap);
  const focus = pinned.find((r) => r.id === S.focus) || null;
  const known = isField(snap) && !S.replay ? S.field.all?.byRank || snap.racers : racers;
  const total = isField(snap) && !S.replay ? snap.field.count : racers.length;
  renderCard(snap, focus, known.concat(pinned), total, lapM);
  renderMatches();
}

onRedraw(drawAll);
initMap().then(redraw);
initUnits(() => {
  drawProfile();
  if (S.snapshot) drawAll(S.snapshot);
});
initFollowing();
initBoard();
initReplay();
initGpx();
if (document.getElementById("find")) initSearch();
initProfile();
for (const el of document.querySelectorAll(".swatch[data-color]"))
  el.style.background = el.dataset.color;
setInterval(() => {
  if (S.snapshot) {
    renderClock(S.snapshot);
    renderFreshness(S.snapshot);
  }
}, 1000);
initPolling();
