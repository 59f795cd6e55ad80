// racepub spectator page: polls snapshot.json from the CDN and draws it.
// Data is only ever inserted as text (textContent), never as HTML.
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("race-config").textContent);
  var palette = ["#e4572e", "#17bebb", "#ffc914", "#76b041", "#2e282a", "#8e6c8a", "#3a86ff"];
  var intervalMs = Math.max(1, cfg.interval_s) * 1000;
  var snapshot = null, following = null, failures = 0, timer = null;
  var markers = {}, trails = {}, chunkCache = {};
  var METRES = { km: 1000, mi: 1609.344 };
  var units = localStorage.getItem("racepub.units") || cfg.units || "km";
  if (!METRES[units]) units = "km";

  // -- map -------------------------------------------------------------------
  var map = L.map("map", { zoomControl: true });
  var course = L.polyline(cfg.course, { color: "#00843d", weight: 5, opacity: 0.7 }).addTo(map);
  map.fitBounds(course.getBounds(), { padding: [20, 20] });
  L.tileLayer(cfg.tiles, { attribution: cfg.attribution, maxZoom: 19 }).addTo(map);
  if (cfg.course.length) {
    L.circleMarker(cfg.course[0], { radius: 6, color: "#fff", fillColor: "#00843d", fillOpacity: 1 })
      .bindTooltip("Start").addTo(map);
    L.circleMarker(cfg.course[cfg.course.length - 1], { radius: 6, color: "#fff", fillColor: "#111", fillOpacity: 1 })
      .bindTooltip("Finish").addTo(map);
  }

  function colorOf(r, i) { return r.color || palette[i % palette.length]; }

  function drawRacer(r, i) {
    var color = colorOf(r, i);
    if (!trails[r.id]) trails[r.id] = L.polyline([], { color: color, weight: 3, opacity: 0.8 }).addTo(map);
    var pts = [];
    r.track.forEach(function (key) { (chunkCache[key] || []).forEach(function (p) { pts.push([p[0], p[1]]); }); });
    r.tail.forEach(function (p) { pts.push([p[0], p[1]]); });
    trails[r.id].setLatLngs(pts);
    r.track.forEach(function (key) { if (!chunkCache[key]) fetchChunk(key); });
    if (!r.position) return;
    var ll = [r.position.lat, r.position.lon];
    var vehicle = r.kind === "vehicle";
    if (!markers[r.id]) {
      markers[r.id] = L.circleMarker(ll, {
        radius: vehicle ? 10 : 8, color: vehicle ? "#111" : "#fff", weight: vehicle ? 3 : 2,
        dashArray: vehicle ? "4 3" : null, fillColor: color, fillOpacity: 0.95
      }).addTo(map);
      markers[r.id].bindTooltip("");
      markers[r.id].on("click", function () { follow(r.id); });
    }
    markers[r.id].setLatLng(ll);
    markers[r.id].setTooltipContent(document.createTextNode(r.name)); // a node: text, never HTML
    markers[r.id].setStyle({ fillOpacity: r.status === "stale" ? 0.35 : 0.95 });
  }

  function fetchChunk(key) {
    chunkCache[key] = [];
    fetch(key).then(function (res) {
      if (!res.ok) throw new Error(res.status);
      return res.json();
    }).then(function (chunk) {
      chunkCache[key] = chunk.points;
      if (snapshot) render(snapshot);
    }).catch(function () { delete chunkCache[key]; });
  }

  // -- leaderboard -----------------------------------------------------------
  function fmtClock(s) {
    if (s === null || s === undefined) return "";
    s = Math.max(0, Math.round(s));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    var mm = (h ? String(m).padStart(2, "0") : String(m)) + ":" + String(sec).padStart(2, "0");
    return h ? h + ":" + mm : mm;
  }
  function fmtAge(iso, now) {
    if (!iso) return "";
    var s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
    return s < 60 ? s + " s ago" : Math.floor(s / 60) + " min ago";
  }
  function cell(tr, text, tag) {
    var td = document.createElement(tag || "td");
    td.textContent = text;
    tr.appendChild(td);
    return td;
  }

  function renderBoard(snap, now) {
    var body = document.querySelector("#board tbody");
    var rows = document.createDocumentFragment();
    snap.racers.forEach(function (r, i) {
      var tr = document.createElement("tr");
      tr.dataset.racer = r.id;
      tr.className = r.status + (following === r.id ? " following" : "");
      tr.tabIndex = 0;
      cell(tr, String(r.rank));
      var name = cell(tr, "", "th");
      name.scope = "row";
      var sw = document.createElement("span");
      sw.className = "swatch " + r.kind;
      sw.style.background = colorOf(r, i);
      name.appendChild(sw);
      name.appendChild(document.createTextNode(r.name));
      name.title = r.name;
      cell(tr, r.position ? (r.distance_m / METRES[units]).toFixed(2) + " " + units : "–");
      cell(tr, r.pace_s_per_km ? fmtClock(r.pace_s_per_km * METRES[units] / 1000) + " /" + units : "");
      cell(tr, r.gap_s === null ? "" : (r.gap_s === 0 ? "leader" : "+" + fmtClock(r.gap_s)));
      cell(tr, r.finish_s !== null ? "finished " + fmtClock(r.finish_s) : (r.eta_s !== null ? "in " + fmtClock(r.eta_s) : ""));
      cell(tr, r.position ? fmtAge(r.position.at, now) + (r.status === "stale" ? " (stale)" : "") : "waiting");
      tr.addEventListener("click", function () { follow(r.id); });
      tr.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); follow(r.id); } });
      rows.appendChild(tr);
    });
    body.replaceChildren(rows);
  }

  function renderClock(snap, now) {
    var start = Date.parse(snap.race.starts_at);
    var el = document.getElementById("clock");
    if (snap.race.state === "pre") el.textContent = "Starts in " + fmtClock((start - now) / 1000);
    else if (snap.race.state === "finished") el.textContent = "Finished";
    else el.textContent = "Race time " + fmtClock((now - start) / 1000);
  }

  function renderStale(snap, now) {
    var age = (now - Date.parse(snap.generated_at)) / 1000;
    var banner = document.getElementById("stale");
    var paused = snap.race.state !== "finished" && age > 3 * cfg.interval_s + 5;
    banner.hidden = !paused;
    if (paused) banner.textContent = "Updates paused — last update " + fmtAge(snap.generated_at, now) + ".";
  }

  function render(snap) {
    var now = Date.now();
    snap.racers.forEach(drawRacer);
    renderBoard(snap, now);
    renderClock(snap, now);
    renderStale(snap, now);
    if (following && markers[following]) map.panTo(markers[following].getLatLng());
  }

  function follow(id) {
    following = following === id ? null : id;
    history.replaceState(null, "", following ? "#racer=" + encodeURIComponent(following) : "#");
    if (snapshot) render(snapshot);
  }

  // -- polling: plain GETs the CDN can cache; back off with jitter on errors --
  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }
  function poll() {
    if (document.hidden) return; // resumed by visibilitychange
    fetch("snapshot.json").then(function (res) {
      if (!res.ok) throw new Error("HTTP " + res.status);
      return res.json();
    }).then(function (snap) {
      failures = 0;
      if (!snapshot || snap.seq >= snapshot.seq) snapshot = snap;
      render(snapshot);
      schedule(intervalMs);
    }).catch(function () {
      failures += 1;
      if (snapshot) renderStale(snapshot, Date.now());
      var backoff = Math.min(60000, intervalMs * Math.pow(2, failures));
      schedule(backoff / 2 + Math.random() * backoff / 2);
    });
  }
  document.addEventListener("visibilitychange", function () { if (!document.hidden) schedule(0); });
  setInterval(function () { if (snapshot) { renderClock(snapshot, Date.now()); renderStale(snapshot, Date.now()); } }, 1000);

  var unitButton = document.getElementById("units");
  function showUnits() {
    unitButton.textContent = units === "km" ? "Show miles" : "Show km";
    unitButton.setAttribute("aria-label", units === "km" ? "Show distances in miles" : "Show distances in kilometres");
  }
  unitButton.hidden = false;
  showUnits();
  unitButton.addEventListener("click", function () {
    units = units === "km" ? "mi" : "km";
    localStorage.setItem("racepub.units", units);
    showUnits();
    if (snapshot) render(snapshot);
  });

  var m = /#racer=([^&]+)/.exec(location.hash);
  if (m) following = decodeURIComponent(m[1]);
  document.querySelectorAll(".swatch[data-color]").forEach(function (el) { el.style.background = el.dataset.color; });
  poll();
})();
