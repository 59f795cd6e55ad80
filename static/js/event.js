// An event's page (several races of one event): each race's summary.json,
// written by that race's publisher, polled and shown as text.
import { fetchJSON } from "./net.js";

const cfg = JSON.parse(document.getElementById("event-config").textContent);

function clock(s) {
  const t = Math.ceil(s);
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const mm = `${h ? String(m).padStart(2, "0") : String(m)}:${String(t % 60).padStart(2, "0")}`;
  return h ? `${h}:${mm}` : mm;
}

const STATES = { pre: "Not started", live: "Live", finished: "Finished" };

function show(card, doc) {
  card.querySelector(".state").textContent = STATES[doc.race.state] || doc.race.state;
  const leader = doc.leader;
  let text = "";
  if (leader) {
    const who = leader.bib ? `${leader.name} (${leader.bib})` : leader.name;
    text =
      leader.finish_s !== null
        ? `Winner: ${who}, ${clock(leader.finish_s)}`
        : `Leader: ${who}, ${(leader.distance_m / 1000).toFixed(2)} km`;
  }
  card.querySelector(".leader").textContent = text;
  const by = doc.by_status;
  card.querySelector(".counts").textContent =
    `${doc.count.toLocaleString()} racers: ${by.racing.toLocaleString()} racing, ` +
    `${by.finished.toLocaleString()} finished, ${by.waiting.toLocaleString()} not started`;
}

function poll() {
  for (const race of cfg.races) {
    const card = document.querySelector(`li[data-race="${CSS.escape(race.id)}"]`);
    fetchJSON(`${race.place}summary.json`, { cache: "no-cache" })
      .then(({ json }) => show(card, json))
      .catch(() => {
        card.querySelector(".state").textContent = "Not published yet";
      });
  }
}

poll();
setInterval(poll, 1000 * Math.max(2, cfg.interval_s));
