// 一张图: every dataset the caller may read, as vector tiles from the OGC tiles endpoint,
// with the layer tree, legend, region search, cursor coordinates, measurement and identify.
import { api, clear, el, errorText, fmt, fmtArea, lang, t, themeOf, titleOf } from "./common.js";
import { gaussKruger, lineLength, polygonArea } from "./geodesy.js";
import { baseStyle, datasetLayers, landuseField, opacityPaint } from "./mapstyle.js";
import { hereSummary } from "./herereport.js";

const state = { tool: "identify", points: [], layers: new Map(), datasets: [] };
const mapError = document.getElementById("map-error");

function showMapError(message) {
  mapError.hidden = false;
  mapError.textContent = message;
}

async function start() {
  if (!window.maplibregl) {
    showMapError(t("map.no_library"));
    return;
  }
  const params = new URLSearchParams(location.search);
  const [config, list] = await Promise.all([api("/api/portal/config"), api("/api/datasets")]);
  state.config = config;
  const readable = list.datasets.filter((ds) => ds.access && ds.access.rows !== "none" && ds.extent && ds.current_version);
  // staff who read a master see it, not also its public edition (the same features, generalised)
  const masters = new Set(readable.map((ds) => ds.id));
  state.datasets = readable.filter((ds) => !(ds.edition_of && masters.has(ds.edition_of)));
  const map = new maplibregl.Map({
    container: "map",
    style: baseStyle(config),
    bounds: unionExtent(state.datasets) || [121.1, 43.4, 135.1, 53.6],
    fitBoundsOptions: { padding: 20 },
    attributionControl: { compact: true },
    locale: lang === "zh" ? { "NavigationControl.ZoomIn": "放大", "NavigationControl.ZoomOut": "缩小", "NavigationControl.ResetBearing": "指北" } : {},
  });
  window.lcMap = map; // for the browser tests and the console
  map.addControl(new maplibregl.NavigationControl({ visualizePitch: false }), "top-right");
  map.addControl(new maplibregl.ScaleControl({ unit: "metric" }), "bottom-right");
  map.on("error", (e) => console.warn("map:", e.error?.message || e));
  map.on("load", () => {
    state.datasets.forEach((ds, i) => addDataset(map, ds, i));
    map.addSource("measure", { type: "geojson", data: emptyFC() });
    map.addLayer({ id: "measure-fill", type: "fill", source: "measure", filter: ["==", ["geometry-type"], "Polygon"], paint: { "fill-color": "#d7301f", "fill-opacity": 0.15 } });
    map.addLayer({ id: "measure-line", type: "line", source: "measure", paint: { "line-color": "#d7301f", "line-width": 2, "line-dasharray": [2, 1] } });
    map.addLayer({ id: "measure-points", type: "circle", source: "measure", filter: ["==", ["geometry-type"], "Point"], paint: { "circle-radius": 4, "circle-color": "#d7301f" } });
    renderTree(map);
    renderLegend();
    document.body.dataset.mapReady = "true";
    const focus = state.layers.get(params.get("dataset") || "");
    if (focus) map.fitBounds(focus.ds.extent, { padding: 20, duration: 0 });
    if (params.get("lon") && params.get("lat")) identify(map, [Number(params.get("lon")), Number(params.get("lat"))]);
  });
  map.on("mousemove", (e) => showCoords(e.lngLat));
  map.on("click", (e) => onClick(map, e));
  // keyboard: arrows pan and +/- zoom (MapLibre's own); Enter identifies, or adds a measuring point, at the centre
  map.getCanvas().setAttribute("aria-label", t("map.keyboard_hint"));
  map.getCanvas().addEventListener("keydown", (e) => {
    if (e.key !== "Enter") return;
    e.preventDefault(); // else the key's press lands on the popup's close button, focused as it opens
    const c = map.getCenter();
    onClick(map, { lngLat: c });
  });
  map.on("dblclick", (e) => {
    if (state.tool !== "identify") {
      e.preventDefault();
      const pts = state.points;
      if (pts.length >= 2) { // the double click's second click added its point twice
        const a = map.project(pts.at(-1));
        const b = map.project(pts.at(-2));
        if (Math.hypot(a.x - b.x, a.y - b.y) < 5) pts.pop();
      }
      drawMeasure(map);
    }
  });
  wireTools(map);
  wireGoto(map);
}

function unionExtent(datasets) {
  const boxes = datasets.map((d) => d.extent).filter(Boolean);
  if (!boxes.length) return null;
  return [Math.min(...boxes.map((b) => b[0])), Math.min(...boxes.map((b) => b[1])), Math.max(...boxes.map((b) => b[2])), Math.max(...boxes.map((b) => b[3]))];
}

function addDataset(map, ds, index) {
  map.addSource(ds.id, {
    type: "vector",
    tiles: [`${location.origin}/ogc/collections/${encodeURIComponent(ds.id)}/tiles/WebMercatorQuad/{z}/{y}/{x}`],
    bounds: ds.extent,
    minzoom: 0,
    maxzoom: 16,
    attribution: titleOf(ds),
  });
  const layers = datasetLayers(ds, index, state.config);
  for (const layer of layers) map.addLayer(layer);
  state.layers.set(ds.id, { ds, layers, visible: true, opacity: 1 });
}

function renderTree(map) {
  const tree = document.getElementById("layer-tree");
  if (!state.datasets.length) {
    clear(tree, el("p", { class: "muted" }, t("map.no_layers")));
    return;
  }
  const groups = new Map();
  for (const ds of state.datasets) {
    const key = themeOf(ds);
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(ds);
  }
  clear(tree, [...groups.entries()].map(([theme, items]) =>
    el("fieldset", { class: "layer-group" }, el("legend", {}, theme), items.map((ds) => layerControl(map, ds)))));
}

function layerControl(map, ds) {
  const entry = state.layers.get(ds.id);
  const id = `layer-${ds.id}`;
  const toggle = el("input", { type: "checkbox", id, checked: true, "data-dataset": ds.id,
    onchange: (e) => {
      entry.visible = e.target.checked;
      for (const l of entry.layers) map.setLayoutProperty(l.id, "visibility", entry.visible ? "visible" : "none");
    } });
  const opacity = el("input", { type: "range", min: "0", max: "1", step: "0.05", value: "1", "aria-label": t("map.opacity_of", { title: titleOf(ds) }),
    oninput: (e) => {
      entry.opacity = Number(e.target.value);
      for (const l of entry.layers) {
        const p = opacityPaint(l, entry.opacity);
        if (p) map.setPaintProperty(l.id, p[0], p[1]);
      }
    } });
  const zoom = el("button", { type: "button", class: "linklike", title: t("map.zoom_to_layer"), "aria-label": t("map.zoom_to_layer_of", { title: titleOf(ds) }),
    onclick: () => map.fitBounds(ds.extent, { padding: 20 }) }, "⤢");
  return el("div", { class: "layer" },
    el("label", { for: id }, toggle, " ", titleOf(ds), el("span", { class: "muted" }, ` v${ds.current_version}`)),
    el("div", { class: "layer-tools" }, el("span", { class: "muted" }, t("map.opacity")), opacity, zoom,
      el("a", { href: `/datasets/${encodeURIComponent(ds.id)}`, class: "muted" }, t("map.details"))));
}

function renderLegend() {
  const box = document.getElementById("legend");
  const items = [];
  for (const ds of state.datasets) {
    const field = landuseField(ds, state.config.landuse_fields);
    const layer = state.layers.get(ds.id).layers[0];
    items.push(el("h3", {}, titleOf(ds)));
    if (field) {
      items.push(el("ul", { class: "legend-list", "data-testid": `legend-${ds.id}` }, state.config.landuse_legend.map((e) =>
        el("li", {}, el("span", { class: "swatch", style: `background:${e.colour}` }), ` ${e.code} ${lang === "en" ? e.name_en : e.name_zh}`))));
    } else {
      const colour = ds.theme === "boundaries" ? "transparent; border:2px solid #7a4b9a" : layer.paint["fill-color"];
      items.push(el("ul", { class: "legend-list" }, el("li", {}, el("span", { class: "swatch", style: `background:${colour}` }), ` ${titleOf(ds)}`)));
    }
  }
  clear(box, items.length ? items : el("p", { class: "muted" }, t("map.no_layers")));
}

function showCoords(ll) {
  const gk = gaussKruger(ll.lng, ll.lat);
  document.getElementById("coords").textContent =
    `CGCS2000 ${t("map.lon")} ${ll.lng.toFixed(6)}° ${t("map.lat")} ${ll.lat.toFixed(6)}° · ` +
    `${t("map.gk_zone", { zone: gk.zone, cm: gk.cm })}${gk.epsg ? ` (EPSG:${gk.epsg})` : ""} X=${fmt(gk.x, 2)} Y=${fmt(gk.y, 2)}`;
}

function wireTools(map) {
  for (const b of document.querySelectorAll("[data-tool]")) {
    b.addEventListener("click", () => {
      state.tool = b.dataset.tool;
      for (const o of document.querySelectorAll("[data-tool]")) o.setAttribute("aria-pressed", String(o === b));
      state.points = [];
      drawMeasure(map);
      map.doubleClickZoom[state.tool === "identify" ? "enable" : "disable"]();
      map.getCanvas().style.cursor = state.tool === "identify" ? "" : "crosshair";
    });
  }
  document.getElementById("measure-clear").addEventListener("click", () => {
    state.points = [];
    drawMeasure(map);
    document.getElementById("measure-result").textContent = "";
  });
}

function onClick(map, e) {
  const p = [e.lngLat.lng, e.lngLat.lat];
  if (state.tool === "identify") {
    identify(map, p);
    return;
  }
  state.points.push(p);
  drawMeasure(map);
}

function emptyFC() {
  return { type: "FeatureCollection", features: [] };
}

function drawMeasure(map) {
  const pts = state.points;
  const features = pts.map((c) => ({ type: "Feature", geometry: { type: "Point", coordinates: c }, properties: {} }));
  if (pts.length >= 2) features.push({ type: "Feature", geometry: { type: "LineString", coordinates: state.tool === "area" ? [...pts, pts[0]] : pts }, properties: {} });
  if (state.tool === "area" && pts.length >= 3) features.push({ type: "Feature", geometry: { type: "Polygon", coordinates: [[...pts, pts[0]]] }, properties: {} });
  map.getSource("measure")?.setData({ type: "FeatureCollection", features });
  showMeasure();
}

function showMeasure() {
  const out = document.getElementById("measure-result");
  const pts = state.points;
  out.dataset.points = JSON.stringify(pts);
  if (state.tool === "distance" && pts.length >= 2) {
    const m = lineLength(pts);
    out.textContent = t("map.distance_result", { m: fmt(m, 2), km: fmt(m / 1000, 3) });
    out.dataset.metres = String(m);
  } else if (state.tool === "area" && pts.length >= 3) {
    const r = polygonArea(pts);
    out.textContent = `${t("map.area_result")} ${fmtArea(r.area)} · ${t("map.perimeter")} ${fmt(r.perimeter, 2)} ${t("unit.m")}`;
    out.dataset.m2 = String(r.area);
  } else if (state.tool !== "identify") {
    out.textContent = t(state.tool === "area" ? "map.area_hint" : "map.distance_hint");
  }
}

async function identify(map, lonlat) {
  const [lon, lat] = lonlat;
  const popup = new maplibregl.Popup({ maxWidth: "360px", className: "identify" }).setLngLat(lonlat).setDOMContent(el("p", {}, t("common.loading"))).addTo(map);
  try {
    const report = await api(`/api/here?lon=${lon}&lat=${lat}`);
    popup.setDOMContent(el("div", { "data-testid": "identify" }, hereSummary(report),
      el("p", {}, el("a", { href: `/here?lon=${lon.toFixed(7)}&lat=${lat.toFixed(7)}` }, t("map.full_report")))));
  } catch (err) {
    popup.setDOMContent(el("p", { class: "error" }, errorText(err)));
  }
}

function wireGoto(map) {
  const input = document.getElementById("goto-q");
  const list = document.getElementById("goto-list");
  const error = document.getElementById("goto-error");
  let timer = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    const q = input.value.trim();
    if (!q || /^[\d.\s,-]+$/.test(q) && q.includes(",")) return;
    timer = setTimeout(async () => {
      try {
        const r = await api(`/api/regions?q=${encodeURIComponent(q)}&limit=8`);
        clear(list, r.regions.map((g) => el("option", { value: g.name }, `${g.code} ${g.name}`)));
      } catch { /* suggestions are a convenience */ }
    }, 200);
  });
  document.getElementById("goto").addEventListener("submit", async (e) => {
    e.preventDefault();
    error.textContent = "";
    const q = input.value.trim();
    const coord = q.match(/^\s*(-?\d+(?:\.\d+)?)\s*[, ]\s*(-?\d+(?:\.\d+)?)\s*$/);
    if (coord) {
      const lon = Number(coord[1]);
      const lat = Number(coord[2]);
      if (Math.abs(lon) > 180 || Math.abs(lat) > 90) {
        error.textContent = t("map.bad_coordinate");
        return;
      }
      map.flyTo({ center: [lon, lat], zoom: 15 });
      return;
    }
    try {
      const r = await api(`/api/regions?q=${encodeURIComponent(q)}&limit=1`);
      const g = r.regions[0];
      if (!g) error.textContent = t("map.region_not_found", { q });
      else if (!g.bbox) error.textContent = t("map.region_no_boundary", { name: g.name });
      else {
        map.fitBounds(g.bbox, { padding: 20, duration: 0 });
        document.body.dataset.region = g.code;
      }
    } catch (err) {
      error.textContent = errorText(err);
    }
  });
}

start().catch((err) => showMapError(errorText(err)));
