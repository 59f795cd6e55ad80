// racepub spectator page: polls snapshot.json from the CDN and draws it.
// Data is only ever inserted as text (textContent), never as HTML.
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("race-config").textContent);
  var palette = ["#e4572e", "#17bebb", "#ffc914", "#76b041", "#2e282a", "#8e6c8a", "#3a86ff"];
  var METRES = { km: 1000, mi: 1609.344 };
  var intervalMs = Math.max(1, cfg.interval_s) * 1000;
  var snapshot = null, following = null, failures = 0, timer = null, stalls = 0;
  // A large race (snapshot.field, DESIGN.md "Large races"): the followed
  // racer's record comes from its live shard every poll; its trail from
  // range reads of the packs its trail group lists.
  var big = {
    rosters: {},      // shard number -> roster (immutable): ids, names, kinds, colors
    wanted: {},       // objects being fetched, by URL
    record: null,     // the followed racer's live record, built from shard columns
    missing: false,   // the followed id is in no roster
    trails: {},       // racer id -> {refs: [[pack, offset, length]], at}: from their trail group
    pieces: {},       // "pack@offset" -> points ([lat, lon, s after t0]); immutable
    live: [],         // positions seen since, as [lat, lon, s after t0]
  };
  var density = null; // the field overview: the course coloured by crowding
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
  if (cfg.basemap && window.pmtiles) {
    // The race's own basemap, read from this origin by range requests.
    var archive = new pmtiles.PMTiles(new URL(cfg.basemap.url, location.href).href);
    pmtiles.leafletRasterLayer(archive, {
      attribution: cfg.basemap.attribution || cfg.attribution, maxZoom: 19,
      minNativeZoom: cfg.basemap.min_zoom, maxNativeZoom: cfg.basemap.max_zoom,
      bounds: L.latLngBounds([cfg.basemap.bounds[1], cfg.basemap.bounds[0]],
                             [cfg.basemap.bounds[3], cfg.basemap.bounds[2]])
    }).addTo(map);
  } else {
    L.tileLayer(cfg.tiles, { attribution: cfg.attribution, maxZoom: 19 }).addTo(map);
  }
  if (cfg.course.length) {
    L.circleMarker(cfg.course[0], { radius: 7, color: "#fff", weight: 2, fillColor: "#00572a", fillOpacity: 1 })
      .bindTooltip("Start").addTo(map);
    L.circleMarker(cfg.course[cfg.course.length - 1], { radius: 7, color: "#fff", weight: 2, fillColor: "#111", fillOpacity: 1 })
      .bindTooltip("Finish").addTo(map);
  }

  // By id, not by place: a racer who overtakes keeps their colour.
  function colorOf(r) { return r.color || palette[fnv1a(r.id) % palette.length]; }

  function drawRacer(r, i, withTrail) {
    var color = colorOf(r);
    if (withTrail) {
      if (!trails[r.id]) trails[r.id] = L.polyline([], { color: color, weight: 3, opacity: 0.85 }).addTo(map);
      var pts = snapshot && snapshot.field ? followedTrail() : [];
      if (!snapshot || !snapshot.field) trackKeys(r).forEach(function (key) {
        if (!chunkCache[key]) fetchChunk(key);
        (chunkCache[key] || []).forEach(function (p) { pts.push([p[0], p[1]]); });
      });
      (r.tail || []).forEach(function (p) { pts.push([p[0], p[1]]); });
      if (replay) pts = replayTrail(r.id);
      trails[r.id].setLatLngs(pts);
    }
    if (!r.position) { // not started (at the replayed moment): no marker
      if (markers[r.id]) { map.removeLayer(markers[r.id]); delete markers[r.id]; }
      return;
    }
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

  function trackKeys(r) { return r.track || []; }

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
  function fmtGap(r) {
    if (r.rank === 1 && r.status !== "waiting") return "leader";
    return r.gap_s === null || r.gap_s === undefined ? "" : "+" + fmtClock(r.gap_s);
  }
  function fmtEta(r) {
    if (r.finish_s !== null) return "finished " + fmtClock(r.finish_s);
    return r.eta_s !== null && r.status === "racing" ? "in " + fmtClock(r.eta_s) : "";
  }
  function fmtFix(r) {
    if (!r.position) return "waiting";
    if (replay) return "";
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
      sw.style.background = colorOf(r);
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
      cell(tr, fmtGap(r));
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
        " The course is shaded by how many are on each stretch.";
    }
  }

  function renderClock(snap) {
    var start = Date.parse(snap.race.starts_at);
    var el = document.getElementById("clock");
    if (replay) el.textContent = "Replay " + fmtClock((replay.t - start) / 1000);
    else if (snap.race.state === "finished") el.textContent = "Finished";
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
    if (msg && following) msg.textContent = big.missing ? "No racer " + following + " in this race." : "";
    if (r && markers[r.id]) map.panTo(markers[r.id].getLatLng(), { animate: false });
    document.getElementById("gpx").hidden = !r || !r.position;
    renderSplits(r);
    placeOnProfile(r || racers[0]);
  }

  // -- replay: every racer shown (a large race: the head and the followed) as
  // the published chunks put them at a chosen moment, the board as it was then --
  var replay = null; // null: live; else {t: ms, playing: bool, speed: 1 | 10 | 60}
  var course = (function () { // the course in metres, for progress along it
    var c = cfg.course, lat0 = c.length ? c[0][0] : 0, lon0 = c.length ? c[0][1] : 0;
    var ky = 111195, kx = ky * Math.cos(lat0 * Math.PI / 180), xy = [], cum = [0];
    c.forEach(function (p, i) {
      xy.push([(p[1] - lon0) * kx, (p[0] - lat0) * ky]);
      if (i) cum.push(cum[i - 1] + Math.hypot(xy[i][0] - xy[i - 1][0], xy[i][1] - xy[i - 1][1]));
    });
    return { xy: xy, cum: cum, kx: kx, ky: ky, lat0: lat0, lon0: lon0 };
  })();
  // Progress along the course of a point, searched near the racer's last (hint).
  function progressOf(lat, lon, hint) {
    var x = (lon - course.lon0) * course.kx, y = (lat - course.lat0) * course.ky;
    var best = Infinity, at = 0, from = hint === null ? 0 : hint, k;
    for (k = Math.max(0, from - 2); k < course.xy.length - 1; k++) {
      if (hint !== null && course.cum[k] > course.cum[from] + 2000) break; // far ahead
      var a = course.xy[k], b = course.xy[k + 1], dx = b[0] - a[0], dy = b[1] - a[1];
      var len2 = dx * dx + dy * dy, f = len2 ? ((x - a[0]) * dx + (y - a[1]) * dy) / len2 : 0;
      f = Math.max(0, Math.min(1, f));
      var off = Math.hypot(a[0] + f * dx - x, a[1] + f * dy - y);
      if (off < best) { best = off; at = k + f; }
    }
    var i = Math.floor(at);
    return { seg: i, d: course.cum[i] + (at - i) * ((course.cum[i + 1] || course.cum[i]) - course.cum[i]) };
  }
  var replayTracks = {}; // racer id -> {n, t[], lat[], lon[], d[]}, rebuilt when their points change
  function replayTrack(r) {
    var pts = trackPoints(r), have = replayTracks[r.id];
    if (have && have.n === pts.length) return have;
    var tr = { n: pts.length, t: [], lat: [], lon: [], d: [] }, hint = null, best = 0;
    pts.forEach(function (p) {
      var got = progressOf(p[0], p[1], hint);
      hint = got.seg;
      best = Math.max(best, got.d); // progress never goes back
      tr.t.push(p[2]); tr.lat.push(p[0]); tr.lon.push(p[1]); tr.d.push(best);
    });
    replayTracks[r.id] = tr;
    return tr;
  }
  function lastBefore(arr, v) { // the last index with arr[i] <= v, or -1
    var lo = 0, hi = arr.length - 1, ans = -1;
    while (lo <= hi) { var mid = (lo + hi) >> 1; if (arr[mid] <= v) { ans = mid; lo = mid + 1; } else hi = mid - 1; }
    return ans;
  }
  function replayTrail(id) {
    var tr = replayTracks[id], pts = [];
    if (!tr) return pts;
    var k = lastBefore(tr.t, replay.t);
    for (var i = 0; i <= k; i++) pts.push([tr.lat[i], tr.lon[i]]);
    return pts;
  }
  // The records as they were at replay.t: position and progress interpolated
  // between the fixes either side, ranked as the publisher ranks.
  function replayRacers(snap) {
    var T = replay.t, start = Date.parse(snap.race.starts_at);
    var out = shown(snap).map(function (r) {
      var tr = replayTrack(r), k = lastBefore(tr.t, T);
      var rec = { id: r.id, name: r.name, kind: r.kind, color: r.color, status: "waiting",
                  position: null, distance_m: 0, pace_s_per_km: null, gap_s: null, eta_s: null,
                  finish_s: null, tail: [], track: [], _tr: tr,
                  splits: (r.splits || []).map(function (sp) { // only those reached by then
                    return sp.at_s !== null && start + 1000 * sp.at_s <= T ? sp : Object.assign({}, sp, { at_s: null });
                  }) };
      if (k < 0) return rec;
      var f = k + 1 < tr.n && tr.t[k + 1] > tr.t[k] ? (T - tr.t[k]) / (tr.t[k + 1] - tr.t[k]) : 0;
      var j = Math.min(k + 1, tr.n - 1);
      rec.position = { lat: tr.lat[k] + (tr.lat[j] - tr.lat[k]) * f, lon: tr.lon[k] + (tr.lon[j] - tr.lon[k]) * f,
                       at: new Date(tr.t[k]).toISOString() };
      rec.distance_m = tr.d[k] + (tr.d[j] - tr.d[k]) * f;
      rec.status = "racing";
      if (r.finish_s !== null && start + 1000 * r.finish_s <= T) { rec.status = "finished"; rec.finish_s = r.finish_s; }
      var back = lastBefore(tr.t, T - 1000 * cfg.pace_window_s);
      if (back >= 0 && tr.d[k] > tr.d[back]) rec.pace_s_per_km = 1000 * (tr.t[k] - tr.t[back]) / 1000 / (tr.d[k] - tr.d[back]);
      return rec;
    });
    var order = { finished: 0, racing: 1, waiting: 2 };
    out.sort(function (a, b) {
      return order[a.status] - order[b.status] || (a.status === "finished" ? a.finish_s - b.finish_s : b.distance_m - a.distance_m);
    });
    var leader = out[0];
    out.forEach(function (r, i) {
      r.rank = i + 1;
      if (r.status === "finished") r.gap_s = r.finish_s - leader.finish_s;
      else if (r.status === "racing" && leader && leader.status !== "waiting") {
        var lt = leader._tr, m = lastBefore(lt.d, r.distance_m); // when the leader was here
        if (m >= 0) r.gap_s = Math.max(0, (T - lt.t[m]) / 1000);
      }
    });
    return out;
  }
  var replayBox = document.getElementById("replay"), scrub = document.getElementById("replay-at");
  function replayEnd(snap) { // the last moment there is to replay: now, or the race's end
    return Math.min(now(), Date.parse(snap.generated_at));
  }
  function setReplay(t) {
    if (!snapshot) return;
    var start = Date.parse(snapshot.race.starts_at), end = replayEnd(snapshot);
    if (t >= end) { stopReplay(); return; }
    replay = replay || { playing: false, speed: 1 };
    replay.t = Math.max(start, t);
    // A large race: the trails of those shown, read from the packs once each.
    if (snapshot.field) loadTrails(shown(snapshot).map(function (r) { return r.id; }));
    scrub.max = String(Math.round((end - start) / 1000));
    scrub.value = String(Math.round((replay.t - start) / 1000));
    document.getElementById("replay-live").disabled = false;
    drawAll(snapshot);
  }
  function stopReplay() {
    replay = null;
    document.getElementById("replay-play").textContent = "Play";
    document.getElementById("replay-live").disabled = true;
    if (snapshot) {
      var start = Date.parse(snapshot.race.starts_at);
      scrub.max = scrub.value = String(Math.round((replayEnd(snapshot) - start) / 1000));
      drawAll(snapshot);
    }
  }
  scrub.addEventListener("input", function () {
    if (snapshot) setReplay(Date.parse(snapshot.race.starts_at) + 1000 * Number(scrub.value));
  });
  document.getElementById("replay-play").addEventListener("click", function () {
    if (!snapshot) return;
    if (!replay) setReplay(Date.parse(snapshot.race.starts_at));
    if (!replay) return;
    replay.playing = !replay.playing;
    this.textContent = replay.playing ? "Pause" : "Play";
  });
  document.getElementById("replay-speed").addEventListener("change", function () {
    if (replay) replay.speed = Number(this.value);
  });
  document.getElementById("replay-live").addEventListener("click", stopReplay);
  setInterval(function () { // playing: 4 steps a second
    if (replay && replay.playing) {
      replay.speed = Number(document.getElementById("replay-speed").value);
      setReplay(replay.t + 250 * replay.speed);
    }
  }, 250);

  // -- the elevation profile (courses with elevation) -------------------------
  // Plain SVG: the ground, the start, checkpoints and finish as ticks, and
  // a dot for the followed racer (else the leader) at their distance.
  var SVG = "http://www.w3.org/2000/svg", profileDot = null, scale = {};
  function svg(tag, attrs, parent) {
    var el = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    parent.appendChild(el);
    return el;
  }
  function drawProfile() {
    var prof = cfg.profile;
    if (!prof || prof.length < 2) return;
    var box = document.getElementById("profile-svg"), W = 300, H = 64;
    var lo = Math.min.apply(null, prof.map(function (p) { return p[1]; }));
    var hi = Math.max.apply(null, prof.map(function (p) { return p[1]; }));
    var span = Math.max(hi - lo, 10), len = prof[prof.length - 1][0] || 1;
    scale.x = function (d) { return (W * d / len).toFixed(1); };
    scale.y = function (e) { return (H - 4 - (H - 10) * (e - lo) / span).toFixed(1); };
    var d = "M0," + H + prof.map(function (p) { return "L" + scale.x(p[0]) + "," + scale.y(p[1]); }).join("") + "L" + W + "," + H + "Z";
    svg("path", { d: d, "class": "ground" }, box);
    [0, len].concat(cfg.checkpoints.map(function (c) { return c[1]; })).forEach(function (at) {
      svg("line", { x1: scale.x(at), x2: scale.x(at), y1: 0, y2: H, "class": "tick" }, box);
    });
    profileDot = svg("circle", { r: 3, cx: -10, cy: -10, "class": "who" }, box);
    document.getElementById("profile-cap").textContent = "Elevation " + Math.round(lo) + "–" +
      Math.round(hi) + " m" + (cfg.checkpoints.length ? "; ticks: start, checkpoints, finish" : "");
    document.getElementById("profile").hidden = false;
  }
  function placeOnProfile(r) {
    if (!profileDot || !r || !r.position) { if (profileDot) profileDot.setAttribute("cx", -10); return; }
    var prof = cfg.profile, d = r.distance_m, k = 1;
    while (k < prof.length - 1 && prof[k][0] < d) k++;
    var a = prof[k - 1], b = prof[k], f = b[0] > a[0] ? Math.min(1, Math.max(0, (d - a[0]) / (b[0] - a[0]))) : 0;
    profileDot.setAttribute("cx", scale.x(d));
    profileDot.setAttribute("cy", scale.y(a[1] + (b[1] - a[1]) * f));
    profileDot.setAttribute("fill", colorOf(r));
  }

  // -- a followed racer's track as GPX, made in the browser from what the
  // page already has (chunks and tail, or a large race's pack pieces) --------
  function xmlText(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;" }[c];
    });
  }
  function trackPoints(r) {
    var out = [], start = Date.parse(snapshot.race.starts_at), last = -Infinity;
    function add(lat, lon, ms) { if (ms > last) { out.push([lat, lon, ms]); last = ms; } }
    if (snapshot.field) {
      (big.trails[r.id] ? big.trails[r.id].refs : []).forEach(function (ref) {
        var got = big.pieces[ref[0] + "@" + ref[1]];
        if (Array.isArray(got)) got.forEach(function (p) { add(p[0], p[1], start + 1000 * p[2]); });
      });
      if (r.id === following) big.live.forEach(function (p) { add(p[0], p[1], start + 1000 * p[2]); });
    } else {
      trackKeys(r).forEach(function (key) {
        (chunkCache[key] || []).forEach(function (p) { add(p[0], p[1], Date.parse(p[2])); });
      });
      (r.tail || []).forEach(function (p) { add(p[0], p[1], Date.parse(p[2])); });
    }
    return out;
  }
  function downloadGpx() {
    var r = shown(snapshot).filter(function (x) { return x.id === following; })[0];
    if (!r) return;
    var pts = trackPoints(r).map(function (p) {
      return '   <trkpt lat="' + p[0] + '" lon="' + p[1] + '"><time>' + new Date(p[2]).toISOString() + "</time></trkpt>";
    });
    var gpx = '<?xml version="1.0" encoding="UTF-8"?>\n' +
      '<gpx version="1.1" creator="racepub" xmlns="http://www.topografix.com/GPX/1/1">\n' +
      " <metadata><name>" + xmlText(snapshot.race.title) + "</name></metadata>\n" +
      " <trk><name>" + xmlText(r.name) + "</name>" +
      (r.finish_s !== null ? "<desc>finished in " + fmtClock(r.finish_s) + "</desc>" : "") + "\n  <trkseg>\n" +
      pts.join("\n") + "\n  </trkseg>\n </trk>\n</gpx>\n";
    var url = URL.createObjectURL(new Blob([gpx], { type: "application/gpx+xml" }));
    var a = document.createElement("a");
    a.href = url;
    a.download = (snapshot.race.id + "-" + r.id).replace(/[^A-Za-z0-9_.-]+/g, "_") + ".gpx";
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
  }
  document.getElementById("gpx").addEventListener("click", downloadGpx);

  // The followed racer's time at each checkpoint (record.splits), if the race has any.
  function renderSplits(r) {
    var box = document.getElementById("splits");
    box.hidden = !(r && r.splits && r.splits.length);
    if (box.hidden) return;
    document.getElementById("splits-title").textContent = "Splits — " + r.name;
    var rows = document.createDocumentFragment();
    var prevAt = 0, prevD = 0;
    r.splits.forEach(function (s) {
      var tr = document.createElement("tr");
      cell(tr, s.name, null, "th").scope = "row";
      cell(tr, fmtDistance(s.distance_m));
      cell(tr, s.at_s === null ? "–" : fmtClock(s.at_s));
      // The pace over the stretch since the previous split.
      var pace = s.at_s !== null && prevAt !== null && s.distance_m > prevD ?
        1000 * (s.at_s - prevAt) / (s.distance_m - prevD) : null;
      cell(tr, pace === null ? "" : fmtPace(pace));
      prevAt = s.at_s; prevD = s.distance_m;
      rows.appendChild(tr);
    });
    box.querySelector("tbody").replaceChildren(rows);
  }

  // The rows and markers shown: every racer of a small race; for a large one
  // the head, with the followed racer's live record in place of (or below) theirs.
  function shown(snap) {
    if (!snap.field || !following) return snap.racers;
    var mine = big.record && big.record.id === following ? big.record : null;
    if (!mine) return snap.racers;
    var inHead = snap.racers.some(function (x) { return x.id === mine.id; });
    return inHead ? snap.racers : snap.racers.concat([mine]);
  }

  function drawAll(snap) {
    var racers = replay ? replayRacers(snap) : shown(snap);
    var keep = {};
    racers.forEach(function (r, i) {
      keep[r.id] = true;
      drawRacer(r, i, !!replay || !snap.field || r.id === following);
    });
    // The head of a large race changes: markers and trails of those who left it go.
    Object.keys(markers).forEach(function (id) {
      if (!keep[id]) { map.removeLayer(markers[id]); delete markers[id]; }
    });
    Object.keys(trails).forEach(function (id) {
      if (!keep[id] || (snap.field && !replay && id !== following)) { map.removeLayer(trails[id]); delete trails[id]; }
    });
    if (snap.field) drawDensity(snap.field.density);
    replayBox.hidden = snap.race.state === "pre";
    if (!replay) {
      var start = Date.parse(snap.race.starts_at);
      scrub.max = scrub.value = String(Math.max(0, Math.round((replayEnd(snap) - start) / 1000)));
    }
    renderBoard(snap, racers);
    renderClock(snap);
    renderFreshness(snap);
    renderFollow(snap, racers);
  }

  function follow(id) {
    following = following === id ? null : id;
    history.replaceState(null, "", following ? "#racer=" + encodeURIComponent(following) : location.pathname);
    big.record = null; big.missing = false; big.live = [];
    if (snapshot && snapshot.field) pollFollowed();
    if (snapshot) drawAll(snapshot);
  }

  // -- a large race: following one racer of many ------------------------------
  // FNV-1a (32-bit) of the id's UTF-8 bytes: the publisher's shard_of().
  function fnv1a(text) {
    var bytes = new TextEncoder().encode(text), h = 0x811c9dc5;
    for (var i = 0; i < bytes.length; i++) h = Math.imul(h ^ bytes[i], 0x01000193) >>> 0;
    return h;
  }

  // One fetch per URL at a time; JSON, or gzip members read by byte range.
  function getJSON(url, opts) {
    if (big.wanted[url]) return Promise.reject(new Error("already asked"));
    big.wanted[url] = true;
    return fetch(url, opts).then(function (res) {
      if (!res.ok) throw new Error("HTTP " + res.status);
      return res.json();
    }).finally(function () { delete big.wanted[url]; });
  }
  function getPiece(pack, at, length) {
    var want = { headers: { Range: "bytes=" + at + "-" + (at + length - 1) } };
    return fetch(pack, want).then(function (res) {
      if (res.status !== 206 && res.status !== 200) throw new Error("HTTP " + res.status);
      return res.arrayBuffer().then(function (buf) {
        if (res.status === 200) buf = buf.slice(at, at + length); // a server that ignores Range
        var text = new Response(new Blob([buf]).stream().pipeThrough(new DecompressionStream("gzip")));
        return text.json();
      });
    });
  }

  function recordOf(roster, doc, j) {
    var statuses = ["finished", "racing", "stale", "waiting"];
    var r = {
      id: roster.ids[j], name: roster.names[j], kind: roster.kinds[j], color: roster.colors[j],
      rank: doc.rank[j], status: statuses[doc.status[j]], distance_m: doc.distance_m[j] || 0,
      pace_s_per_km: doc.pace_s_per_km[j], gap_s: doc.gap_s[j], eta_s: doc.eta_s[j],
      finish_s: doc.finish_s[j], position: null, tail: [], track: [],
    };
    if (doc.lat_e6[j] !== null) {
      var at = Date.parse(doc.generated_at) - doc.age_ms[j];
      r.position = { lat: doc.lat0 + doc.lat_e6[j] / 1e6, lon: doc.lon0 + doc.lon_e6[j] / 1e6,
                     at: new Date(at).toISOString() };
    }
    return r;
  }

  // Every poll: the followed racer's live shard (a few KB, fresh each cycle);
  // its roster once; its trail group when due (rewritten every trail_every_s).
  function pollFollowed() {
    var field = snapshot && snapshot.field;
    if (!field || !following) return;
    var id = following, n = fnv1a(id) % field.shards;
    var roster = big.rosters[n];
    if (!roster) {
      getJSON(field.roster_url.replace("{shard}", String(n))).then(function (doc) {
        big.rosters[n] = doc;
        pollFollowed();
      }).catch(function () { /* asked again next poll */ });
      return;
    }
    var j = roster.ids.indexOf(id);
    big.missing = j < 0;
    if (j < 0) { if (snapshot) drawAll(snapshot); return; }
    getJSON(field.shard_url.replace("{shard}", String(n)), { cache: "no-cache" }).then(function (doc) {
      if (following !== id) return;
      var rec = recordOf(roster, doc, j);
      if (big.record && big.record.seq > doc.seq) return; // never step back to an older copy
      rec.seq = doc.seq;
      big.record = rec;
      if (rec.position) {
        var s = (Date.parse(rec.position.at) - Date.parse(snapshot.race.starts_at)) / 1000;
        var last = big.live[big.live.length - 1];
        if (!last || s > last[2]) big.live.push([rec.position.lat, rec.position.lon, s]);
      }
      drawAll(snapshot);
    }).catch(function () { /* asked again next poll */ });
    loadTrails([id]);
  }

  // Racers' trails (the followed one; in a replay, all shown): their trail
  // groups, fetched again once trail_every_s / 3 old (the recent trail is
  // rewritten every trail_every_s); then each piece of the packs they list,
  // once (immutable).
  function loadTrails(ids) {
    var field = snapshot && snapshot.field, byUrl = {};
    if (!field) return;
    ids.forEach(function (id) {
      var have = big.trails[id];
      if (have && Date.now() - have.at < 1000 * field.trail_every_s / 3) return;
      var url = field.trail_url.replace("{trail}", String(fnv1a(id) % field.trails));
      (byUrl[url] = byUrl[url] || []).push(id);
    });
    Object.keys(byUrl).forEach(function (url) {
      getJSON(url, { cache: "no-cache" }).then(function (doc) {
        byUrl[url].forEach(function (id) {
          var k = doc.ids.indexOf(id);
          if (k < 0) return;
          var refs = doc.chunks[k].slice();
          if (doc.recent[k]) refs.push(doc.recent[k]);
          big.trails[id] = { at: Date.now(), refs: refs.map(function (ref) {
            return [doc.packs[ref[0]], ref[1], ref[2]]; }) };
          big.trails[id].refs.forEach(loadPiece);
        });
        if (snapshot) drawAll(snapshot);
      }).catch(function () { /* asked again next time */ });
    });
  }
  function loadPiece(ref) {
    var key = ref[0] + "@" + ref[1];
    if (big.pieces[key]) return;
    big.pieces[key] = "asked";
    getPiece(ref[0], ref[1], ref[2]).then(function (piece) {
      big.pieces[key] = piece.points;
      if (snapshot) drawAll(snapshot);
    }).catch(function () { delete big.pieces[key]; });
  }

  // The followed racer's trail: chunks and recent trail from the packs, in
  // order, then the positions seen since; as [lat, lon].
  function followedTrail() {
    var pts = [], last = -Infinity;
    function add(p) { if (p[2] > last) { pts.push([p[0], p[1]]); last = p[2]; } }
    (big.trails[following] ? big.trails[following].refs : []).forEach(function (ref) {
      var got = big.pieces[ref[0] + "@" + ref[1]];
      if (Array.isArray(got)) got.forEach(add);
    });
    big.live.forEach(add);
    return pts;
  }

  // -- a large race: the field overview --------------------------------------
  // The course cut into density.bins equal stretches, each coloured by how
  // many racers are on it (none: not drawn).
  var densityLayer = L.layerGroup().addTo(map), stretches = null, densityKey = "";
  function courseStretches(bins) {
    var c = cfg.course, d = [0];
    for (var i = 1; i < c.length; i++) d.push(d[i - 1] + map.distance(c[i - 1], c[i]));
    var total = d[d.length - 1] || 1, out = [], k = 0;
    function at(x) {
      while (k < c.length - 2 && d[k + 1] < x) k++;
      var f = d[k + 1] > d[k] ? (x - d[k]) / (d[k + 1] - d[k]) : 0;
      return [c[k][0] + (c[k + 1][0] - c[k][0]) * f, c[k][1] + (c[k + 1][1] - c[k][1]) * f];
    }
    for (var b = 0; b < bins; b++) {
      var from = total * b / bins, to = total * (b + 1) / bins, seg = [at(from)];
      for (var j = k + 1; j < c.length && d[j] < to; j++) seg.push(c[j]);
      seg.push(at(to));
      out.push(seg);
    }
    return out;
  }
  function drawDensity(dens) {
    if (!dens || cfg.course.length < 2) return;
    var key = dens.counts.join(",");
    if (key === densityKey) return;
    densityKey = key;
    if (!stretches || stretches.length !== dens.bins) stretches = courseStretches(dens.bins);
    var most = Math.max.apply(null, dens.counts.concat([1]));
    densityLayer.clearLayers();
    dens.counts.forEach(function (n, b) {
      if (!n) return;
      var f = Math.sqrt(n / most); // a crowd of 2,000 beside a handful still shows both
      var hue = Math.round(55 - 55 * f); // yellow (few) to red (many)
      L.polyline(stretches[b], { color: "hsl(" + hue + ",95%,48%)", weight: 5 + 6 * f, opacity: 0.9,
                                 interactive: false }).addTo(densityLayer);
    });
  }

  // -- a large race: finding a racer by name or bib -----------------------------
  // As the publisher folds (large.py fold/tokens/name_key): accents off,
  // lower case, words of letters and digits.
  function fold(text) { return text.normalize("NFKD").replace(/\p{Mn}/gu, "").toLowerCase(); }
  function words(text) { return fold(text).split(/[^\p{L}\p{N}]+/u).filter(Boolean); }
  function nameKey(prefix) {
    if (/^[a-z0-9]+$/.test(prefix)) return prefix;
    var hex = "";
    new TextEncoder().encode(prefix).forEach(function (b) { hex += b.toString(16).padStart(2, "0"); });
    return "~" + hex;
  }
  function findRacers(query) {
    var field = snapshot && snapshot.field, want = words(query);
    if (!field || !want.length) return Promise.resolve([]);
    var first = Array.from(want[0]);
    function lookup(prefix) {
      return getJSON(field.names_url.replace("{key}", nameKey(prefix))).catch(function () { return { racers: [] }; });
    }
    return lookup(first.slice(0, 2).join("")).then(function (doc) {
      // A crowded prefix lists only exact two-letter words; the rest are one letter on.
      return doc.split && first.length > 2 ? lookup(first.slice(0, 3).join("")) : doc;
    }).then(function (doc) {
      return doc.racers.filter(function (r) {
        var have = words(r[1] + " " + r[0]);
        return want.every(function (w) { return have.some(function (h) { return h.indexOf(w) === 0; }); });
      });
    });
  }
  function showMatches(query, found) {
    var list = document.getElementById("find-results"), msg = document.getElementById("find-msg");
    list.replaceChildren();
    if (!found.length) {
      if (following && big.missing) follow(following); // stop looking for one who is not there
      msg.textContent = "No racer matches " + query + ".";
      return;
    }
    var exact = found.filter(function (r) { return r[0] === query; });
    if (exact.length || found.length === 1) { msg.textContent = ""; follow((exact[0] || found[0])[0]); return; }
    msg.textContent = found.length + " racers match:";
    found.slice(0, 20).forEach(function (r) {
      var li = document.createElement("li"), b = document.createElement("button");
      b.type = "button";
      b.textContent = r[1] + " (" + r[0] + ")";
      b.addEventListener("click", function () { list.replaceChildren(); msg.textContent = ""; follow(r[0]); });
      li.appendChild(b);
      list.appendChild(li);
    });
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
      pollFollowed();
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
    var query = document.getElementById("find-id").value.trim();
    if (!query) return;
    findRacers(query).then(function (found) { showMatches(query, found); });
  });

  function linkedRacer() {
    var m = /#racer=([^&]+)/.exec(location.hash);
    try { return m ? decodeURIComponent(m[1]) : null; } catch (e) { return null; } // a mangled link
  }
  following = linkedRacer();
  window.addEventListener("hashchange", function () { // a link opened in this tab
    var id = linkedRacer();
    if (id !== following) { following = null; follow(id); }
  });
  drawProfile();
  document.querySelectorAll(".swatch[data-color]").forEach(function (el) { el.style.background = el.dataset.color; });
  poll();
})();
