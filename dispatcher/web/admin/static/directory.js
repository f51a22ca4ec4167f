// Annuaire: practitioners, sites and conventions, viewed and edited as the directory file's YAML,
// checked by the same loader (its line-precise errors are shown; nothing is saved on error).
import { $, api, cell, el, send, showError } from "./common.js";

const KINDS = {
  practitioners: { title: "Praticiens", one: "praticien", name: (x) => x.display_name },
  sites: { title: "Sites", one: "site", name: (x) => x.name },
  conventions: { title: "Conventions", one: "convention", name: (x) => x.name },
};
const state = { editing: null };

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
  $("dir-editor-title").textContent = id ? `Modifier : ${KINDS[kind].one} « ${id} »` : `Nouveau ${KINDS[kind].one}`;
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

async function listAll() {
  const lists = await Promise.all(Object.keys(KINDS).map((k) => api(`/api/${k}`)));
  const blocks = Object.keys(KINDS).map((kind, i) => {
    const block = el("section", null, "card");
    const head = el("div", null, "actions");
    head.append(el("h2", KINDS[kind].title));
    const add = el("button", `Nouveau ${KINDS[kind].one}`);
    add.type = "button";
    add.id = `dir-new-${kind}`;
    add.addEventListener("click", () => openEditor(kind, null));
    head.append(add);
    block.append(head, table(kind, lists[i]));
    return block;
  });
  $("dir-lists").replaceChildren(...blocks);
}

export async function showDirectory() {
  await listAll();
}

export function initDirectory() {
  const lists = el("div");
  lists.id = "dir-lists";
  $("directory").replaceChildren(editor(), lists);
}
