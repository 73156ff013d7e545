// The "what is here" report, built from GET /api/here: one section per layer with the dataset
// and version of every line. Used by the map's identify popup and the printable /here page.
import { el, fmt, fmtArea, fmtDate, lang, t } from "./common.js";

function landClass(f) {
  if (!f.landuse) return null;
  return `${f.landuse.code} ${lang === "en" && f.landuse.name_en ? f.landuse.name_en : f.landuse.name_zh}`;
}

function propertyRows(f, limit) {
  const rows = Object.entries(f.properties || {}).filter(([k]) => !k.startsWith("_"));
  return (limit ? rows.slice(0, limit) : rows).map(([k, v]) => {
    const alias = f.aliases?.[k];
    return el("tr", {}, el("th", { scope: "row" }, alias ? `${alias} (${k})` : k), el("td", {}, v === null || v === undefined ? "–" : String(v)));
  });
}

function featureBlock(f, compact) {
  const cls = landClass(f);
  return el("div", { class: "here-feature", "data-feature": f.id },
    cls ? el("p", { class: "landclass" }, el("strong", {}, t("here.landclass")), " ", cls) : null,
    f.area_m2 != null ? el("p", { class: "area" }, el("strong", {}, t("here.area")), " ", fmtArea(f.area_m2)) : null,
    el("table", { class: "props" }, el("tbody", {}, propertyRows(f, compact ? 6 : 0))));
}

/** Compact summary (popup): one block per layer. */
export function hereSummary(report) {
  if (!report.layers.length) return el("p", { class: "muted" }, t("here.nothing", { checked: report.checked ?? 0 }));
  return el("div", { class: "here-summary" }, report.layers.map((layer) =>
    el("section", { class: "here-layer", "data-dataset": layer.dataset },
      el("h4", {}, layer.title, el("span", { class: "muted" }, ` v${layer.version}`)),
      layer.features.slice(0, 3).map((f) => featureBlock(f, true)))));
}

/** The full report (printable page). */
export function hereReport(report) {
  const p = report.point;
  const gk = report.gauss_kruger;
  const head = el("header", { class: "report-head" },
    el("h2", {}, t("here.report_title")),
    el("p", {}, `CGCS2000 ${t("map.lon")} ${p.lon.toFixed(7)}° ${t("map.lat")} ${p.lat.toFixed(7)}°`),
    // the API gives x = easting, y = northing; surveyors read X as northing and Y as the prefixed easting
    gk ? el("p", {}, `${t("map.gk_zone", { zone: gk.zone, cm: gk.central_meridian })} EPSG:${gk.epsg} X=${fmt(gk.y, 3)} Y=${fmt(gk.x, 3)}`) : null,
    report.division ? el("p", {}, `${t("here.division")} ${report.division.name} (${report.division.code})`) : null,
    el("p", { class: "muted" }, t("here.generated", { time: fmtDate(report.generated_at), checked: report.checked ?? 0 })));
  if (!report.layers.length) return [head, el("p", { class: "muted" }, t("here.nothing", { checked: report.checked ?? 0 }))];
  const layers = report.layers.map((layer) =>
    el("section", { class: "here-layer", "data-dataset": layer.dataset },
      el("h3", {}, layer.title),
      el("p", { class: "muted" }, t("here.source", { dataset: layer.dataset, version: layer.version, theme: lang === "en" ? layer.theme : layer.theme_zh || layer.theme })),
      layer.features.map((f) => featureBlock(f, false))));
  return [head, ...layers];
}
