// Vigie — the admin page: one screen per tab (#balises, #utilisateurs, #journal, #statistiques, #annuaire).
// No framework, no build step. The server only serves this page to an admin's session.
import { $, api, send } from "./common.js";
import { initDevices, showDevices } from "./devices.js";
import { initUsers, showUsers } from "./users.js";
import { initAudit, showAudit } from "./audit.js";
import { initStats, showStats } from "./stats.js";
import { initDirectory, showDirectory } from "./directory.js";

const SCREENS = {
  balises: showDevices,
  utilisateurs: showUsers,
  journal: showAudit,
  statistiques: showStats,
  annuaire: showDirectory,
};

async function route() {
  const name = SCREENS[location.hash.slice(1)] ? location.hash.slice(1) : "balises";
  for (const section of document.querySelectorAll(".screen")) section.hidden = section.id !== name;
  for (const link of document.querySelectorAll("#tabs a")) {
    if (link.dataset.tab === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  $("global-error").hidden = true;
  try {
    await SCREENS[name]();
    document.body.dataset.ready = name;
  } catch (error) {
    $("global-error").textContent = `Chargement impossible : ${error.message}`;
    $("global-error").hidden = false;
  }
}

async function start() {
  const me = await api("/api/auth/me");
  if (me.role !== "admin") { location.replace("/console/"); return; }
  $("who").textContent = me.display_name;
  $("logout").addEventListener("click", async () => {
    await send("POST", "/api/auth/logout");
    location.assign("/console/");
  });
  initDevices();
  initUsers();
  initAudit();
  initStats();
  initDirectory();
  window.addEventListener("hashchange", route);
  await route();
}

start();
