// A dataset page: metadata, schema with Chinese aliases, versions and their differences (table
// and map), quality report, downloads, API/OGC links, and "apply for access" where sharing asks for it.
import { api, boot, clear, el, errorText, fmt, fmtDate, lang, section, t, themeOf, titleOf, user } from "./common.js";

const root = document.getElementById("dataset");
const id = boot.dataset_id;
const enc = encodeURIComponent(id);
const FORMATS = ["gpkg", "shp", "geojson", "csv", "fgb", "parquet", "kml"];

function dl(pairs) {
  return el("dl", { class: "facts" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "").flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function metadata(ds) {
  return section(t("dataset.metadata"), dl([
    [t("dataset.id"), ds.id],
    [t("dataset.edition_of"), ds.edition_of && user.signed_in ? el("a", { href: `/datasets/${encodeURIComponent(ds.edition_of)}` }, ds.edition_of) : null],
    [t("dataset.theme"), themeOf(ds)],
    [t("dataset.owner"), ds.owner_unit],
    [t("dataset.sharing"), t(`sharing.${ds.sharing_class}`)],
    [t("dataset.openness"), t(`openness.${ds.openness}`)],
    [t("dataset.security"), t(`security.${ds.security_level}`)],
    [t("dataset.frequency"), ds.update_frequency ? t(`frequency.${ds.update_frequency}`) : null],
    [t("dataset.keywords"), (ds.keywords || []).join("，")],
    [t("dataset.features"), fmt(ds.feature_count)],
    [t("dataset.version"), ds.current_version],
    [t("dataset.extent"), ds.extent ? ds.extent.map((v) => v.toFixed(4)).join(", ") : t("dataset.extent_hidden")],
    [t("dataset.updated"), fmtDate(ds.updated_at)],
  ]));
}

function schema(ds) {
  return section(t("dataset.schema"), el("table", { class: "grid", "data-testid": "schema" },
    el("thead", {}, el("tr", {}, el("th", {}, t("dataset.field")), el("th", {}, t("dataset.alias")), el("th", {}, t("dataset.type")), el("th", {}, t("dataset.note")))),
    el("tbody", {}, (ds.fields || []).map((f) => el("tr", {}, el("td", {}, el("code", {}, f.name)), el("td", {}, f.alias_zh || "–"), el("td", {}, f.type || ""),
      el("td", {}, [f.masked ? t("dataset.masked") : "", f.sensitive ? t("dataset.sensitive") : ""].filter(Boolean).join(" ")))))));
}

function accessBox(ds) {
  const a = ds.access || {};
  if (a.rows !== "none") {
    return section(t("dataset.access"), el("p", {}, a.rows === "all" ? t("dataset.access_all") : t("dataset.access_restricted"),
      el("span", { class: "muted" }, ` (${(a.basis || []).join(", ")})`)));
  }
  if (!a.can_apply) return section(t("dataset.access"), el("p", {}, t("dataset.not_shared")));
  if (!user.signed_in) return section(t("dataset.access"), el("p", {}, t("dataset.apply_signin"), " ", el("a", { href: `/signin?next=/datasets/${enc}` }, t("nav.signin"))));
  const purpose = el("textarea", { name: "purpose", required: true, rows: "3", maxlength: "2000" });
  const msg = el("p", { role: "status" });
  const form = el("form", { class: "form", "data-testid": "apply" },
    el("label", {}, t("dataset.apply_purpose"), purpose),
    el("button", { type: "submit" }, t("dataset.apply")), msg);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      const r = await api("/api/applications", { method: "POST", json: { dataset_id: id, purpose: purpose.value } });
      msg.textContent = t("dataset.applied", { id: r.id ?? "" });
      form.querySelector("button").disabled = true;
    } catch (err) {
      msg.textContent = errorText(err);
    }
  });
  return section(t("dataset.access"), el("p", {}, t("dataset.apply_lead", { sharing: t(`sharing.${ds.sharing_class}`) })), form);
}

function links(ds) {
  const o = location.origin;
  const items = [
    [t("dataset.link_json"), `/api/datasets/${enc}`],
    [t("dataset.link_ogc"), `/ogc/collections/${enc}`],
    [t("dataset.link_items"), `/ogc/collections/${enc}/items?f=json`],
    [t("dataset.link_tiles"), `/ogc/collections/${enc}/tiles/WebMercatorQuad/tilejson.json`],
    [t("dataset.link_record"), `/ogc/collections/catalog/items/${enc}`],
  ];
  return section(t("dataset.links"), el("ul", { class: "links" }, items.map(([label, href]) => el("li", {}, `${label}: `, el("a", { href }, `${o}${href}`)))),
    ds.access?.rows !== "none" ? el("p", {}, t("dataset.downloads"), " ", FORMATS.map((f) => [el("a", { href: `/api/datasets/${enc}/download?format=${f}`, class: "chip", "data-format": f }, f.toUpperCase()), " "])) : null);
}

function versionsTable(ds, versions, onDiff) {
  const isAdmin = user.signed_in && (user.roles || []).includes("data_admin");
  const rows = versions.map((v) => el("tr", { "data-version": v.version },
    el("td", {}, `v${v.version}`), el("td", {}, fmtDate(v.created_at)), el("td", {}, t(`mode.${v.mode}`)),
    el("td", { class: "num" }, fmt(v.feature_count)), el("td", { class: "num" }, `+${fmt(v.added)} −${fmt(v.removed)} ~${fmt(v.changed)}`),
    el("td", {}, v.report_summary ? t("dataset.report_summary", { errors: v.report_summary.errors ?? 0, warnings: v.report_summary.warnings ?? 0 }) : "–",
      v.submission_id && user.signed_in ? [" ", el("a", { href: `/api/submissions/${encodeURIComponent(v.submission_id)}/report.html` }, t("dataset.report"))] : null),
    el("td", {}, v.note || ""),
    el("td", {}, isAdmin && v.version !== ds.current_version ? el("button", { type: "button", class: "small", onclick: () => rollback(v.version) }, t("dataset.rollback")) : null)));
  const a = el("select", { "aria-label": t("dataset.diff_from") }, versions.map((v) => el("option", { value: v.version }, `v${v.version}`)));
  const b = el("select", { "aria-label": t("dataset.diff_to") }, versions.map((v) => el("option", { value: v.version }, `v${v.version}`)));
  if (versions.length > 1) {
    a.value = String(versions.at(-2).version);
    b.value = String(versions.at(-1).version);
  }
  const diffForm = el("form", { class: "inline-form" }, t("dataset.diff_from"), a, t("dataset.diff_to"), b, el("button", { type: "submit" }, t("dataset.compare")));
  diffForm.addEventListener("submit", (e) => { e.preventDefault(); onDiff(Number(a.value), Number(b.value)); });
  return Object.assign(section(t("dataset.versions"),
    el("table", { class: "grid", "data-testid": "versions" }, el("thead", {}, el("tr", {}, ["dataset.v", "dataset.created", "dataset.mode", "dataset.features", "dataset.changes", "dataset.quality", "dataset.note", ""].map((k) => el("th", {}, k ? t(k) : "")))), el("tbody", {}, rows)),
    versions.length > 1 ? diffForm : null), { id: "versions" });
}

async function rollback(version) {
  if (!window.confirm(t("dataset.rollback_confirm", { version }))) return;
  try {
    const r = await api(`/api/datasets/${enc}/rollback`, { method: "POST", json: { to: version } });
    alert(t("dataset.rolled_back", { version: r.version }));
    location.reload();
  } catch (err) {
    alert(errorText(err));
  }
}

const KIND_COLOURS = { added: "#1a9850", removed: "#d73027", changed: "#fc8d59" };

async function showDiff(box, from, to) {
  clear(box, el("p", { class: "muted" }, t("common.loading")));
  try {
    const d = await api(`/api/datasets/${enc}/versions/${from}/diff/${to}?limit=200&geometry=true`);
    const table = el("table", { class: "grid", "data-testid": "diff" },
      el("thead", {}, el("tr", {}, el("th", {}, t("dataset.change")), el("th", {}, t("dataset.key")), el("th", {}, t("dataset.changed_fields")))),
      el("tbody", {}, d.entries.map((x) => el("tr", { class: `diff-${x.kind}` }, el("td", {}, t(`diff.${x.kind}`)), el("td", {}, x.key), el("td", {}, x.changed_fields.join(", "))))));
    const mapBox = el("div", { class: "diffmap", id: "diffmap" });
    clear(box, el("p", {}, t("dataset.diff_counts", { from, to, added: d.counts.added, removed: d.counts.removed, changed: d.counts.changed })),
      mapBox, table, d.entries.length < d.counts.added + d.counts.removed + d.counts.changed ? el("p", { class: "muted" }, t("dataset.diff_more", { n: d.entries.length })) : null);
    diffMap(mapBox, d.entries);
  } catch (err) {
    clear(box, el("p", { class: "error" }, errorText(err)));
  }
}

function diffMap(container, entries) {
  const features = entries.flatMap((x) => {
    const g = x.kind === "removed" ? x.geometry_before : x.geometry_after || x.geometry_before;
    return g ? [{ type: "Feature", geometry: g, properties: { kind: x.kind, key: x.key } }] : [];
  });
  if (!features.length || !window.maplibregl) {
    container.remove();
    return;
  }
  const coords = features.flatMap((f) => JSON.stringify(f.geometry.coordinates).match(/-?\d+\.?\d*,-?\d+\.?\d*/g).map((p) => p.split(",").map(Number)));
  const bounds = [Math.min(...coords.map((c) => c[0])), Math.min(...coords.map((c) => c[1])), Math.max(...coords.map((c) => c[0])), Math.max(...coords.map((c) => c[1]))];
  const map = new maplibregl.Map({ container, style: { version: 8, sources: {}, layers: [{ id: "bg", type: "background", paint: { "background-color": "#f3f1ea" } }] }, bounds, fitBoundsOptions: { padding: 30 } });
  map.on("load", () => {
    map.addSource("diff", { type: "geojson", data: { type: "FeatureCollection", features } });
    const colour = ["match", ["get", "kind"], "added", KIND_COLOURS.added, "removed", KIND_COLOURS.removed, KIND_COLOURS.changed];
    map.addLayer({ id: "diff-fill", type: "fill", source: "diff", paint: { "fill-color": colour, "fill-opacity": 0.5 } });
    map.addLayer({ id: "diff-line", type: "line", source: "diff", paint: { "line-color": colour, "line-width": 1.5 } });
    container.dataset.ready = "true";
  });
  window.lcDiffMap = map;
}

async function start() {
  let ds;
  try {
    ds = await api(`/api/datasets/${enc}`);
  } catch (err) {
    clear(root, el("section", { class: "panel" }, el("h1", {}, t("dataset.not_found")), el("p", { class: "error" }, errorText(err))));
    return;
  }
  document.title = `${titleOf(ds)} · ${t("app.name")}`;
  const head = el("header", { class: "panel" }, el("h1", {}, titleOf(ds)), lang === "zh" && ds.title_en ? el("p", { class: "muted" }, ds.title_en) : null,
    el("p", {}, ds.description || ""),
    ds.access?.rows !== "none" ? el("p", {}, el("a", { href: `/map?dataset=${enc}`, class: "button" }, t("dataset.open_map"))) : null);
  const parts = [head, accessBox(ds), metadata(ds), schema(ds)];
  if (ds.access?.rows !== "none") {
    try {
      const v = await api(`/api/datasets/${enc}/versions`);
      const diffBox = el("div", { id: "diff-box" });
      parts.push(versionsTable(ds, v.versions, (a, b) => showDiff(diffBox, a, b)), section(t("dataset.differences"), diffBox));
    } catch (err) {
      parts.push(section(t("dataset.versions"), el("p", { class: "error" }, errorText(err))));
    }
  }
  parts.push(links(ds));
  clear(root, parts);
  if (location.hash === "#versions") document.getElementById("versions")?.scrollIntoView();
  root.dataset.ready = "true";
}

start();
