/* The common operating picture: draws the zone's GeoJSON with Leaflet and refetches it (and the timeline and
   list) whenever the server's event stream says what this viewer sees has changed. No inline script: the CSP
   allows scripts from this server only. Text from the data is always set as textContent, never as HTML. */
(function () {
  'use strict';
  var el = document.getElementById('map');
  var zone = el.dataset.zone;
  var lon0 = +el.dataset.lon;
  // Thousands of operations: every shape on one canvas rather than an SVG element each.
  var renderer = L.canvas({ padding: 0.5 });
  var map = L.map(el, { zoomSnap: 0.25, attributionControl: true, preferCanvas: true, renderer: renderer });
  map.attributionControl.setPrefix(false);
  map.setView([+el.dataset.lat, lon0], 9);
  if (el.dataset.tiles) {
    L.tileLayer(el.dataset.tiles, { maxZoom: 18 }).addTo(map);
  } else {
    // Its own pane, under the operations whenever it arrives (tiles sit at 200, overlays at 400).
    map.createPane('land').style.zIndex = 350;
    map.attributionControl.addAttribution('Coastline: Natural Earth');
    fetch(el.dataset.land, { credentials: 'same-origin' })
      .then(function (r) { return r.json(); })
      .then(function (land) {
        L.geoJSON(land, { interactive: false, pane: 'land', renderer: L.svg({ pane: 'land' }),
          style: { color: '#8a8672', weight: 1, fillColor: '#ece8d9', fillOpacity: 1 } }).addTo(map);
        el.dataset.coast = 'drawn';
      });
  }
  var layer = L.layerGroup().addTo(map);
  var labelLayer = L.layerGroup().addTo(map);
  var fitted = false;
  // Labels are DOM elements: a few hundred at most, those in view; zoom in for the rest.
  var LABEL_ALL = 50, LABEL_CAP = 200, LABEL_W = 80, LABEL_H = 22;

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

  function details(p) {
    var box = document.createElement('div');
    box.appendChild(text('strong', p.id));
    var lines = [p.type, p.agency, p.start + ' – ' + p.end, p.status, p.marking, p.vessel || ''];
    (p.conflicts || []).forEach(function (c) { lines.push(c); });
    lines.filter(Boolean).forEach(function (l) { box.appendChild(text('div', l)); });
    return box;
  }

  // Each feature's layer, by kind and id, with the JSON it was drawn from: a change redraws only what changed.
  var drawn = {};

  function layerFor(f) {
    var p = f.properties;
    if (p.kind === 'approach') {
      return L.geoJSON(f, { interactive: false, coordsToLatLng: latLng,
        style: { color: '#34495e', weight: 1.5, dashArray: '6 6', fill: false } });
    }
    if (p.kind === 'op') {
      return L.circle(latLng(p.center), { radius: p.radius_m, renderer: renderer,
        color: p.conflict ? '#d7191c' : p.color, weight: p.conflict ? 4 : 2,
        dashArray: p.conflict ? '4 3' : null, fillColor: p.color, fillOpacity: 0.35 })
        .bindPopup(function () { return details(p); });
    }
    var c = latLng(f.geometry.coordinates), group = L.layerGroup();
    L.circleMarker(c, { radius: 7, color: '#111', weight: 2, fillColor: '#ffd200', fillOpacity: 1, renderer: renderer })
      .addTo(group);
    L.marker(c, { icon: L.divIcon({ className: 'tgt-label', html: text('span', p.id + (p.name ? ' ' + p.name : '')),
      iconSize: null }), keyboard: false, interactive: false }).addTo(group);
    return group;
  }

  var labelled = {};

  // Up to LABEL_ALL operations in view: each labelled. More: one label per patch of screen a label wide
  // (conflicts first), at most LABEL_CAP: labels on top of each other say nothing; zooming in gives each its own.
  function labels() {
    var view = map.getBounds().pad(0.1), want = [];
    Object.keys(drawn).forEach(function (key) {
      var d = drawn[key];
      if (d.kind === 'op' && view.contains(d.at)) { want.push(key); }
    });
    want.sort(function (a, b) { return (drawn[b].p.conflict ? 1 : 0) - (drawn[a].p.conflict ? 1 : 0); });
    var keep = {}, taken = {}, placed = 0;
    want.forEach(function (key) {
      if (placed >= LABEL_CAP) { return; }
      if (want.length > LABEL_ALL) {
        var pt = map.latLngToContainerPoint(drawn[key].at);
        var cell = Math.floor(pt.x / LABEL_W) + ':' + Math.floor(pt.y / LABEL_H);
        if (taken[cell]) { return; }
        taken[cell] = true;
      }
      placed += 1;
      var d = drawn[key], old = labelled[key];
      keep[key] = true;
      if (old && old.json === d.json) { return; }
      if (old) { labelLayer.removeLayer(old.marker); }
      var icon = L.divIcon({ className: 'op-label' + (d.p.conflict ? ' conflict' : ''), html: text('span', d.p.id),
        iconSize: null });
      labelled[key] = { json: d.json, marker: L.marker(d.at, { icon: icon, keyboard: false, interactive: false })
        .addTo(labelLayer) };
    });
    Object.keys(labelled).forEach(function (key) {
      if (!keep[key]) { labelLayer.removeLayer(labelled[key].marker); delete labelled[key]; }
    });
    el.dataset.labels = String(Object.keys(labelled).length);
  }
  map.on('moveend', labels);

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
    el.dataset.ops = String(count);
    // When the frame with these shapes is drawn (the speed check under bench/ reads it).
    requestAnimationFrame(function () {
      el.dataset.drawnAt = String(performance.timeOrigin + performance.now());
      el.dataset.drawnOps = String(count);
    });
  }

  var mapGeneration = 0, panelGeneration = 0;
  function loadMap() {
    var mine = ++mapGeneration;
    return fetch('/cop/' + zone + '/ops.geojson', { credentials: 'same-origin' })
      .then(function (r) {
        if (!r.ok) { throw new Error(String(r.status)); }
        var version = r.headers.get('X-Version') || '';
        return r.json().then(function (data) { if (mine === mapGeneration) { draw(data); } return version; });
      });
  }

  // Containers whose children are matched one by one rather than replaced whole.
  var DEEP = { section: true, svg: true, table: true, tbody: true };

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
    var mine = ++panelGeneration;
    return fetch('/cop/' + zone + '/panels', { credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.text(); })
      .then(function (html) {
        if (mine !== panelGeneration || html === shownPanels) { return; }
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

  function status(state) {
    var live = document.getElementById('live');
    live.dataset.state = state;
    live.textContent = state === 'live' ? el.dataset.live : el.dataset.offline;
  }

  function listen(version) {
    // `since`: the version just drawn, so the stream's first event is news, not this same picture again;
    // after a drop the browser reconnects by itself with Last-Event-ID.
    var events = new EventSource('/cop/' + zone + '/events?since=' + encodeURIComponent(version));
    events.addEventListener('change', function () {
      loadMap().then(loadPanels, function () { status('offline'); });  // the map first: it is what changes show on
    });
    events.addEventListener('open', function () { status('live'); });
    events.addEventListener('error', function () { status('offline'); });
  }

  // The map's data (the page's head asked for it early), then the timeline and the list; both again on every
  // change.
  loadMap().then(function (version) { loadPanels(); listen(version); },
    function () { status('offline'); loadPanels(); listen(''); });
}());
