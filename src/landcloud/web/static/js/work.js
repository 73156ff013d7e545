// My work: my applications and grants, and for a data administrator the approval inbox and
// the unit's datasets (each with its versions and rollback on the dataset page).
import { api, clear, el, errorText, fmtDate, grid, hasRole, section, t, titleOf, user } from "./common.js";

const root = document.getElementById("work");
const state = { units: new Map(), titles: new Map() };

const unitName = (code) => (code && state.units.has(code) ? `${state.units.get(code)} (${code})` : code || "–");
const datasetLink = (id) => el("a", { href: `/datasets/${encodeURIComponent(id)}` }, state.titles.get(id) || id);
const scope = (x) => [x.fields?.length ? t("work.fields", { fields: x.fields.join(", ") }) : t("work.all_fields"),
  x.region ? t("work.region", { region: unitName(x.region) }) : null].filter(Boolean).join(" · ");
const period = (a, b) => `${fmtDate(a)} – ${fmtDate(b)}`;

function lastDecision(app) {
  const d = (app.decisions || []).at(-1);
  if (!d) return "–";
  return [`${t(d.approve ? "work.approved_by" : "work.rejected_by", { by: d.by, unit: unitName(d.unit) })}`, d.comment ? `「${d.comment}」` : ""].join(" ");
}

function statusCell(status) {
  return el("td", { class: `status status-${status}`, "data-status": status }, t(`application.${status}`));
}

function myApplications(mine) {
  if (!mine.length) return section(t("work.my_applications"), el("p", { class: "muted" }, t("work.no_applications")));
  return section(t("work.my_applications"), grid("my-applications", ["work.dataset", "work.purpose", "work.scope", "work.status", "work.decision", "work.applied"],
    mine.map((a) => el("tr", { "data-application": a.id },
      el("td", {}, datasetLink(a.dataset_id)), el("td", {}, a.purpose), el("td", {}, scope(a)), statusCell(a.status),
      el("td", {}, lastDecision(a)), el("td", {}, fmtDate(a.created_at))))));
}

function grantRows(grants, revocable) {
  return grants.map((g) => {
    const state = g.revoked_at ? "revoked" : g.active ? "active" : "expired";
    const revoke = revocable && !g.revoked_at ? el("button", { type: "button", class: "small", onclick: () => revokeGrant(g) }, t("work.revoke")) : null;
    return el("tr", { "data-grant": g.id, "data-dataset": g.dataset_id },
      el("td", {}, datasetLink(g.dataset_id)), el("td", {}, unitName(g.grantee_unit)), el("td", {}, scope(g)),
      el("td", {}, period(g.starts_at, g.expires_at)), el("td", { "data-state": state }, t(`grant.${state}`)), el("td", {}, revoke));
  });
}

function grantsSection(title, testid, grants, revocable) {
  if (!grants.length) return section(title, el("p", { class: "muted" }, t("work.no_grants")));
  return section(title, grid(testid, ["work.dataset", "work.grantee", "work.scope", "work.period", "work.state", ""], grantRows(grants, revocable)));
}

async function revokeGrant(g) {
  if (!window.confirm(t("work.revoke_confirm", { dataset: state.titles.get(g.dataset_id) || g.dataset_id, unit: unitName(g.grantee_unit) }))) return;
  try {
    await api(`/api/grants/${encodeURIComponent(g.id)}/revoke`, { method: "POST" });
    await load(t("work.revoked"));
  } catch (err) {
    await load(errorText(err), "error");
  }
}

function inboxItem(a) {
  const comment = el("textarea", { rows: "2", maxlength: "2000", "aria-label": t("work.comment"), name: "comment" });
  const msg = el("p", { role: "status" });
  const decide = async (approve) => {
    try {
      const r = await api(`/api/applications/${encodeURIComponent(a.id)}/decision`, { method: "POST", json: { approve, comment: comment.value } });
      await load(t(r.status === "pending" ? "work.decided_next_stage" : approve ? "work.decided_approved" : "work.decided_rejected"));
    } catch (err) {
      msg.textContent = errorText(err);
    }
  };
  return el("li", { class: "card inbox-item", "data-application": a.id },
    el("p", {}, el("strong", {}, datasetLink(a.dataset_id)), " · ", t("work.from_unit", { unit: unitName(a.applicant_unit) })),
    el("p", {}, t("work.purpose"), "：", a.purpose),
    el("p", { class: "muted" }, scope(a), " · ", period(a.period_start, a.period_end), " · ", t(`work.stage_${a.stage}`)),
    el("label", {}, t("work.comment"), comment),
    el("div", { class: "inline-form" },
      el("button", { type: "button", "data-action": "approve", onclick: () => decide(true) }, t("work.approve")),
      el("button", { type: "button", class: "secondary", "data-action": "reject", onclick: () => decide(false) }, t("work.reject"))),
    msg);
}

function inbox(items) {
  return section(t("work.inbox"), items.length ? el("ul", { class: "cards", "data-testid": "inbox" }, items.map(inboxItem))
    : el("p", { class: "muted", "data-testid": "inbox-empty" }, t("work.inbox_empty")));
}

function myDatasets(datasets) {
  const mine = datasets.filter((ds) => ds.owner_unit === user.unit);
  if (!mine.length) return section(t("work.my_datasets"), el("p", { class: "muted" }, t("work.no_datasets")));
  return section(t("work.my_datasets"), el("p", { class: "muted" }, t("work.my_datasets_lead")),
    grid("my-datasets", ["work.dataset", "work.version", "work.sharing", ""], mine.map((ds) => el("tr", { "data-dataset": ds.id },
      el("td", {}, datasetLink(ds.id)), el("td", {}, ds.current_version ? `v${ds.current_version}` : "–"), el("td", {}, t(`sharing.${ds.sharing_class}`)),
      el("td", {}, el("a", { href: `/datasets/${encodeURIComponent(ds.id)}#versions` }, t("work.versions_rollback")))))));
}

async function load(message, kind = "info") {
  try {
    const [apps, grants, units, datasets] = await Promise.all([
      api("/api/applications"), api("/api/grants"), api("/api/units"), api("/api/datasets"),
    ]);
    state.units = new Map(units.units.map((u) => [u.code, u.name]));
    state.titles = new Map(datasets.datasets.map((ds) => [ds.id, titleOf(ds)]));
    const admin = hasRole("data_admin");
    const parts = [
      message ? el("p", { class: `flash ${kind}`, role: "status", "data-testid": "work-message" }, message) : null,
      admin ? inbox(apps.inbox) : null,
      myApplications(apps.mine),
      grantsSection(t("work.my_grants"), "my-grants", grants.held, hasRole("secadmin")),
      admin ? grantsSection(t("work.given_grants"), "given-grants", grants.given, true) : null,
      admin ? myDatasets(datasets.datasets) : null,
    ];
    clear(root, parts);
    root.dataset.ready = "true";
  } catch (err) {
    clear(root, section(t("work.title"), el("p", { class: "error" }, errorText(err))));
  }
}

load();
