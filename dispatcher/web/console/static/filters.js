// Filters and search of the alert list: state, convention, practitioner (name), date range.
// They live in the page's URL (?state=open&practitioner=fabre...), so a filtered view can be shared and
// survives a reload, and they are applied by the server (GET /api/alerts), within the user's scope.

import { api } from "./api.js";
import { $, el } from "./dom.js";
import { LABELS } from "./labels.js";

export const OPEN_STATES = ["received", "notifying", "duress", "acknowledged"];
const INPUTS = {
  state: "f-state", convention_id: "f-convention", practitioner: "f-practitioner", date_from: "f-from", date_to: "f-to",
};
const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** Set (or, with "" / null, remove) query parameters of the page's URL without reloading it. */
export function setUrlParams(values) {
  const url = new URL(location.href);
  for (const [name, value] of Object.entries(values)) {
    if (value) url.searchParams.set(name, value); else url.searchParams.delete(name);
  }
  history.replaceState(null, "", url);
}

/** The filters in the page's URL. */
export function urlFilters() {
  const params = new URLSearchParams(location.search);
  return Object.fromEntries(Object.keys(INPUTS).map((name) => [name, params.get(name) || ""]));
}

/** True when some filter narrows the list. */
export const isActive = (filters) => Object.values(filters).some(Boolean);

/** The list's API query for these filters ("open" is the four open states). */
export function alertsPath(filters) {
  const query = new URLSearchParams({ limit: "200" });
  const states = filters.state === "open" ? OPEN_STATES : filters.state ? [filters.state] : [];
  for (const s of states) query.append("state", s);
  for (const name of ["convention_id", "practitioner", "date_from", "date_to"]) {
    if (filters[name]) query.set(name, filters[name]);
  }
  return `/api/alerts?${query}`;
}

/** A French reason why these filters cannot be applied, or "" when they can. */
export function problem(filters) {
  if (filters.practitioner && filters.practitioner.trim().length < 2) return "Nom du praticien : au moins 2 lettres.";
  for (const name of ["date_from", "date_to"]) {
    if (filters[name] && !DAY.test(filters[name])) return "Date invalide.";
  }
  if (filters.date_from && filters.date_to && filters.date_to < filters.date_from) {
    return "La date de fin précède la date de début.";
  }
  return "";
}

function formFilters() {
  return Object.fromEntries(Object.entries(INPUTS).map(([name, id]) => [name, $(id).value.trim()]));
}

function fillStates() {
  const select = $("f-state");
  select.replaceChildren(el("option", "tous les états"), el("option", "ouvertes"),
    ...Object.entries(LABELS.state).map(([value, text]) => { const o = el("option", text); o.value = value; return o; }));
  select.options[0].value = "";
  select.options[1].value = "open";
}

async function fillConventions(wanted) {
  const select = $("f-convention");
  const first = el("option", "toutes les conventions");
  first.value = "";
  let conventions = [];
  try { conventions = await api("/api/conventions"); } catch { /* the list stays unfiltered by convention */ }
  select.replaceChildren(first, ...conventions.map((c) => { const o = el("option", c.name); o.value = c.id; return o; }));
  select.value = wanted;
}

/** Fill the form from the URL; call `onChange(filters)` each time valid filters change. */
export async function setupFilters(onChange) {
  fillStates();
  const initial = urlFilters();
  await fillConventions(initial.convention_id);
  for (const [name, id] of Object.entries(INPUTS)) if (name !== "convention_id") $(id).value = initial[name];
  let timer = null;
  const apply = () => {
    const filters = formFilters();
    const why = problem(filters);
    $("filter-error").textContent = why;
    if (why) return;
    setUrlParams(filters);
    onChange(filters);
  };
  const form = $("filters");
  form.addEventListener("change", apply);
  $("f-practitioner").addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(apply, 400); });
  form.addEventListener("submit", (event) => { event.preventDefault(); apply(); });
  form.addEventListener("reset", () => setTimeout(apply, 0)); // after the browser cleared the fields
  return formFilters();
}
