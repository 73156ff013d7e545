// Administration, one page for the three separated administrators (三员分立): each sees only
// the section of their own role — units and users (security), status and settings (system),
// audit search, verification and export (audit).
import { api, clear, el, errorText, fmt, fmtDate, grid, hasRole, lang, pick, section, t } from "./common.js";

const root = document.getElementById("admin");

function field(label, input) {
  return el("label", {}, label, input);
}

function message() {
  return el("p", { role: "status", class: "form-message" });
}

function say(box, text, kind = "info") {
  box.textContent = text;
  box.className = `form-message ${kind}`;
}

/** A form whose `action` calls the API and returns the success message; a refusal shows the API's own message. */
function wire(form, msg, refresh, action) {
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      say(msg, await action());
      form.reset();
      await refresh();
    } catch (err) {
      say(msg, errorText(err), "error");
    }
  });
}

// --- security administrator: units and users -------------------------------------------------

async function unitsSection() {
  const box = el("div", { "data-testid": "units" }, el("p", { class: "muted" }, t("common.loading")));
  const code = el("input", { name: "code", required: true, pattern: "[A-Za-z0-9._\\-]{3,32}" });
  const name = el("input", { name: "name", required: true, maxlength: "100" });
  const region = el("input", { name: "region", required: true, list: "admin-regions", inputmode: "numeric", placeholder: "230100" });
  const regions = el("datalist", { id: "admin-regions" });
  const msg = message();
  const form = el("form", { class: "inline-form", "data-testid": "add-unit" },
    field(t("admin.unit_code"), code), field(t("admin.unit_name"), name), field(t("admin.unit_region"), region), regions,
    el("button", { type: "submit" }, t("admin.add_unit")));
  const refresh = async () => {
    const r = await api("/api/units?kind=department");
    clear(box, r.units.length ? grid("departments", ["admin.unit_code", "admin.unit_name", "admin.unit_region"],
      r.units.map((u) => el("tr", { "data-unit": u.code }, el("td", {}, u.code), el("td", {}, u.name), el("td", {}, u.parent || "–"))))
      : el("p", { class: "muted" }, t("admin.no_departments")));
  };
  wire(form, msg, refresh, async () => {
    await api("/api/units", { method: "POST", json: { code: code.value.trim(), name: name.value.trim(), region: region.value.trim() } });
    return t("admin.unit_added", { code: code.value.trim() });
  });
  api("/api/regions?level=prefecture&limit=200").then((r) => clear(regions, r.regions.map((g) => el("option", { value: g.code }, g.name)))).catch(() => {});
  await refresh();
  return section(t("admin.units"), box, el("h3", {}, t("admin.add_unit")), form, msg);
}

function roleName(roles, id) {
  const r = roles.find((x) => x.id === id);
  return r ? (lang === "en" ? r.name_en : r.name_zh) : id;
}

async function usersSection() {
  const roles = (await api("/api/roles")).roles;
  const box = el("div", { "data-testid": "users" });
  const msg = message();
  const refresh = async () => {
    const r = await api("/api/users");
    clear(box, grid("user-list", ["admin.username", "admin.display_name", "admin.unit", "admin.roles", "admin.totp", "admin.state", ""],
      r.users.map((u) => el("tr", { "data-user": u.username, "data-active": String(u.active) },
        el("td", {}, u.username), el("td", {}, u.display_name || "–"), el("td", {}, u.unit),
        el("td", {}, u.roles.map((id) => roleName(roles, id)).join("、")),
        el("td", {}, t(u.totp_enrolled ? "admin.totp_on" : "admin.totp_off")),
        el("td", {}, t(u.active ? "admin.active" : "admin.disabled")),
        el("td", {}, el("button", { type: "button", class: "small", "data-action": u.active ? "disable" : "enable",
          onclick: () => setActive(u.username, !u.active) }, t(u.active ? "admin.disable" : "admin.enable")), " ",
          el("button", { type: "button", class: "small", "data-action": "totp", onclick: () => resetTotp(u.username) },
            t(u.totp_enrolled ? "admin.totp_reset" : "admin.totp_enrol")))))));
  };
  // The secret is in this answer only: shown once, for the security administrator to hand over.
  const secretBox = el("div", { "data-testid": "totp-secret" });
  const resetTotp = async (username) => {
    if (!window.confirm(t("admin.totp_reset_confirm", { username }))) return;
    try {
      const r = await api(`/api/users/${encodeURIComponent(username)}/totp`, { method: "POST" });
      clear(secretBox, [el("p", {}, t("admin.totp_secret_shown", { username: r.username })),
        el("dl", { class: "facts" }, el("dt", {}, t("admin.totp_secret")), el("dd", {}, el("code", { "data-secret": "" }, r.secret)),
          el("dt", {}, t("admin.totp_uri")), el("dd", {}, el("code", { class: "wrap" }, r.otpauth_uri)))]);
      await refresh();
    } catch (err) {
      say(msg, errorText(err), "error");
    }
  };
  const setActive = async (username, active) => {
    try {
      await api(`/api/users/${encodeURIComponent(username)}`, { method: "PATCH", json: { active } });
      say(msg, t(active ? "admin.user_enabled" : "admin.user_disabled", { username }));
      await refresh();
    } catch (err) {
      say(msg, errorText(err), "error");
    }
  };
  const username = el("input", { name: "username", required: true, pattern: "[A-Za-z0-9_.\\-]{3,64}", autocomplete: "off" });
  const display = el("input", { name: "display_name", maxlength: "100" });
  const unit = el("input", { name: "unit", required: true, list: "admin-units", autocomplete: "off" });
  const units = el("datalist", { id: "admin-units" });
  const password = el("input", { name: "password", type: "password", required: true, autocomplete: "new-password" });
  const roleBoxes = roles.map((r) => el("label", { class: "check" }, el("input", { type: "checkbox", name: "roles", value: r.id }), ` ${lang === "en" ? r.name_en : r.name_zh}`));
  const form = el("form", { class: "form", "data-testid": "add-user" },
    el("div", { class: "inline-form" }, field(t("admin.username"), username), field(t("admin.display_name"), display),
      field(t("admin.unit"), unit), units, field(t("admin.password"), password)),
    el("fieldset", { class: "roles" }, el("legend", {}, t("admin.roles")), roleBoxes),
    el("p", { class: "muted" }, t("admin.roles_hint")),
    el("div", {}, el("button", { type: "submit" }, t("admin.add_user"))));
  wire(form, msg, refresh, async () => {
    const chosen = [...form.querySelectorAll("input[name=roles]:checked")].map((b) => b.value);
    const u = await api("/api/users", { method: "POST", json: { username: username.value.trim(), display_name: display.value.trim(),
      unit: unit.value.trim(), roles: chosen, password: password.value } });
    return t("admin.user_added", { username: u.username });
  });
  api("/api/units").then((r) => clear(units, r.units.map((u) => el("option", { value: u.code }, u.name)))).catch(() => {});
  await refresh();
  return section(t("admin.users"), box, secretBox, el("h3", {}, t("admin.add_user")), form, msg);
}

// --- system administrator: status and settings -----------------------------------------------

async function systemSection() {
  const [s, settings] = await Promise.all([api("/api/system/status"), api("/api/system/settings")]);
  const facts = [["admin.version", s.version], ["admin.store", s.store], ["admin.schema_revision", s.schema_revision],
    ["admin.datasets", fmt(s.datasets)], ["admin.unit_count", fmt(s.units)], ["admin.user_count", fmt(s.users)]];
  const shown = (x) => {
    if (x.secret) return el("em", {}, t(x.set ? "admin.secret_set" : "admin.secret_unset"));
    if (x.value === null || x.value === undefined || x.value === "") return el("span", { class: "muted" }, t("admin.not_set"));
    return el("code", {}, String(x.value));
  };
  return section(t("admin.system"),
    el("dl", { class: "facts", "data-testid": "system-status" }, facts.flatMap(([k, v]) => [el("dt", {}, t(k)), el("dd", {}, v ?? "–")])),
    el("h3", {}, t("admin.settings")), el("p", { class: "muted" }, t("admin.settings_lead")),
    grid("settings", ["admin.setting_env", "admin.setting_value", "admin.setting_default", "admin.setting_description"],
      settings.settings.map((x) => el("tr", { "data-setting": x.env },
        el("td", {}, el("code", {}, x.env)), el("td", {}, shown(x)), el("td", {}, t(x.default ? "admin.yes" : "admin.no")),
        el("td", {}, lang === "en" ? x.description : x.description_zh || x.description)))));
}

// --- audit administrator: search, verify, export --------------------------------------------

function auditSection() {
  const inputs = {
    actor: el("input", { name: "actor", autocomplete: "off" }),
    unit: el("input", { name: "unit", autocomplete: "off" }),
    action: el("input", { name: "action", placeholder: "application.*", autocomplete: "off" }),
    dataset_id: el("input", { name: "dataset_id", autocomplete: "off" }),
    since: el("input", { name: "since", type: "datetime-local" }),
    until: el("input", { name: "until", type: "datetime-local" }),
  };
  const labels = { actor: "admin.audit_actor", unit: "admin.unit", action: "admin.audit_action", dataset_id: "admin.audit_dataset",
    since: "admin.audit_since", until: "admin.audit_until" };
  const out = el("div", { "data-testid": "audit-results" });
  const exportLink = el("a", { class: "button", href: "/api/audit/export.csv", "data-testid": "audit-export", download: "" }, t("admin.audit_export"));
  const verifyOut = el("p", { role: "status", "data-testid": "audit-verify" });
  const query = () => {
    const q = new URLSearchParams();
    for (const [k, input] of Object.entries(inputs)) {
      const v = input.value.trim();
      // datetime-local is the browser's local time: send it with its offset
      if (v) q.set(k, input.type === "datetime-local" ? new Date(v).toISOString() : v);
    }
    return q;
  };
  const search = async () => {
    const q = query();
    exportLink.href = `/api/audit/export.csv${q.size ? `?${q}` : ""}`;
    q.set("limit", "200");
    clear(out, el("p", { class: "muted" }, t("common.loading")));
    try {
      const r = await api(`/api/audit?${q}`);
      clear(out, el("p", { class: "muted" }, t("admin.audit_count", { n: r.count })),
        grid("audit-entries", ["admin.audit_seq", "admin.audit_at", "admin.audit_actor", "admin.unit", "admin.audit_action", "admin.audit_dataset", "admin.audit_detail"],
          r.entries.map((x) => el("tr", { "data-seq": x.seq, "data-action": x.action },
            el("td", { class: "num" }, x.seq), el("td", {}, fmtDate(x.at)), el("td", {}, x.actor), el("td", {}, x.actor_unit || "–"),
            el("td", {}, el("code", {}, x.action)), el("td", {}, x.dataset_id || "–"),
            el("td", { class: "detail" }, typeof x.detail === "string" ? x.detail : JSON.stringify(x.detail))))));
    } catch (err) {
      clear(out, el("p", { class: "error" }, errorText(err)));
    }
  };
  const verify = async () => {
    verifyOut.textContent = t("common.loading");
    try {
      const r = await api("/api/audit/verify");
      verifyOut.dataset.ok = String(r.ok);
      verifyOut.className = r.ok ? "ok" : "error";
      verifyOut.textContent = r.ok ? t("admin.audit_intact", { n: fmt(r.checked) })
        : t("admin.audit_broken", { seq: r.first_broken_seq, reason: pick(r, "reason") });
    } catch (err) {
      verifyOut.className = "error";
      verifyOut.textContent = errorText(err);
    }
  };
  const form = el("form", { class: "inline-form", "data-testid": "audit-search" },
    Object.entries(inputs).map(([k, input]) => field(t(labels[k]), input)),
    el("button", { type: "submit" }, t("admin.audit_search")));
  form.addEventListener("submit", (e) => { e.preventDefault(); search(); });
  search();
  return section(t("admin.audit"), form,
    el("div", { class: "inline-form" }, el("button", { type: "button", "data-testid": "audit-verify-button", onclick: verify }, t("admin.audit_verify")), exportLink),
    verifyOut, out);
}

async function part(build) {
  try {
    return await build();
  } catch (err) {
    return section(t("admin.title"), el("p", { class: "error" }, errorText(err)));
  }
}

async function start() {
  const parts = [];
  if (hasRole("secadmin")) parts.push(await part(unitsSection), await part(usersSection));
  if (hasRole("sysadmin")) parts.push(await part(systemSection));
  if (hasRole("auditadmin")) parts.push(auditSection());
  clear(root, parts.length ? parts : el("p", { class: "muted", "data-testid": "admin-none" }, t("admin.no_role")));
  root.dataset.ready = "true";
}

start();
