// Utilisateurs et rôles: create, change role and scope, disable (each change is audited server-side).
import { $, api, apiPage, badge, cell, el, send, showError } from "./common.js";

export const ROLE_FR = { admin: "Administrateur", operator: "Opérateur", practitioner: "Praticien" };
const state = { users: [], conventions: [], editing: null, search: null, typing: null };
// Accounts shown at once: a national deployment has one per practitioner, 100,000.
const ROWS = 200;
// Practitioners offered as she types (a national directory holds 100,000: never the whole list).
const SUGGESTED = 20;

function scopeText(u) {
  if (u.role === "admin") return "tout le territoire";
  if (u.role === "practitioner") return u.practitioner_name || u.practitioner_id;
  const names = Object.fromEntries(state.conventions.map((c) => [c.id, c.name]));
  return u.conventions.map((id) => names[id] || id).join(", ");
}

function row(u) {
  const tr = el("tr");
  tr.dataset.username = u.username;
  const edit = el("button", "Modifier");
  edit.type = "button";
  edit.className = "edit";
  edit.addEventListener("click", () => openForm(u));
  tr.append(
    cell("Identifiant", u.username),
    cell("Nom", u.display_name),
    cell("Rôle", ROLE_FR[u.role] || u.role),
    cell("Périmètre", scopeText(u)),
    cell("État", u.disabled ? badge("désactivé", "bad") : badge("actif", "ok")),
    cell("", edit),
  );
  return tr;
}

function fillChoices() {
  $("u-conventions").replaceChildren(...state.conventions.map((c) => {
    const label = el("label");
    const box = el("input");
    box.type = "checkbox";
    box.value = c.id;
    label.append(box, ` ${c.name}`);
    return label;
  }));
}

/** Her account's practitioner, found by words of her name, her RPPS or her id as the admin types. */
function suggestPractitioners() {
  clearTimeout(state.search);
  state.search = setTimeout(async () => {
    const typed = $("u-practitioner").value.trim();
    if (!typed) { $("u-practitioner-list").replaceChildren(); return; }
    const found = await api(`/api/practitioners?q=${encodeURIComponent(typed)}&limit=${SUGGESTED}`).catch(() => []);
    $("u-practitioner-list").replaceChildren(...found.map((p) => {
      const option = el("option", `${p.display_name} — RPPS ${p.rpps}`);
      option.value = p.id;
      return option;
    }));
  }, 200);
}

function syncRoleFields() {
  const role = $("u-role").value;
  $("u-conventions-field").hidden = role !== "operator";
  $("u-practitioner-field").hidden = role !== "practitioner";
}

function openForm(user) {
  state.editing = user;
  $("user-form-title").textContent = user ? `Modifier le compte « ${user.username} »` : "Nouveau compte";
  $("u-username").value = user ? user.username : "";
  $("u-username").disabled = Boolean(user);
  $("u-display").value = user ? user.display_name : "";
  $("u-password").value = "";
  $("u-role").value = user ? user.role : "operator";
  $("u-practitioner").value = user?.practitioner_id || "";
  for (const box of $("u-conventions").querySelectorAll("input")) box.checked = Boolean(user?.conventions.includes(box.value));
  $("u-disabled").checked = Boolean(user?.disabled);
  $("u-disabled-field").hidden = !user;
  $("user-error").textContent = "";
  syncRoleFields();
  $("user-form").hidden = false;
  $("u-display").focus();
}

function formBody() {
  const role = $("u-role").value;
  const body = {
    display_name: $("u-display").value.trim(),
    role,
    conventions: role === "operator" ? [...$("u-conventions").querySelectorAll("input:checked")].map((b) => b.value) : [],
    practitioner_id: role === "practitioner" ? $("u-practitioner").value.trim() || null : null,
  };
  if ($("u-password").value) body.password = $("u-password").value;
  if (!state.editing) body.username = $("u-username").value.trim();
  else body.disabled = $("u-disabled").checked;
  return body;
}

async function onSave(event) {
  event.preventDefault();
  const fields = { display_name: "u-display", username: "u-username", password: "u-password" };
  for (const id of Object.values(fields)) $(id).classList.remove("invalid");
  try {
    if (state.editing) await send("PATCH", `/api/users/${state.editing.id}`, formBody());
    else await send("POST", "/api/users", formBody());
    $("user-form").hidden = true;
    await showUsers();
  } catch (error) {
    showError($("user-error"), error);
    for (const f of error.fields) if (fields[f]) $(fields[f]).classList.add("invalid");
  }
}

export async function showUsers() {
  const typed = $("users-q").value.trim();
  const query = new URLSearchParams({ limit: String(ROWS) });
  if (typed) query.set("q", typed);
  let page;
  [page, state.conventions] = await Promise.all([apiPage(`/api/users?${query}`), api("/api/conventions")]);
  state.users = page.rows;
  $("users-more").hidden = page.total <= page.rows.length && page.total > 0;
  $("users-more").textContent = page.total === 0 ? `Aucun compte ne correspond à « ${typed} ».`
    : `${page.rows.length.toLocaleString("fr-FR")} comptes affichés sur ${page.total.toLocaleString("fr-FR")} : précisez la recherche.`;
  if (!$("u-conventions").childElementCount) fillChoices();
  $("users").tBodies[0].replaceChildren(...state.users.map(row));
  return state.users;
}

export function initUsers() {
  $("user-new").addEventListener("click", () => openForm(null));
  $("user-cancel").addEventListener("click", () => { $("user-form").hidden = true; });
  $("u-role").addEventListener("change", syncRoleFields);
  $("u-practitioner").addEventListener("input", suggestPractitioners);
  $("users-q").addEventListener("input", () => {
    clearTimeout(state.typing);
    state.typing = setTimeout(showUsers, 250);
  });
  $("user-form").addEventListener("submit", onSave);
}
