// racepub spectator page: polls snapshot.json from the CDN and draws it.
// Data is only ever inserted as text (textContent), never as HTML.
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("race-config").textContent);
  var palette = ["#e4572e", "#17bebb", "#ffc914", "#76b041", "#2e282a", "#8e6c8a", "#3a86ff"];
  var METRES = { km: 1000, mi: 1609.344 };
  var intervalMs = Math.max(1, cfg.interval_s) * 1000;
  var snapshot = null, following = null, failures = 0, timer = null, stalls = 0;
  // A large race (snapshot.field): the followed racer's record comes from its shard.
  var shard = null, shardAt = 0, shardWanted = null;
  // Server clock minus ours: a phone's clock may be off. From Date + Age (a
  // CDN serving a cached or stale-if-error copy sends the origin's Date and
  // how long it has kept it). Both are whole seconds, so while estimates
  // agree the largest is the closest; one that jumps is believed at once.
  var skewMs = null;
  // How long after generated_at the publisher's snapshot is in place: the
  // least seen between generated_at and the origin's Date.
  var lagMs = null;
  var markers = {}, trails = {}, chunkCache = {};
  var units = readUnits();

  function readUnits() {
    var u = null;
    try { u = localStorage.getItem("racepub.units"); } catch (e) { /* private mode */ }
    u = u || cfg.units || "km";
    return METRES[u] ? u : "km";
  }
  function now() { return Date.now() + (skewMs || 0); }

  // -- map -------------------------------------------------------------------
  var map = L.map("map", { zoomSnap: 0.25 });
  var course = L.polyline(cfg.course, { color: "#00572a", weight: 5, opacity: 0.6 }).addTo(map);
  map.fitBounds(course.getBounds(), { padding: [16, 16] });
  // Tiles are decoration: if they fail, the course, markers and trails still show.
  L.tileLayer(cfg.tiles, { attribution: cfg.attribution, maxZoom: 19 }).addTo(map);
  if (cfg.course.length) {
    L.circleMarker(cfg.course[0], { radius: 7, color: "#fff", weight: 2, fillColor: "#00572a", fillOpacity: 1 })
      .bindTooltip("Start").addTo(map);
    L.circleMarker(cfg.course[cfg.course.length - 1], { radius: 7, color: "#fff", weight: 2, fillColor: "#111", fillOpacity: 1 })
      .bindTooltip("Finish").addTo(map);
  }

  function colorOf(r, i) { return r.color || palette[i % palette.length]; }

  function drawRacer(r, i, withTrail) {
    var color = colorOf(r, i);
    if (withTrail) {
      if (!trails[r.id]) trails[r.id] = L.polyline([], { color: color, weight: 3, opacity: 0.85 }).addTo(map);
      var pts = [];
      trackKeys(r).forEach(function (key) {
        if (!chunkCache[key]) fetchChunk(key);
        (chunkCache[key] || []).forEach(function (p) { pts.push([p[0], p[1]]); });
      });
      r.tail.forEach(function (p) { pts.push([p[0], p[1]]); });
      trails[r.id].setLatLngs(pts);
    }
    if (!r.position) return;
    var ll = [r.position.lat, r.position.lon];
    var m = markers[r.id];
    if (!m) {
      if (r.kind === "vehicle") { // a square, not a dot: shape tells vehicles apart, not colour alone
        m = L.marker(ll, { icon: L.divIcon({ className: "vehicle-marker", iconSize: [18, 18] }), keyboard: false });
      } else {
        m = L.circleMarker(ll, { radius: 8, color: "#fff", weight: 2, fillColor: color, fillOpacity: 0.95 });
      }
      m.addTo(map);
      m.bindTooltip(document.createTextNode(r.name)); // a text node: never parsed as HTML
      m.on("click", function () { follow(r.id); });
      markers[r.id] = m;
    }
    m.setLatLng(ll);
    var stale = r.status === "stale";
    if (m.setStyle) m.setStyle({ fillOpacity: stale ? 0.35 : 0.95 });
    else if (m.getElement()) { m.getElement().style.background = color; m.getElement().style.opacity = stale ? 0.45 : 1; }
  }

  // A small race lists the chunk keys; a large one says how many and where.
  function trackKeys(r) {
    if (r.track) return r.track;
    var keys = [];
    for (var n = 0; n < (r.chunks || 0); n++) keys.push(r.track_url.replace("{n}", String(n)));
    return keys;
  }

  function fetchChunk(key) {
    chunkCache[key] = []; // fetched once: chunks never change
    fetch(key).then(function (res) {
      if (!res.ok) throw new Error("HTTP " + res.status);
      return res.json();
    }).then(function (chunk) {
      chunkCache[key] = chunk.points;
      if (snapshot) drawAll(snapshot);
    }).catch(function () { delete chunkCache[key]; });
  }

  // -- formatting ------------------------------------------------------------
  function fmtClock(s) {
    if (s === null || s === undefined) return "";
    s = Math.max(0, Math.round(s));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    var mm = (h ? String(m).padStart(2, "0") : String(m)) + ":" + String(sec).padStart(2, "0");
    return h ? h + ":" + mm : mm;
  }
  function fmtAgo(iso) {
    var s = Math.max(0, Math.round((now() - Date.parse(iso)) / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    return Math.floor(s / 3600) + " h ago";
  }
  function fmtDistance(m) { return (m / METRES[units]).toFixed(2) + " " + units; }
  function fmtPace(sPerKm) { return sPerKm ? fmtClock(sPerKm * METRES[units] / 1000) + " /" + units : ""; }
  function fmtGap(s) { return s === null || s === undefined ? "" : (s === 0 ? "leader" : "+" + fmtClock(s)); }
  function fmtEta(r) {
    if (r.finish_s !== null) return "finished " + fmtClock(r.finish_s);
    return r.eta_s !== null && r.status === "racing" ? "in " + fmtClock(r.eta_s) : "";
  }
  function fmtFix(r) {
    if (!r.position) return "waiting";
    return fmtAgo(r.position.at);
  }

  // -- leaderboard -----------------------------------------------------------
  function cell(tr, text, cls, tag) {
    var td = document.createElement(tag || "td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.appendChild(td);
    return td;
  }

  function renderBoard(snap, racers) {
    var rows = document.createDocumentFragment();
    racers.forEach(function (r, i) {
      if (i > 0 && r.rank > racers[i - 1].rank + 1) { // a large race: the followed racer, below the head
        var gap = document.createElement("tr");
        gap.className = "more";
        cell(gap, "⋮").colSpan = 7;
        rows.appendChild(gap);
      }
      var tr = document.createElement("tr");
      tr.dataset.racer = r.id;
      tr.className = r.status + (following === r.id ? " following" : "");
      tr.tabIndex = 0;
      tr.setAttribute("aria-selected", following === r.id ? "true" : "false");
      cell(tr, String(r.rank));
      var name = cell(tr, "", null, "th");
      name.scope = "row";
      name.title = r.name;
      var sw = document.createElement("span");
      sw.className = "swatch " + r.kind;
      sw.style.background = colorOf(r, i);
      name.appendChild(sw);
      var label = document.createElement("span");
      label.className = "name";
      label.textContent = r.name;
      name.appendChild(label);
      var sub = document.createElement("span");
      sub.className = "sub";
      sub.textContent = fmtFix(r);
      name.appendChild(sub);
      cell(tr, r.position ? fmtDistance(r.distance_m) : "–");
      cell(tr, fmtPace(r.pace_s_per_km), "opt");
      cell(tr, fmtGap(r.gap_s));
      cell(tr, fmtEta(r));
      cell(tr, fmtFix(r) + (r.status === "stale" ? " (stale)" : ""), "opt");
      tr.addEventListener("click", function () { follow(r.id); });
      tr.addEventListener("keydown", function (e) {
        if (e.key === "Enter" || e.key === " ") { e.preventDefault(); follow(r.id); }
      });
      rows.appendChild(tr);
    });
    var body = document.querySelector("#board tbody");
    var focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.racer : null;
    body.replaceChildren(rows);
    if (focused) { // keep keyboard focus on the same racer across redraws
      var again = body.querySelector('tr[data-racer="' + CSS.escape(focused) + '"]');
      if (again) again.focus();
    }
    document.getElementById("board-title").textContent = snap.race.state === "finished" ? "Results" : "Leaderboard";
    var field = snap.field;
    document.getElementById("field").hidden = !field;
    if (field) {
      var by = field.by_status;
      document.getElementById("field-count").textContent = "The leaders of " + field.count.toLocaleString() +
        " racers (" + by.racing.toLocaleString() + " racing, " + by.finished.toLocaleString() + " finished)." +
        " A followed racer updates every " + Math.max(field.shard_every_s, cfg.interval_s) + " s or so.";
    }
  }

  function renderClock(snap) {
    var start = Date.parse(snap.race.starts_at);
    var el = document.getElementById("clock");
    if (snap.race.state === "finished") el.textContent = "Finished";
    else if (now() < start) el.textContent = "Starts in " + fmtClock((start - now()) / 1000);
    else el.textContent = "Race time " + fmtClock((now() - start) / 1000);
  }

  function renderFreshness(snap) {
    var age = (now() - Date.parse(snap.generated_at)) / 1000;
    var banner = document.getElementById("stale");
    var paused = snap.race.state !== "finished" && age > 3 * cfg.interval_s + 2;
    banner.hidden = !paused;
    if (paused) banner.textContent = "Updates paused — last update " + fmtAgo(snap.generated_at) + ".";
  }

  function renderFollow(snap, racers) {
    var btn = document.getElementById("unfollow");
    var r = racers.filter(function (x) { return x.id === following; })[0];
    btn.hidden = !following;
    if (following) btn.textContent = (r ? "Following " + r.name : "Finding " + following + "…") + " ✕";
    var msg = document.getElementById("find-msg");
    if (msg) msg.textContent = following && !r && shard && shardWanted === null ? "No racer " + following + " in this race." : "";
    if (r && markers[r.id]) map.panTo(markers[r.id].getLatLng(), { animate: false });
  }

  // The rows and markers shown: every racer of a small race; for a large one
  // the head, and the followed racer from whichever copy is newer.
  function shown(snap) {
    if (!snap.field || !following) return snap.racers;
    var inHead = snap.racers.some(function (x) { return x.id === following; });
    if (inHead) return snap.racers;
    var mine = shard ? shard.racers.filter(function (x) { return x.id === following; })[0] : null;
    return mine ? snap.racers.concat([mine]) : snap.racers;
  }

  function drawAll(snap) {
    var racers = shown(snap);
    var keep = {};
    racers.forEach(function (r, i) {
      keep[r.id] = true;
      drawRacer(r, i, !snap.field || r.id === following);
    });
    // The head of a large race changes: markers and trails of those who left it go.
    Object.keys(markers).forEach(function (id) {
      if (!keep[id]) { map.removeLayer(markers[id]); delete markers[id]; }
    });
    Object.keys(trails).forEach(function (id) {
      if (!keep[id] || (snap.field && id !== following)) { map.removeLayer(trails[id]); delete trails[id]; }
    });
    renderBoard(snap, racers);
    renderClock(snap);
    renderFreshness(snap);
    renderFollow(snap, racers);
  }

  function follow(id) {
    following = following === id ? null : id;
    history.replaceState(null, "", following ? "#racer=" + encodeURIComponent(following) : location.pathname);
    if (snapshot && snapshot.field) pollShard(true);
    if (snapshot) drawAll(snapshot);
  }

  // FNV-1a (32-bit) of the id's UTF-8 bytes: the publisher's shard_of().
  function fnv1a(text) {
    var bytes = new TextEncoder().encode(text), h = 0x811c9dc5;
    for (var i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193) >>> 0;
    return h;
  }

  // The followed racer's shard: one small object, fetched no more often than
  // it is rewritten (field.shard_every_s), and never for racers in the head.
  function pollShard(force) {
    var field = snapshot && snapshot.field;
    if (!field || !following) return;
    var n = fnv1a(following) % field.shards;
    var due = force || !shard || shard.shard !== n || Date.now() - shardAt >= 1000 * Math.max(field.shard_every_s, cfg.interval_s);
    if (!due || shardWanted === n) return;
    shardWanted = n;
    fetch(field.shard_url.replace("{shard}", String(n))).then(function (res) {
      if (!res.ok) throw new Error("HTTP " + res.status);
      return res.json();
    }).then(function (doc) {
      shardWanted = null;
      if (!shard || shard.shard !== doc.shard || doc.seq >= shard.seq) shard = doc;
      shardAt = Date.now();
      if (snapshot) drawAll(snapshot);
    }).catch(function () { shardWanted = null; });
  }
  document.getElementById("unfollow").addEventListener("click", function () { follow(following); });

  // -- polling: plain GETs the CDN can cache; back off with jitter on errors --
  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(poll, ms);
  }
  function header(res, name) { return res.headers.get(name) || ""; }

  function learnClock(res) {
    var date = Date.parse(header(res, "Date"));
    if (isNaN(date)) return;
    var sample = date + (parseFloat(header(res, "Age")) || 0) * 1000 - Date.now();
    skewMs = skewMs !== null && Math.abs(sample - skewMs) < 1500 ? Math.max(sample, skewMs) : sample;
  }

  // When the next snapshot can first be had: just after the publisher has
  // written it (generated_at + interval + its usual lag). Polling then, not
  // on a timer of our own, shows each publish about a lag old, with one
  // request per interval; every spectator asking then also keeps the CDN's
  // copies in phase with publishing (its copy expires just before the next).
  function nextPollMs(res, snap) {
    var date = Date.parse(header(res, "Date"));
    var generated = Date.parse(snap.generated_at);
    if (isNaN(generated)) return intervalMs;
    if (!isNaN(date) && !parseFloat(header(res, "Age"))) { // fresh from the origin
      var lag = Math.max(0, date - generated);
      lagMs = lagMs === null ? lag : Math.min(lagMs, lag);
    }
    // The publisher says how long its last snapshot took to be in place;
    // else the least Date - generated_at seen (whole seconds: a rough guess).
    var lag = typeof snap.publish_lag_s === "number" ? 1000 * snap.publish_lag_s : (lagMs || 0);
    var due = generated + intervalMs + Math.min(lag, intervalMs) + 250 +
      Math.random() * intervalMs / 10;
    return Math.min(Math.max(due - now(), 250), 2 * intervalMs);
  }

  // No news in a poll: the CDN's copy is still within its max-age (it may
  // be kept that much longer), or the publisher is late (ask again soon).
  function retryMs(res) {
    var age = parseFloat(header(res, "Age"));
    var ttl = /s-maxage=(\d+)/.exec(header(res, "Cache-Control")) ||
      /max-age=(\d+)/.exec(header(res, "Cache-Control"));
    if (age > 0 && ttl && age < parseInt(ttl[1], 10)) {
      return (parseInt(ttl[1], 10) - age) * 1000 + 100;
    }
    return Math.min(intervalMs, intervalMs / 4 * Math.pow(2, stalls - 1));
  }

  function poll() {
    if (document.hidden) return; // resumed by visibilitychange
    var res = null;
    // no-cache: the browser asks (conditionally) every time rather than
    // reuse its own copy; the CDN still answers from its cache.
    fetch("snapshot.json", { cache: "no-cache" }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      res = r;
      learnClock(r);
      return r.json();
    }).then(function (snap) {
      failures = 0;
      var news = !snapshot || snap.seq > snapshot.seq;
      if (!snapshot || snap.seq >= snapshot.seq) snapshot = snap; // never step back to an older copy
      drawAll(snapshot);
      pollShard(false);
      stalls = news ? 0 : stalls + 1;
      schedule(news ? nextPollMs(res, snap) : retryMs(res));
    }).catch(function () {
      failures += 1;
      if (snapshot) renderFreshness(snapshot);
      // Exponential backoff with full jitter: a CDN hiccup must not synchronise everyone.
      var ceiling = Math.min(60000, intervalMs * Math.pow(2, failures));
      schedule(intervalMs + Math.random() * ceiling);
    });
  }
  document.addEventListener("visibilitychange", function () {
    if (document.hidden) clearTimeout(timer);
    else schedule(0);
  });
  setInterval(function () { if (snapshot) { renderClock(snapshot); renderFreshness(snapshot); } }, 1000);

  // -- units -----------------------------------------------------------------
  var unitButton = document.getElementById("units");
  function showUnits() {
    unitButton.textContent = units === "km" ? "Miles" : "Kilometres";
    unitButton.setAttribute("aria-label", units === "km" ? "Show distances in miles" : "Show distances in kilometres");
  }
  unitButton.hidden = false;
  showUnits();
  unitButton.addEventListener("click", function () {
    units = units === "km" ? "mi" : "km";
    try { localStorage.setItem("racepub.units", units); } catch (e) { /* private mode */ }
    showUnits();
    if (snapshot) drawAll(snapshot);
  });

  var find = document.getElementById("find");
  find.addEventListener("submit", function (e) {
    e.preventDefault();
    var id = document.getElementById("find-id").value.trim();
    if (id && id !== following) follow(id);
  });

  var m = /#racer=([^&]+)/.exec(location.hash);
  if (m) {
    try { following = decodeURIComponent(m[1]); } catch (e) { following = null; } // a mangled link
  }
  document.querySelectorAll(".swatch[data-color]").forEach(function (el) { el.style.background = el.dataset.color; });
  poll();
})();
