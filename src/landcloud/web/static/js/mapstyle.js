// How each dataset is drawn: land-use layers by class code with the configured colour table,
// boundaries as outlines, everything else in a colour of its own.

const PALETTE = ["#1f78b4", "#e31a1c", "#6a3d9a", "#ff7f00", "#33a02c", "#b15928", "#a6cee3", "#fb9a99"];
const IS_POLYGON = ["in", ["geometry-type"], ["literal", ["Polygon", "MultiPolygon"]]];
const IS_LINE = ["in", ["geometry-type"], ["literal", ["LineString", "MultiLineString"]]];
const IS_POINT = ["in", ["geometry-type"], ["literal", ["Point", "MultiPoint"]]];

/** The land-use field of a dataset (DLBM by the standard's spelling), or null. */
export function landuseField(ds, candidates) {
  const names = new Set((ds.fields || []).map((f) => f.name));
  return candidates.find((c) => names.has(c)) || null;
}

/** A MapLibre colour expression: the four-character class colour if configured, else its first-level group's. */
export function landuseColour(field, legend, fallback = "#cccccc") {
  const code = ["to-string", ["coalesce", ["get", field], ""]];
  const four = legend.filter((e) => e.code.length > 2).flatMap((e) => [e.code, e.colour]);
  const two = legend.filter((e) => e.code.length === 2).flatMap((e) => [e.code, e.colour]);
  const byGroup = two.length ? ["match", ["slice", code, 0, 2], ...two, fallback] : fallback;
  return four.length ? ["match", ["slice", code, 0, 4], ...four, byGroup] : byGroup;
}

/** The style layers of one dataset, all on the source named after it. */
export function datasetLayers(ds, index, config) {
  const field = landuseField(ds, config.landuse_fields);
  const colour = PALETTE[index % PALETTE.length];
  const outlineOnly = ds.theme === "boundaries";
  const fill = field ? landuseColour(field, config.landuse_legend) : colour;
  const common = { source: ds.id, "source-layer": ds.id, metadata: { dataset: ds.id } };
  return [
    { id: `${ds.id}:fill`, type: "fill", ...common, filter: IS_POLYGON,
      paint: { "fill-color": fill, "fill-opacity": outlineOnly ? 0 : field ? 0.85 : 0.35 } },
    { id: `${ds.id}:outline`, type: "line", ...common, filter: IS_POLYGON,
      paint: { "line-color": outlineOnly ? "#7a4b9a" : field ? "#5d5d5d" : colour, "line-width": outlineOnly ? 1.6 : 0.5,
               "line-opacity": 0.9 } },
    { id: `${ds.id}:line`, type: "line", ...common, filter: IS_LINE, paint: { "line-color": colour, "line-width": 2 } },
    { id: `${ds.id}:point`, type: "circle", ...common, filter: IS_POINT,
      paint: { "circle-color": colour, "circle-radius": 5, "circle-stroke-color": "#ffffff", "circle-stroke-width": 1 } },
  ];
}

/** The base style: a plain background (no external service), or the deployment's raster basemap. */
export function baseStyle(config) {
  const style = { version: 8, sources: {}, layers: [{ id: "background", type: "background", paint: { "background-color": "#f3f1ea" } }] };
  if (config.basemap && config.basemap.url) {
    style.sources.basemap = { type: "raster", tiles: [config.basemap.url], tileSize: 256, attribution: config.basemap.attribution || "" };
    style.layers.push({ id: "basemap", type: "raster", source: "basemap" });
  }
  return style;
}

/** Opacity paint properties of a layer, scaled by the user's slider (0–1). */
export function opacityPaint(layer, value) {
  const base = { fill: ["fill-opacity", layer.paint["fill-opacity"]], line: ["line-opacity", layer.paint["line-opacity"] ?? 1],
                 circle: ["circle-opacity", 1] }[layer.type];
  return base ? [base[0], base[1] * value] : null;
}
