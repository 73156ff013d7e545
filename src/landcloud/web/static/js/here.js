// 此处是什么: a coordinate (CGCS2000 lon/lat, or Gauss-Kruger x/y with the zone prefix) → one report.
import { api, clear, el, errorText, t } from "./common.js";
import { hereReport } from "./herereport.js";

const form = document.getElementById("here-form");
const crs = document.getElementById("here-crs");
const a = document.getElementById("here-a");
const b = document.getElementById("here-b");
const out = document.getElementById("here-report");
const error = document.getElementById("here-error");

function labels() {
  const gk = crs.value === "gk";
  form.querySelector(".lbl-x").textContent = gk ? t("here.gk_x") : t("here.lon");
  form.querySelector(".lbl-y").textContent = gk ? t("here.gk_y") : t("here.lat");
}

/** The query string for /api/here. GK input as surveyors write it: X northing, Y easting with its
 * zone prefix (EPSG 4513 + zone − 25); the API takes x = easting, y = northing. */
function query() {
  const first = Number(a.value);
  const second = Number(b.value);
  if (!Number.isFinite(first) || !Number.isFinite(second) || a.value.trim() === "" || b.value.trim() === "") throw new Error(t("here.bad_number"));
  if (crs.value !== "gk") return `lon=${first}&lat=${second}`;
  const zone = Math.floor(second / 1000000);
  if (zone < 25 || zone > 45) throw new Error(t("here.bad_zone"));
  return `crs=EPSG:${4513 + zone - 25}&x=${second}&y=${first}`;
}

async function run(qs) {
  error.textContent = "";
  clear(out, el("p", { class: "muted" }, t("common.loading")));
  try {
    const report = await api(`/api/here?${qs}`);
    clear(out, hereReport(report));
    out.dataset.ready = "true";
  } catch (err) {
    clear(out);
    error.textContent = errorText(err);
  }
}

crs.addEventListener("change", labels);
form.addEventListener("submit", (e) => {
  e.preventDefault();
  let qs;
  try {
    qs = query();
  } catch (err) {
    error.textContent = err.message;
    return;
  }
  history.replaceState(null, "", `?${qs}`);
  run(qs);
});
document.getElementById("here-print").addEventListener("click", () => window.print());

const params = new URLSearchParams(location.search);
if (params.get("lon") && params.get("lat")) {
  a.value = params.get("lon");
  b.value = params.get("lat");
  run(`lon=${encodeURIComponent(params.get("lon"))}&lat=${encodeURIComponent(params.get("lat"))}`);
} else if (params.get("x") && params.get("y") && params.get("crs")) {
  crs.value = "gk";
  labels();
  a.value = params.get("y"); // northing
  b.value = params.get("x"); // prefixed easting
  run(`crs=${encodeURIComponent(params.get("crs"))}&x=${encodeURIComponent(params.get("x"))}&y=${encodeURIComponent(params.get("y"))}`);
}
