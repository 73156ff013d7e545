// 汇交: choose a dataset, upload a file (with progress), then follow the submission until its
// quality report is ready and show it as a table and on a map, with what to do next.
import { api, clear, el, errorText, fmt, fmtDate, grid, pick, section, t, titleOf, upload, user } from "./common.js";

const NEW = "__new__";
const SEVERITY_COLOURS = { error: "#d73027", warning: "#f08a24", info: "#4575b4" };
const form = document.getElementById("submit-form");
const $ = (id) => document.getElementById(id);
const choice = $("sub-dataset");
const result = $("sub-result");
const status = $("sub-status");
const error = $("sub-error");
const progress = $("sub-progress");
const progressText = $("sub-progress-text");

async function loadDatasets(selected) {
  let mine = [];
  try {
    const r = await api("/api/datasets");
    mine = r.datasets.filter((ds) => ds.owner_unit === user.unit);
  } catch (err) {
    error.textContent = errorText(err);
  }
  clear(choice, el("option", { value: "" }, t("submit.dataset_pick")),
    mine.map((ds) => el("option", { value: ds.id }, `${titleOf(ds)} (${ds.id}) v${ds.current_version ?? 0}`)),
    el("option", { value: NEW }, t("submit.dataset_new")));
  if (selected && mine.some((ds) => ds.id === selected)) choice.value = selected;
  showNewFields();
  choice.dataset.ready = "true";
}

function showNewFields() {
  const isNew = choice.value === NEW;
  $("sub-new").hidden = !isNew;
  $("sub-new-id").required = isNew;
}

function showKey() {
  const incremental = $("sub-mode").value === "incremental";
  $("sub-key-label").hidden = !incremental;
  $("sub-key").required = incremental;
}

function datasetId() {
  return choice.value === NEW ? $("sub-new-id").value.trim() : choice.value;
}

function formData() {
  const data = new FormData();
  data.append("file", $("sub-file").files[0]);
  data.append("dataset", datasetId());
  if (choice.value === NEW && $("sub-title").value.trim()) data.append("title", $("sub-title").value.trim());
  for (const [name, id] of [["layer", "sub-layer"], ["crs", "sub-crs"], ["encoding", "sub-encoding"], ["schema", "sub-schema"],
    ["dlbm_system", "sub-dlbm"], ["mode", "sub-mode"]]) {
    const v = $(id).value.trim();
    if (v) data.append(name, v);
  }
  if ($("sub-mode").value === "incremental") data.append("key", $("sub-key").value.trim());
  if ($("sub-repair").checked) data.append("repair", "true");
  return data;
}

function setProgress(fraction) {
  const pct = Math.round(fraction * 100);
  progress.value = pct;
  progressText.textContent = `${pct}%`;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function follow(id) {
  for (let wait = 400; ; wait = Math.min(wait * 1.5, 3000)) {
    const sub = await api(`/api/submissions/${encodeURIComponent(id)}`);
    if (!["pending", "running"].includes(sub.status)) return sub;
    status.textContent = t(`submit.status_${sub.status}`);
    await sleep(wait);
  }
}

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  error.textContent = "";
  if (!$("sub-file").files.length) {
    error.textContent = t("submit.no_file");
    return;
  }
  const send = $("sub-send");
  send.disabled = true;
  $("sub-progress-box").hidden = false;
  setProgress(0);
  result.hidden = true;
  status.textContent = t("submit.uploading");
  try {
    const accepted = await upload("/api/submissions", formData(), setProgress);
    setProgress(1);
    status.textContent = t("submit.status_pending");
    const sub = await follow(accepted.id);
    status.textContent = t(`submit.status_${sub.status}`);
    showResult(sub);
  } catch (err) {
    status.textContent = "";
    error.textContent = errorText(err);
  } finally {
    send.disabled = false;
  }
});

function severityCell(severity) {
  return el("td", { class: `sev sev-${severity}` }, t(`severity.${severity}`));
}

function summaryFacts(sub, report) {
  const s = report.summary || {};
  const src = report.source || {};
  const facts = [
    [t("submit.r_dataset"), report.dataset_id || sub.dataset_id],
    [t("submit.r_file"), sub.filename],
    [t("submit.r_status"), t(`submit.status_${sub.status}`)],
    [t("submit.r_version"), s.version != null ? `v${s.version}` : null],
    [t("submit.r_features"), s.feature_count != null ? fmt(s.feature_count) : null],
    [t("submit.r_changes"), s.added != null ? t("submit.changes", { added: fmt(s.added), removed: fmt(s.removed), changed: fmt(s.changed) }) : null],
    [t("submit.r_findings"), t("dataset.report_summary", { errors: s.errors ?? 0, warnings: s.warnings ?? 0 })],
    [t("submit.r_format"), [src.format, src.layer].filter(Boolean).join(" · ") || null],
    [t("submit.r_crs"), src.crs ? `${src.crs.submitted} — ${pick(src.crs)}` : null],
    [t("submit.r_encoding"), src.encoding ? `${src.encoding.encoding} — ${pick(src.encoding)}` : null],
    [t("submit.r_finished"), sub.finished_at ? fmtDate(sub.finished_at) : null],
  ];
  return el("dl", { class: "facts", "data-testid": "report-summary" },
    facts.filter(([, v]) => v !== null && v !== undefined && v !== "").flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function byRuleTable(summary) {
  const rows = Object.entries(summary.by_rule || {}).map(([name, n]) => {
    const [severity, rule] = name.split(":");
    return el("tr", { "data-rule": rule }, el("td", {}, el("code", {}, rule)), severityCell(severity), el("td", { class: "num" }, fmt(n)));
  });
  return rows.length ? grid("report-rules", ["submit.rule", "submit.severity", "submit.count"], rows) : null;
}

function findingsTable(findings, map) {
  const rows = findings.map((f, i) => el("tr", { "data-rule": f.rule, "data-severity": f.severity, "data-finding": i },
    el("td", {}, el("code", {}, f.rule)), severityCell(f.severity),
    el("td", {}, f.feature_key ?? (f.feature_index != null ? `#${f.feature_index}` : "–")),
    el("td", {}, pick(f)),
    el("td", {}, f.location ? el("button", { type: "button", class: "small", onclick: () => map.focus(i) }, t("submit.show_on_map")) : "–")));
  return grid("findings", ["submit.rule", "submit.severity", "submit.feature", "submit.message", "submit.where"], rows);
}

/** The dataset's current features as grey outlines under the findings, when the caller may read them. */
async function addContext(map, datasetId) {
  try {
    const ds = await api(`/api/datasets/${encodeURIComponent(datasetId)}`);
    if (!ds.current_version || ds.access?.rows === "none") return;
    map.addSource("context", { type: "vector", tiles: [`${location.origin}/ogc/collections/${encodeURIComponent(ds.id)}/tiles/WebMercatorQuad/{z}/{y}/{x}`],
      bounds: ds.extent || undefined, maxzoom: 16 });
    map.addLayer({ id: "context-outline", type: "line", source: "context", "source-layer": ds.id, paint: { "line-color": "#8a8f93", "line-width": 0.8 } },
      "findings-points");
  } catch { /* a new dataset has no features yet: the findings alone */ }
}

/** The findings with a location as points on a MapLibre map (the report holds points, in CGCS2000 lon/lat). */
function findingsMap(container, findings, datasetId) {
  const features = findings.flatMap((f, i) => (f.location ? [{
    type: "Feature", id: i, geometry: { type: "Point", coordinates: f.location },
    properties: { finding: i, rule: f.rule, severity: f.severity, feature: f.feature_key ?? "" },
  }] : []));
  const handle = { focus: () => {} };
  container.dataset.points = String(features.length);
  if (!features.length || !window.maplibregl) {
    container.hidden = true;
    return handle;
  }
  const xs = features.map((f) => f.geometry.coordinates[0]);
  const ys = features.map((f) => f.geometry.coordinates[1]);
  const pad = 0.002;
  const bounds = [Math.min(...xs) - pad, Math.min(...ys) - pad, Math.max(...xs) + pad, Math.max(...ys) + pad];
  const map = new maplibregl.Map({ container, style: { version: 8, sources: {}, layers: [{ id: "bg", type: "background", paint: { "background-color": "#f3f1ea" } }] },
    bounds, fitBoundsOptions: { padding: 40 } });
  map.addControl(new maplibregl.NavigationControl({ visualizePitch: false }), "top-right");
  map.on("load", () => {
    map.addSource("findings", { type: "geojson", data: { type: "FeatureCollection", features } });
    map.addLayer({ id: "findings-points", type: "circle", source: "findings", paint: {
      "circle-radius": 7, "circle-stroke-color": "#ffffff", "circle-stroke-width": 2,
      "circle-color": ["match", ["get", "severity"], "error", SEVERITY_COLOURS.error, "warning", SEVERITY_COLOURS.warning, SEVERITY_COLOURS.info] } });
    map.on("click", "findings-points", (e) => popup(map, findings, e.features[0].properties.finding));
    addContext(map, datasetId).finally(() => {
      map.once("idle", () => { container.dataset.ready = "true"; });
      map.triggerRepaint(); // idle comes after the next frame, even if nothing was added
    });
  });
  window.lcFindingsMap = map; // for the browser tests and the console
  handle.focus = (i) => {
    map.jumpTo({ center: findings[i].location, zoom: Math.max(map.getZoom(), 15) });
    popup(map, findings, i);
    container.scrollIntoView({ block: "nearest" });
  };
  return handle;
}

function popup(map, findings, i) {
  const f = findings[i];
  new maplibregl.Popup({ maxWidth: "320px" }).setLngLat(f.location)
    .setDOMContent(el("div", { "data-testid": "finding-popup" }, el("strong", {}, `${t(`severity.${f.severity}`)} · ${f.rule}`), el("p", {}, pick(f))))
    .addTo(map);
}

function nextSteps(sub, report) {
  const id = report.dataset_id || sub.dataset_id;
  if (sub.status === "accepted") {
    return section(t("submit.next"), el("p", {}, t("submit.accepted_lead", { version: report.summary?.version ?? sub.version })),
      el("p", {}, el("a", { class: "button", href: `/datasets/${encodeURIComponent(id)}`, "data-testid": "dataset-link" }, t("submit.open_dataset")), " ",
        el("a", { href: `/api/submissions/${encodeURIComponent(sub.id)}/report.html` }, t("submit.printable"))));
  }
  const again = el("button", { type: "button", "data-testid": "submit-again", onclick: () => {
    $("sub-file").value = "";
    $("sub-file").focus();
    form.scrollIntoView({ block: "start" });
  } }, t("submit.again"));
  return section(t("submit.next"), el("p", {}, t(sub.status === "failed" ? "submit.failed_lead" : "submit.rejected_lead")), el("p", {}, again));
}

function showResult(sub) {
  const report = sub.report || { summary: {}, findings: [] };
  const findings = report.findings || [];
  const problem = report.error ? el("p", { class: "error", role: "alert", "data-testid": "report-error" }, pick(report.error) || report.error.error) : null;
  const layers = report.error?.details?.layers;
  if (layers) clear($("sub-layers"), layers.map((name) => el("option", { value: name })));
  const mapBox = el("div", { class: "findingsmap", id: "findings-map", "data-testid": "findings-map", role: "region", "aria-label": t("submit.findings_map") });
  clear(result,
    el("section", { class: `panel verdict verdict-${sub.status}`, "data-status": sub.status, "data-testid": "verdict" },
      el("h2", {}, t(`submit.verdict_${sub.status}`)), problem, summaryFacts(sub, report)),
    section(t("submit.report"), byRuleTable(report.summary || {}),
      findings.length ? [el("h3", {}, t("submit.findings", { n: findings.length })), mapBox] : el("p", { class: "muted" }, t("submit.no_findings"))),
    nextSteps(sub, report));
  result.hidden = false;
  if (findings.length) {
    const map = findingsMap(mapBox, findings, report.dataset_id || sub.dataset_id);
    mapBox.after(findingsTable(findings, map));
  }
  result.dataset.ready = "true";
  if (sub.status === "accepted") loadDatasets(report.dataset_id || sub.dataset_id);
  result.scrollIntoView({ block: "start" });
}

if (!user.can_submit) { // the API would refuse: say so before anyone picks a file
  status.textContent = t("submit.not_submitter");
  for (const c of form.elements) c.disabled = true;
}
choice.addEventListener("change", showNewFields);
$("sub-mode").addEventListener("change", showKey);
loadDatasets(new URLSearchParams(location.search).get("dataset"));
