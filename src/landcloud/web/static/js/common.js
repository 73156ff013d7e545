// Shared by every portal page: the message catalogue, JSON calls with the session's CSRF token,
// safe DOM building (text only, never HTML from data) and number formats.

const bootEl = document.getElementById("lc-boot");
export const boot = bootEl ? JSON.parse(bootEl.textContent) : { lang: "zh", messages: {}, user: { signed_in: false } };
export const lang = boot.lang;
export const user = boot.user;

/** The message for `key` in the page language, with {name} placeholders filled. */
export function t(key, values = {}) {
  const text = boot.messages[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in values ? String(values[name]) : m));
}

export class ApiError extends Error {
  constructor(status, body) {
    const message = body && (lang === "en" ? body.message_en : body.message_zh);
    super(message || body?.detail || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error || body?.code || `http.${status}`;
    this.body = body;
  }
}

function csrfToken() {
  const m = document.cookie.match(/(?:^|;\s*)landcloud_csrf=([^;]+)/);
  return m ? decodeURIComponent(m[1]) : "";
}

/** Calls a JSON endpoint of the platform, the same one any outside client uses. */
export async function api(path, { method = "GET", json, form, headers = {}, raw = false } = {}) {
  const init = { method, headers: { Accept: "application/json", ...headers }, credentials: "same-origin" };
  if (method !== "GET" && method !== "HEAD") init.headers["X-CSRF-Token"] = csrfToken();
  if (json !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  const resp = await fetch(path, init);
  if (raw && resp.ok) return resp;
  const type = resp.headers.get("content-type") || "";
  const body = type.includes("json") ? await resp.json() : resp.status === 204 ? null : await resp.text();
  if (!resp.ok) throw new ApiError(resp.status, typeof body === "object" ? body : { detail: body });
  return body;
}

/**
 * Sends a form with a file by XMLHttpRequest (fetch reports no upload progress); `onProgress(fraction)`
 * follows the upload. Resolves with the JSON answer, rejects with an ApiError like api().
 */
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", path);
    xhr.setRequestHeader("Accept", "application/json");
    xhr.setRequestHeader("X-CSRF-Token", csrfToken());
    xhr.responseType = "json";
    xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); });
    xhr.upload.addEventListener("load", () => onProgress(1));
    xhr.addEventListener("load", () => {
      if (xhr.status >= 200 && xhr.status < 300) resolve(xhr.response);
      else reject(new ApiError(xhr.status, xhr.response && typeof xhr.response === "object" ? xhr.response : { detail: `HTTP ${xhr.status}` }));
    });
    xhr.addEventListener("error", () => reject(new Error("network")));
    xhr.send(form);
  });
}

/** Builds an element; strings become text nodes, so data can never inject markup. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export function clear(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}

const nf = (digits) => new Intl.NumberFormat(lang === "en" ? "en-GB" : "zh-CN", { maximumFractionDigits: digits, minimumFractionDigits: digits });
export const fmt = (value, digits = 0) => (value === null || value === undefined || Number.isNaN(value) ? "–" : nf(digits).format(value));

/** An area in m² the way land staff read it: m², 亩 and 公顷. */
export function fmtArea(m2) {
  if (m2 === null || m2 === undefined) return "–";
  return `${fmt(m2, 2)} ${t("unit.m2")} · ${fmt(m2 / (10000 / 15), 2)} ${t("unit.mu")} · ${fmt(m2 / 10000, 4)} ${t("unit.ha")}`;
}

export function fmtDate(iso) {
  if (!iso) return "–";
  const d = new Date(iso.endsWith("Z") || /[+-]\d\d:\d\d$/.test(iso) ? iso : `${iso}Z`);
  return d.toLocaleString(lang === "en" ? "en-GB" : "zh-CN", { hour12: false });
}

export function flash(message, kind = "info") {
  const box = document.getElementById("flash");
  if (!box) return;
  clear(box, el("p", { class: `flash ${kind}` }, message));
}

export function errorText(err) {
  return err instanceof ApiError ? err.message : t("common.network_error");
}

/** A table: header message keys (or "" for an empty header) and rows of cells. */
export function grid(testid, headKeys, rows) {
  return el("div", { class: "table-scroll" }, el("table", { class: "grid", "data-testid": testid },
    el("thead", {}, el("tr", {}, headKeys.map((k) => el("th", { scope: "col" }, k ? t(k) : "")))),
    el("tbody", {}, rows)));
}

/** A panel section with its heading. */
export function section(title, ...children) {
  return el("section", { class: "panel" }, el("h2", {}, title), ...children);
}

export const hasRole = (role) => (user.roles || []).includes(role);
/** Bilingual text of an API object with message_zh / message_en (or reason_zh / reason_en …). */
export const pick = (obj, base = "message") => (obj ? (lang === "en" ? obj[`${base}_en`] || obj[`${base}_zh`] : obj[`${base}_zh`] || obj[`${base}_en`]) : "");

/** Dataset title in the page language. */
export const titleOf = (ds) => (lang === "en" && ds.title_en ? ds.title_en : ds.title);
export const themeOf = (ds) => t(`theme.${ds.theme}`);

// header: phone menu and sign-out
document.querySelector(".menu-toggle")?.addEventListener("click", (e) => {
  const nav = document.getElementById("nav");
  const open = nav.classList.toggle("open");
  e.currentTarget.setAttribute("aria-expanded", String(open));
});
document.getElementById("signout")?.addEventListener("click", async () => {
  try {
    await api("/api/auth/logout", { method: "POST" });
  } finally {
    window.location.href = "/";
  }
});
