// Home: Chinese full-text search and the open catalogue by theme and region.
import { api, clear, el, errorText, fmt, t, themeOf, titleOf } from "./common.js";

const results = document.getElementById("results");
const catalogue = document.getElementById("catalogue");
const regionFilter = document.getElementById("region-filter");

function card(ds) {
  return el("li", { class: "card", "data-dataset": ds.id },
    el("a", { href: `/datasets/${encodeURIComponent(ds.id)}` }, el("strong", {}, titleOf(ds))),
    el("p", { class: "muted" }, `${themeOf(ds)} · ${ds.owner_unit} · ${t(`sharing.${ds.sharing_class}`)}${ds.feature_count != null ? ` · ${fmt(ds.feature_count)} ${t("home.features")}` : ""}`),
    ds.description ? el("p", { class: "desc" }, ds.description) : null);
}

async function search(q) {
  results.hidden = false;
  clear(results, el("p", { class: "muted" }, t("common.loading")));
  try {
    const r = await api(`/api/search?q=${encodeURIComponent(q)}&limit=20`);
    clear(results, el("h2", {}, t("home.results", { n: r.total, q })),
      r.items.length ? el("ul", { class: "cards", "data-testid": "search-results" }, r.items.map(card)) : el("p", {}, t("home.no_results")));
  } catch (err) {
    clear(results, el("p", { class: "error" }, errorText(err)));
  }
}

async function loadCatalogue() {
  const region = regionFilter.value;
  try {
    const r = await api(`/api/search?limit=100${region ? `&region=${encodeURIComponent(region)}` : ""}`);
    const groups = new Map();
    for (const ds of r.items) {
      const key = themeOf(ds);
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(ds);
    }
    clear(catalogue, groups.size ? [...groups.entries()].map(([theme, items]) =>
      el("section", { class: "theme" }, el("h3", {}, `${theme} (${items.length})`), el("ul", { class: "cards" }, items.map(card))))
      : el("p", { class: "muted" }, t("home.empty")));
  } catch (err) {
    clear(catalogue, el("p", { class: "error" }, errorText(err)));
  }
}

async function loadRegions() {
  try {
    for (const level of ["province", "prefecture"]) {
      const r = await api(`/api/regions?level=${level}&limit=200`);
      for (const g of r.regions) regionFilter.append(el("option", { value: g.code }, `${level === "prefecture" ? "　" : ""}${g.name} (${g.code})`));
    }
  } catch { /* the filter is optional */ }
}

document.getElementById("search").addEventListener("submit", (e) => {
  e.preventDefault();
  const q = document.getElementById("q").value.trim();
  if (q) search(q);
});
regionFilter.addEventListener("change", loadCatalogue);
const q0 = new URLSearchParams(location.search).get("q");
if (q0) {
  document.getElementById("q").value = q0;
  search(q0);
}
loadRegions();
loadCatalogue();
