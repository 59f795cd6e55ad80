// racepub spectator page: polls snapshot.json from the CDN and draws it.
// Data is only ever inserted as text (textContent), never as HTML.
// One module per concern; they share state.js's one state object.
import { renderBoard, renderClock, renderFollow, renderFreshness } from "./board.js";
import { initFollowing } from "./follow.js";
import { initGpx } from "./gpx.js";
import { drawDensity, drawRacer, dropGone } from "./map.js";
import { initPolling } from "./poll.js";
import { drawProfile } from "./profile.js";
import { initReplay, renderReplayControl, replayRacers } from "./replay.js";
import { drawsTrail, isField, shown } from "./shape.js";
import { onRedraw, S } from "./state.js";
import { initUnits } from "./units.js";

function drawAll(snap) {
  const racers = S.replay ? replayRacers(snap) : shown(snap);
  const keep = {};
  for (const r of racers) {
    keep[r.id] = true;
    drawRacer(r, drawsTrail(snap, r));
  }
  dropGone(keep);
  if (isField(snap)) drawDensity(snap.field.density);
  renderReplayControl(snap);
  renderBoard(snap, racers);
  renderClock(snap);
  renderFreshness(snap);
  renderFollow(racers);
}

onRedraw(drawAll);
initUnits(() => {
  if (S.snapshot) drawAll(S.snapshot);
});
initFollowing();
initReplay();
initGpx();
drawProfile();
for (const el of document.querySelectorAll(".swatch[data-color]"))
  el.style.background = el.dataset.color;
setInterval(() => {
  if (S.snapshot) {
    renderClock(S.snapshot);
    renderFreshness(S.snapshot);
  }
}, 1000);
initPolling();
