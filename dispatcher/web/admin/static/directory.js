// Annuaire: practitioners, sites and conventions, viewed and edited as the directory file's YAML,
// checked by the same loader (its line-precise errors are shown; nothing is saved on error).
import { $, api, apiPage, cell, el, send, showError } from "./common.js";

// A national directory holds 100,000 practitioners: their list and the sites' are a page, searched.
const KINDS = {
  practitioners: {
    title: "Praticiens", one: "praticien", many: "praticiens", name: (x) => x.display_name,
    search: "Nom, n° RPPS ou identifiant",
  },
  sites: { title: "Sites", one: "site", many: "sites", name: (x) => x.name, search: "Nom, adresse ou identifiant" },
  conventions: {
    title: "Conventions", one: "convention", many: "conventions", name: (x) => x.name, add: "Nouvelle convention",
  },
};
const ROWS = 200;
const state = { editing: null, typing: {} };

function table(kind, items) {
  const t = el("table", null, "grid");
  t.id = `dir-${kind}`;
  const head = el("tr");
  for (const h of ["Identifiant", "Nom", ""]) head.append(el("th", h));
  t.createTHead().append(head);
  const body = t.createTBody();
  for (const item of items) {
    const tr = el("tr");
    tr.dataset.id = item.id;
    const edit = el("button", "Voir / modifier");
    edit.type = "button";
    edit.className = "edit";
    edit.addEventListener("click", () => openEditor(kind, item.id));
    tr.append(cell("Identifiant", item.id), cell("Nom", KINDS[kind].name(item)), cell("", edit));
    body.append(tr);
  }
  return t;
}

function editor() {
  const form = el("form", null, "card form");
  form.id = "dir-editor";
  form.hidden = true;
  const title = el("h2");
  title.id = "dir-editor-title";
  const help = el("p", "Même format que le fichier d'annuaire (docs/directory.md). Les codes PIN ne sont jamais affichés : "
    + "ajoutez cancel_pin / duress_pin en clair pour les changer, sinon ils sont conservés.", "muted small");
  const text = el("textarea");
  text.id = "dir-yaml";
  text.rows = 18;
  text.spellcheck = false;
  const actions = el("div", null, "actions");
  const save = el("button", "Enregistrer", "primary");
  save.type = "submit";
  save.id = "dir-save";
  const cancel = el("button", "Fermer");
  cancel.type = "button";
  cancel.addEventListener("click", () => { form.hidden = true; });
  actions.append(save, cancel);
  const error = el("div", null, "error");
  error.id = "dir-error";
  error.setAttribute("role", "alert");
  const saved = el("p", null, "muted");
  saved.id = "dir-saved";
  saved.setAttribute("aria-live", "polite");
  form.append(title, help, text, actions, error, saved);
  form.addEventListener("submit", onSave);
  return form;
}

async function openEditor(kind, id) {
  state.editing = { kind, id };
  $("dir-editor-title").textContent = id ? `Modifier : ${KINDS[kind].one} « ${id} »` : KINDS[kind].add || `Nouveau ${KINDS[kind].one}`;
  $("dir-yaml").value = id ? (await api(`/api/${kind}/${encodeURIComponent(id)}/yaml`)).yaml : `${kind}:\n  - id: \n`;
  $("dir-error").replaceChildren();
  $("dir-saved").textContent = "";
  $("dir-editor").hidden = false;
  $("dir-yaml").focus();
}

async function onSave(event) {
  event.preventDefault();
  const { kind, id } = state.editing;
  $("dir-error").replaceChildren();
  try {
    const path = id ? `/api/${kind}/${encodeURIComponent(id)}/yaml` : `/api/${kind}/yaml`;
    const saved = await send(id ? "PUT" : "POST", path, { yaml: $("dir-yaml").value });
    state.editing = { kind, id: saved.id };
    $("dir-saved").textContent = `Enregistré : ${KINDS[kind].one} « ${saved.id} ».`;
    await listAll();
  } catch (error) {
    showError($("dir-error"), error);
  }
}

/** One kind's table: a page of those the search finds, and how many there are when not all shown. */
async function fillList(kind) {
  const spec = KINDS[kind];
  const typed = spec.search ? $(`dir-q-${kind}`).value.trim() : "";
  const query = new URLSearchParams({ limit: String(ROWS) });
  if (typed) query.set("q", typed);
  const { rows, total } = spec.search ? await apiPage(`/api/${kind}?${query}`) : { rows: await api(`/api/${kind}`), total: 0 };
  $(`dir-${kind}`).replaceWith(table(kind, rows));
  if (!spec.search) return;
  const more = $(`dir-more-${kind}`);
  more.hidden = total <= rows.length && !(typed && total === 0);
  more.textContent = total === 0 ? `Aucun ${spec.one} ne correspond à « ${typed} ».`
    : `${rows.length.toLocaleString("fr-FR")} ${spec.many} affichés sur ${total.toLocaleString("fr-FR")} : précisez la recherche.`;
}

function searchField(kind) {
  const label = el("label", "Rechercher ", "search");
  const input = el("input");
  input.type = "search";
  input.id = `dir-q-${kind}`;
  input.placeholder = KINDS[kind].search;
  input.addEventListener("input", () => {
    clearTimeout(state.typing[kind]);
    state.typing[kind] = setTimeout(() => fillList(kind), 250);
  });
  label.append(input);
  return label;
}

function block(kind) {
  const spec = KINDS[kind];
  const section = el("section", null, "card");
  const head = el("div", null, "actions");
  head.append(el("h2", spec.title));
  const add = el("button", spec.add || `Nouveau ${spec.one}`);
  add.type = "button";
  add.id = `dir-new-${kind}`;
  add.addEventListener("click", () => openEditor(kind, null));
  head.append(add);
  section.append(head);
  if (spec.search) {
    const more = el("p", null, "muted small");
    more.id = `dir-more-${kind}`;
    more.hidden = true;
    section.append(searchField(kind), more);
  }
  section.append(table(kind, []));
  return section;
}

async function listAll() {
  await Promise.all(Object.keys(KINDS).map(fillList));
}

export async function showDirectory() {
  await listAll();
}

export function initDirectory() {
  const lists = el("div");
  lists.id = "dir-lists";
  lists.append(...Object.keys(KINDS).map(block));
  $("directory").replaceChildren(editor(), lists);
}
