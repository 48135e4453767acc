/* The common operating picture: draws the zone's GeoJSON with Leaflet and refetches it (and the timeline and
   list) whenever the server's event stream says what this viewer sees has changed. No inline script: the CSP
   allows scripts from this server only. Text from the data is always set as textContent, never as HTML. */
(function () {
  'use strict';
  var el = document.getElementById('map');
  var zone = el.dataset.zone;
  var map = L.map(el, { zoomSnap: 0.25, attributionControl: true });
  map.attributionControl.setPrefix(false);
  map.setView([+el.dataset.lat, +el.dataset.lon], 9);
  if (el.dataset.tiles) {
    L.tileLayer(el.dataset.tiles, { maxZoom: 18 }).addTo(map);
  } else {
    // Its own pane, under the operations whenever it arrives (tiles sit at 200, overlays at 400).
    map.createPane('land').style.zIndex = 350;
    map.attributionControl.addAttribution('Coastline: Natural Earth');
    fetch(el.dataset.land, { credentials: 'same-origin' })
      .then(function (r) { return r.json(); })
      .then(function (land) {
        L.geoJSON(land, { interactive: false, pane: 'land',
          style: { color: '#8a8672', weight: 1, fillColor: '#ece8d9', fillOpacity: 1 } }).addTo(map);
        el.dataset.coast = 'drawn';
      });
  }
  var layer = L.featureGroup().addTo(map);
  var fitted = false;

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

  // Thousands of operations: circles on one canvas, labels as plain positioned elements (a permanent tooltip
  // measures itself on adding, a forced layout per label).
  var renderer = L.canvas({ padding: 0.5 });

  function opLabel(p) {
    var inner = text('span', p.id);
    return L.divIcon({ className: 'op-label' + (p.conflict ? ' conflict' : ''), html: inner, iconSize: null });
  }

  // Each feature's layers, by kind and id, with the JSON they were drawn from: a change redraws only what
  // changed, so an update stays quick with thousands on the map.
  var drawn = {};

  function layersFor(f) {
    var p = f.properties, group = L.featureGroup();
    if (p.kind === 'approach') {
      L.geoJSON(f, { interactive: false, style: { color: '#34495e', weight: 1.5, dashArray: '6 6', fill: false } })
        .addTo(group);
    } else if (p.kind === 'op') {
      var at = [p.center[1], p.center[0]];
      L.circle(at, { radius: p.radius_m, renderer: renderer,
        color: p.conflict ? '#d7191c' : p.color, weight: p.conflict ? 4 : 2,
        dashArray: p.conflict ? '4 3' : null, fillColor: p.color, fillOpacity: 0.35 })
        .bindPopup(function () { return details(p); }).addTo(group);
      L.marker(at, { icon: opLabel(p), keyboard: false, interactive: false }).addTo(group);
    } else if (p.kind === 'target') {
      var c = [f.geometry.coordinates[1], f.geometry.coordinates[0]];
      L.circleMarker(c, { radius: 7, color: '#111', weight: 2, fillColor: '#ffd200', fillOpacity: 1, renderer: renderer })
        .addTo(group);
      L.marker(c, { icon: L.divIcon({ className: 'tgt-label', html: text('span', p.id + (p.name ? ' ' + p.name : '')),
        iconSize: null }), keyboard: false, interactive: false }).addTo(group);
    }
    return group;
  }

  function draw(data) {
    var seen = {}, count = 0;
    data.features.forEach(function (f) {
      var key = f.properties.kind + ':' + f.properties.id, json = JSON.stringify(f);
      seen[key] = true;
      if (f.properties.kind === 'op') { count += 1; }
      var old = drawn[key];
      if (old && old.json === json) { return; }
      if (old) { layer.removeLayer(old.group); }
      drawn[key] = { json: json, group: layersFor(f).addTo(layer), kind: f.properties.kind };
    });
    Object.keys(drawn).forEach(function (key) {
      if (!seen[key]) { layer.removeLayer(drawn[key].group); delete drawn[key]; }
    });
    if (!fitted) {
      var ops = L.featureGroup(), area = null;
      Object.keys(drawn).forEach(function (key) {
        if (drawn[key].kind === 'op') { ops.addLayer(drawn[key].group); }
        if (drawn[key].kind === 'approach') { area = drawn[key].group; }
      });
      var bounds = count ? ops.getBounds().pad(0.6) : (area ? area.getBounds() : null);
      if (bounds && bounds.isValid()) { map.fitBounds(bounds, { maxZoom: 13, animate: false }); }
      fitted = true;
    }
    el.dataset.ops = String(count);
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

  function loadPanels() {
    var mine = ++panelGeneration;
    fetch('/cop/' + zone + '/panels', { credentials: 'same-origin' })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.text(); })
      .then(function (html) {
        if (mine !== panelGeneration) { return; }
        // Same-origin HTML our server rendered with every value escaped; scripts in it would not run (CSP).
        var doc = new DOMParser().parseFromString(html, 'text/html');
        var panels = document.getElementById('panels');
        panels.replaceChildren.apply(panels, Array.prototype.slice.call(doc.body.childNodes));
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
    events.addEventListener('change', function () { loadMap().catch(function () { status('offline'); }); loadPanels(); });
    events.addEventListener('open', function () { status('live'); });
    events.addEventListener('error', function () { status('offline'); });
  }

  // The timeline and the list came with the page; the map's data is fetched once, then on every change.
  loadMap().then(listen, function () { status('offline'); listen(''); });
}());
