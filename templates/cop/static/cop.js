/* The common operating picture: draws the zone's operations and traffic with Leaflet and fetches each part again
   whenever the server's event stream says what this viewer sees of it has changed. No inline script: the CSP
   allows scripts from this server only. Text from the data is always set as textContent, never as HTML. */
(function () {
  'use strict';
  var el = document.getElementById('map');
  var zone = el.dataset.zone;
  var lon0 = +el.dataset.lon;
  // Thousands of operations and hundreds of vessels: every shape on one canvas rather than an SVG element each.
  var renderer = L.canvas({ padding: 0.5 });
  var map = L.map(el, { zoomSnap: 0.25, attributionControl: true, preferCanvas: true, renderer: renderer,
    maxBoundsViscosity: 1.0 });
  window.watchfloorMap = map;  // for the page's own checks (tests/test_cop_browser.py)
  map.attributionControl.setPrefix(false);
  map.setView([+el.dataset.lat, lon0], 9);

  // A scale bar in nautical miles (Leaflet's own knows metres and statute miles only).
  var STEPS = [0.05, 0.1, 0.2, 0.25, 0.5, 1, 2, 5, 10, 20, 25, 50, 100, 200];
  var NmScale = L.Control.extend({
    options: { position: 'bottomleft', maxWidth: 120 },
    onAdd: function (m) {
      var box = L.DomUtil.create('div', 'leaflet-control-scale');
      this._line = L.DomUtil.create('div', 'leaflet-control-scale-line nm-scale', box);
      m.on('moveend zoomend resize', this._update, this);
      this._update();
      return box;
    },
    onRemove: function (m) { m.off('moveend zoomend resize', this._update, this); },
    _update: function () {
      var m = this._map, y = m.getSize().y / 2;
      var metres = m.distance(m.containerPointToLatLng([0, y]), m.containerPointToLatLng([this.options.maxWidth, y]));
      var nm = metres / 1852, value = STEPS[0];
      STEPS.forEach(function (s) { if (s <= nm) { value = s; } });
      var px = Math.round(this.options.maxWidth * value / nm);
      this._line.style.width = px + 'px';
      this._line.textContent = value + ' nm';
      this._line.dataset.nm = String(value);
    }
  });
  new NmScale().addTo(map);

  if (el.dataset.tiles) {
    L.tileLayer(el.dataset.tiles, { maxZoom: 18 }).addTo(map);
  } else {
    // Its own pane, under the operations whenever it arrives (tiles sit at 200, overlays at 400).
    map.createPane('land').style.zIndex = 350;
    map.attributionControl.addAttribution('Coastline: GSHHG (LGPL)');
    fetch(el.dataset.land, { credentials: 'same-origin' })
      .then(function (r) { return r.json(); })
      .then(function (land) {
        var p = land.properties;
        L.geoJSON(land, { interactive: false, pane: 'land', renderer: L.canvas({ pane: 'land' }),
          style: { color: '#8a8672', weight: 1, fillColor: '#ece8d9', fillOpacity: 1 } }).addTo(map);
        // The coastline was cut wider than this box: the page never shows beyond it, so the cut is never seen.
        var view = L.latLngBounds([p.view[1], p.view[0]], [p.view[3], p.view[2]]);
        function bound() {
          map.setMinZoom(map.getBoundsZoom(view, true));
        }
        map.setMaxZoom(p.max_zoom);
        map.setMaxBounds(view);
        bound();
        map.on('resize', bound);
        map.panInsideBounds(view, { animate: false });
        el.dataset.coast = 'drawn';
      });
  }
  var layer = L.layerGroup().addTo(map);
  var trafficLayer = L.layerGroup().addTo(map);
  var labelLayer = L.layerGroup().addTo(map);
  var fitted = false;
  // Labels are DOM elements: a few hundred at most, those in view; zoom in for the rest.
  var LABEL_ALL = 50, LABEL_CAP = 200, LABEL_GAP = 10, LABEL_H = 18;

  // The data keeps RFC 7946 longitudes (-180..180, shapes cut at the antimeridian); the page draws them on
  // the zone's side of it, so an operation near ±180° is one shape, not two halves a world apart.
  function near(lon) {
    while (lon - lon0 > 180) { lon -= 360; }
    while (lon - lon0 < -180) { lon += 360; }
    return lon;
  }
  function latLng(c) { return L.latLng(c[1], near(c[0])); }

  function text(tag, value, cls) {
    var node = document.createElement(tag);
    node.textContent = value;
    if (cls) { node.className = cls; }
    return node;
  }

  function box(lines, title) {
    var div = document.createElement('div');
    div.appendChild(text('strong', title));
    lines.filter(Boolean).forEach(function (l) { div.appendChild(text('div', l)); });
    return div;
  }

  function details(p) {
    return box([p.type, p.agency, p.start + ' – ' + p.end, p.status, p.marking, p.vessel || ''].concat(p.conflicts || []),
      p.id);
  }

  function shipDetails(p) {
    var lines = [];
    if (p.kind === 'target') { lines.push(p.id + ' (' + p.priority + ', ' + p.agency + ')'); }
    lines.push('MMSI ' + p.mmsi);
    lines.push(p.sog === null ? 'speed not known' : p.sog + ' kn' + (p.course === null ? '' : ', course ' + p.course + '°'));
    lines.push(p.destination ? 'to ' + p.destination : 'destination not given');
    lines.push(p.eta ? 'ETA ' + p.eta : 'no ETA given');
    if (p.heard_min !== null) { lines.push('heard ' + p.heard_min + ' min ago'); }
    return box(lines, p.name || ('MMSI ' + p.mmsi));
  }

  // A vessel: a canvas triangle pointing along its course (a dot when no course is known), drawn and hit-tested
  // like Leaflet's own circle markers, on the same canvas as the operations.
  var Ship = L.CircleMarker.extend({
    _updatePath: function () { this._renderer._updateShip(this); }
  });
  L.Canvas.include({
    _updateShip: function (ship) {
      if (!this._drawing || ship._empty()) { return; }
      var p = ship._point, ctx = this._ctx, r = ship._radius, course = ship.options.course;
      ctx.beginPath();
      if (course === null || course === undefined) {
        ctx.arc(p.x, p.y, r * 0.6, 0, 2 * Math.PI, false);
      } else {
        var a = course * Math.PI / 180, sin = Math.sin(a), cos = Math.cos(a);
        var at = function (dx, dy) { return [p.x + dx * cos - dy * sin, p.y + dx * sin + dy * cos]; };
        var tip = at(0, -r * 1.4), left = at(-r * 0.75, r), right = at(r * 0.75, r), notch = at(0, r * 0.45);
        ctx.moveTo(tip[0], tip[1]);
        ctx.lineTo(right[0], right[1]);
        ctx.lineTo(notch[0], notch[1]);
        ctx.lineTo(left[0], left[1]);
        ctx.closePath();
      }
      this._fillStroke(ctx, ship);
    }
  });

  // Each feature's layer, by kind and id, with the JSON it was drawn from: a change redraws only what changed.
  var drawn = {}, traffic = {};

  function layerFor(f) {
    var p = f.properties;
    if (p.kind === 'approach') {
      return L.geoJSON(f, { interactive: false, coordsToLatLng: latLng,
        style: { color: '#34495e', weight: 1.5, dashArray: '6 6', fill: false } });
    }
    return L.circle(latLng(p.center), { radius: p.radius_m, renderer: renderer,
      color: p.conflict ? '#d7191c' : p.color, weight: p.conflict ? 4 : 2,
      dashArray: p.conflict ? '4 3' : (p.status === 'overdue' ? '2 4' : null), fillColor: p.color,
      fillOpacity: 0.35 })
      .bindPopup(function () { return details(p); });
  }

  function trafficLayerFor(f) {
    var p = f.properties;
    if (p.kind === 'track') {
      return L.geoJSON(f, { interactive: false, coordsToLatLng: latLng,
        style: { color: '#111', weight: 2, dashArray: '5 4', opacity: 0.9 } });
    }
    var c = latLng(f.geometry.coordinates), target = p.kind === 'target';
    var ship = new Ship(c, { radius: target ? 9 : 6, renderer: renderer, course: p.course,
      color: target ? '#111' : '#ffffff', weight: target ? 2 : 1, fillColor: target ? '#ffd200' : '#3a3a3a',
      fillOpacity: 1 });
    ship.bindTooltip(function () { return shipDetails(p); }, { direction: 'top', offset: [0, -8] });
    ship.bindPopup(function () { return shipDetails(p); });  // a tap on a phone, where there is no hover
    if (!target) { return ship; }
    var group = L.layerGroup([ship]);
    L.marker(c, { icon: L.divIcon({ className: 'tgt-label', html: text('span', p.id + (p.name ? ' ' + p.name : '')),
      iconSize: null }), keyboard: false, interactive: false }).addTo(group);
    return group;
  }

  var labelled = {};

  function overlaps(a, b) {
    return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
  }

  // Where a label goes: beside its circle (right, left, above, below), never on it, with a leader from the
  // circle's edge; the first place that meets no label already placed.
  function place(d, taken, size) {
    var c = map.latLngToContainerPoint(d.at);
    var edge = map.latLngToContainerPoint(L.latLng(d.at.lat, d.at.lng + d.p.radius_m / (111320 * Math.cos(d.at.lat * Math.PI / 180))));
    var r = Math.abs(edge.x - c.x), w = 8 + 7 * d.p.id.length, h = LABEL_H, g = LABEL_GAP;
    var spots = [
      { side: 'right', x: c.x + r + g, y: c.y - h / 2 },
      { side: 'left', x: c.x - r - g - w, y: c.y - h / 2 },
      { side: 'above', x: c.x - w / 2, y: c.y - r - g - h },
      { side: 'below', x: c.x - w / 2, y: c.y + r + g }
    ];
    var free = spots.filter(function (s) {
      var b = { x: s.x, y: s.y, w: w, h: h };
      return b.x >= 0 && b.y >= 0 && b.x + w <= size.x && b.y + h <= size.y &&
        !taken.some(function (t) { return overlaps(t, b); });
    });
    var spot = free[0] || null;
    if (spot) {
      spot.w = w; spot.h = h; spot.r = r; spot.c = c;
    }
    return spot;
  }

  function labelNode(d, spot) {
    var wrap = document.createElement('div'), leader = document.createElement('div');
    var label = text('span', d.p.id);
    var dx = spot.x - spot.c.x, dy = spot.y - spot.c.y, r = spot.r;
    leader.className = 'leader';
    // the leader runs from the circle's edge to the label, across the gap between them
    if (spot.side === 'right' || spot.side === 'left') {
      leader.style.left = (spot.side === 'right' ? r : -r - LABEL_GAP) + 'px';
      leader.style.top = '0px';
      leader.style.width = LABEL_GAP + 'px';
      leader.style.height = '0px';
    } else {
      leader.style.left = '0px';
      leader.style.top = (spot.side === 'below' ? r : -r - LABEL_GAP) + 'px';
      leader.style.width = '0px';
      leader.style.height = LABEL_GAP + 'px';
    }
    label.style.left = dx + 'px';
    label.style.top = dy + 'px';
    label.style.width = (spot.w - 2) + 'px';
    wrap.appendChild(leader);
    wrap.appendChild(label);
    wrap.dataset.side = spot.side;
    return wrap;
  }

  // Up to LABEL_ALL operations in view: each labelled where it fits. More: conflicts first, and only those
  // whose label finds a free place, at most LABEL_CAP: zooming in gives each its own.
  function labels() {
    var view = map.getBounds().pad(0.1), want = [], size = map.getSize(), taken = [];
    Object.keys(drawn).forEach(function (key) {
      var d = drawn[key];
      if (d.kind === 'op' && view.contains(d.at)) { want.push(key); }
    });
    want.sort(function (a, b) { return (drawn[b].p.conflict ? 1 : 0) - (drawn[a].p.conflict ? 1 : 0); });
    var keep = {};
    want.forEach(function (key) {
      if (taken.length >= LABEL_CAP) { return; }
      var d = drawn[key], spot = place(d, taken, size);
      if (!spot) { return; }
      taken.push({ x: spot.x, y: spot.y, w: spot.w, h: spot.h });
      var where = d.json + '|' + spot.side + '|' + Math.round(spot.r) + '|' + map.getZoom(), old = labelled[key];
      keep[key] = true;
      if (old && old.where === where) { return; }
      if (old) { labelLayer.removeLayer(old.marker); }
      var icon = L.divIcon({ className: 'op-label' + (d.p.conflict ? ' conflict' : ''), html: labelNode(d, spot),
        iconSize: null });
      labelled[key] = { where: where, marker: L.marker(d.at, { icon: icon, keyboard: false, interactive: false })
        .addTo(labelLayer) };
    });
    Object.keys(labelled).forEach(function (key) {
      if (!keep[key]) { labelLayer.removeLayer(labelled[key].marker); delete labelled[key]; }
    });
    el.dataset.labels = String(Object.keys(labelled).length);
  }
  map.on('moveend', labels);

  // The agencies on the map, each in its colour (the timeline's lanes use the same).
  function legend() {
    var seen = {}, list = document.getElementById('agencies');
    Object.keys(drawn).forEach(function (key) {
      var p = drawn[key].p;
      if (p.kind === 'op') { seen[p.agency] = p.color; }
    });
    var items = Object.keys(seen).sort().map(function (code) {
      var li = document.createElement('li'), swatch = document.createElement('span');
      swatch.className = 'swatch';
      swatch.style.background = seen[code];
      li.appendChild(swatch);
      li.appendChild(document.createTextNode(code));
      li.dataset.agency = code;
      li.dataset.color = seen[code];
      return li;
    });
    list.replaceChildren.apply(list, items);
  }

  function draw(data) {
    var seen = {}, count = 0;
    data.features.forEach(function (f) {
      var p = f.properties, key = p.kind + ':' + p.id;
      // An operation's shape follows from its properties (centre, radius); others carry their geometry.
      var json = JSON.stringify(p) + (p.kind === 'op' ? '' : JSON.stringify(f.geometry));
      seen[key] = true;
      if (p.kind === 'op') { count += 1; }
      var old = drawn[key];
      if (old && old.json === json) { return; }
      if (old) { layer.removeLayer(old.layer); }
      drawn[key] = { json: json, layer: layerFor(f).addTo(layer), kind: p.kind, p: p,
        at: p.kind === 'op' ? latLng(p.center) : null };
    });
    Object.keys(drawn).forEach(function (key) {
      if (!seen[key]) { layer.removeLayer(drawn[key].layer); delete drawn[key]; }
    });
    if (!fitted) {
      var centres = [], area = null;
      Object.keys(drawn).forEach(function (key) {
        if (drawn[key].kind === 'op') { centres.push(drawn[key].at); }
        if (drawn[key].kind === 'approach') { area = drawn[key].layer.getBounds(); }
      });
      var bounds = centres.length ? L.latLngBounds(centres).pad(0.6) : area;
      fitted = true;
      if (bounds && bounds.isValid()) { map.fitBounds(bounds, { maxZoom: 13, animate: false }); }
    }
    labels();
    legend();
    shipsOnTop();
    el.dataset.ops = String(count);
    // When the frame with these shapes is drawn (the speed check under bench/ reads it).
    requestAnimationFrame(function () {
      el.dataset.drawnAt = String(performance.timeOrigin + performance.now());
      el.dataset.drawnOps = String(count);
    });
  }

  function drawTraffic(data) {
    var seen = {}, ships = 0;
    data.features.forEach(function (f) {
      var p = f.properties, key = p.kind + ':' + p.id, json = JSON.stringify(f);
      seen[key] = true;
      if (p.kind !== 'track') { ships += 1; }
      var old = traffic[key];
      if (old && old.json === json) { return; }
      if (old) { trafficLayer.removeLayer(old.layer); }
      traffic[key] = { json: json, layer: trafficLayerFor(f).addTo(trafficLayer) };
    });
    Object.keys(traffic).forEach(function (key) {
      if (!seen[key]) { trafficLayer.removeLayer(traffic[key].layer); delete traffic[key]; }
    });
    shipsOnTop();
    el.dataset.vessels = String(ships);
    requestAnimationFrame(function () { el.dataset.trafficDrawnAt = String(performance.timeOrigin + performance.now()); });
  }

  // One canvas draws in the order shapes were added: the vessels go over the operations' circles, whichever
  // came first.
  function shipsOnTop() {
    trafficLayer.eachLayer(function (l) {
      if (l.bringToFront) { l.bringToFront(); } else if (l.eachLayer) { l.eachLayer(function (m) { if (m.bringToFront) { m.bringToFront(); } }); }
    });
  }

  var generations = { map: 0, traffic: 0, panels: 0 }, versions = { map: '', traffic: '' };
  function load(part, url, then) {
    var mine = ++generations[part];
    return fetch(url, { credentials: 'same-origin' })
      .then(function (r) {
        if (r.status === 401) { ended(); }
        if (!r.ok) { throw new Error(String(r.status)); }
        var version = r.headers.get('X-Version') || '';
        return r.json().then(function (data) {
          if (mine === generations[part]) { then(data); versions[part] = version; }
          return version;
        });
      });
  }
  // Operations at their centres: the page draws each circle from centre and radius.
  function loadMap() { return load('map', '/cop/' + zone + '/ops.geojson?geometry=centre', draw); }
  function loadTraffic() { return load('traffic', '/cop/' + zone + '/traffic.geojson', drawTraffic); }

  // Containers whose children are matched one by one rather than replaced whole.
  var DEEP = { section: true, svg: true, table: true, tbody: true, div: true };

  // Brings `have` (in the page) to `want` (freshly parsed), touching only what differs: 2,000 rows put in
  // again take the browser far longer to lay out than the map takes to draw. Children with an id (a bar, a
  // row) are matched by it, the others by their place.
  function morph(have, want) {
    Array.prototype.forEach.call(want.attributes, function (a) {
      if (have.getAttribute(a.name) !== a.value) { have.setAttribute(a.name, a.value); }
    });
    var byId = {}, cursor = have.firstElementChild;
    Array.prototype.forEach.call(have.children, function (c) { if (c.id) { byId[c.id] = c; } });
    Array.prototype.slice.call(want.children).forEach(function (w) {
      var old = w.id ? byId[w.id] : (cursor && !cursor.id && cursor.localName === w.localName ? cursor : null);
      var node = old;
      if (!old || old.outerHTML !== w.outerHTML) {
        if (old && DEEP[w.localName]) {
          morph(old, w);
        } else {
          node = document.importNode(w, true);
          if (old) {
            if (old === cursor) { cursor = cursor.nextElementSibling; }
            old.remove();
          }
        }
      }
      if (node === cursor) { cursor = cursor.nextElementSibling; } else { have.insertBefore(node, cursor); }
    });
    while (cursor) { var next = cursor.nextElementSibling; cursor.remove(); cursor = next; }
  }

  var shownPanels = '';
  function loadPanels() {
    var mine = ++generations.panels;
    return fetch('/cop/' + zone + '/panels', { credentials: 'same-origin' })
      .then(function (r) {
        if (r.status === 401) { ended(); }
        if (!r.ok) { throw new Error(String(r.status)); }
        return r.text();
      })
      .then(function (html) {
        if (mine !== generations.panels || html === shownPanels) { return; }
        // Same-origin HTML our server rendered with every value escaped; scripts in it would not run (CSP).
        var doc = new DOMParser().parseFromString(html, 'text/html');
        var panels = document.getElementById('panels');
        if (shownPanels) {
          morph(panels, doc.body);
        } else {
          panels.replaceChildren.apply(panels, Array.prototype.slice.call(doc.body.childNodes));
          panels.removeAttribute('aria-busy');
        }
        shownPanels = html;
      })
      .catch(function () { status('offline'); });
  }

  var events = null, over = false;
  function status(state) {
    if (over) { return; }
    var live = document.getElementById('live');
    live.dataset.state = state;
    live.textContent = state === 'live' ? el.dataset.live : state === 'ended' ? el.dataset.ended : el.dataset.offline;
  }

  // The session ended (revoked in chat, signed out elsewhere, expired): stop listening and say so.
  function ended() {
    status('ended');
    over = true;
    if (events) { events.close(); }
  }

  function listen() {
    // `since`: the versions just drawn, so the stream's first event is news, not this same picture again;
    // after a drop the browser reconnects by itself with Last-Event-ID.
    events = new EventSource('/cop/' + zone + '/events?since=' + encodeURIComponent(versions.map + '.' + versions.traffic));
    events.addEventListener('change', function () {
      loadMap().then(loadPanels, function () { status('offline'); });  // the map first: it is what changes show on
    });
    events.addEventListener('traffic', function () { loadTraffic().catch(function () { status('offline'); }); });
    events.addEventListener('open', function () { status('live'); });
    events.addEventListener('error', function () {
      status('offline');
      // A stream the server refused (its session is over) is not retried by the browser: ask why.
      if (events.readyState === EventSource.CLOSED) {
        fetch('/cop/' + zone + '/ops.geojson', { credentials: 'same-origin', method: 'HEAD' })
          .then(function (r) { if (r.status === 401) { ended(); } });
      }
    });
  }

  // The map's data (the page's head asked for it early) and the traffic, then the timeline and the list; each
  // again when the stream says it changed.
  Promise.all([loadMap(), loadTraffic()]).then(function () { loadPanels(); listen(); },
    function () { status('offline'); loadPanels(); listen(); });
}());
