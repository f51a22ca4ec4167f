// Vigie operator console: live alerts over a WebSocket, details over the REST API.
// No framework, no build step; every string from the server goes through textContent.
// Views in their own modules: escalation.js (tiers and countdown), overview.js (the overview map),
// filters.js (list filters in the URL), maps.js (maps and their written fallback).

import { addAlarm, clearAlarms, dropAlarm, setAlarms, setupAlarms } from "./alarms.js";
import { api, apiPage, onUnauthorized } from "./api.js";
import { $, cell, el } from "./dom.js";
import { loadEscalation } from "./escalation.js";
import { alertsPath, isActive, OPEN_STATES, setUrlParams, setupFilters } from "./filters.js";
import { label, parisDateTime, parisHourMinute, parisTime, timelineText } from "./labels.js";
import { configureTiles, renderDetailMap } from "./maps.js";
import { loadOverview, onPickAlert, stopOverview } from "./overview.js";

const OPEN = new Set(OPEN_STATES);

const state = { alerts: new Map(), selected: null, ws: null, retry: 0, audio: null, beepTimer: null,
  user: null, filters: {}, listed: null, overview: false, system: new Map() };

onUnauthorized((message) => showLogin(message));
setupAlarms(() => beep(), () => refreshEvents());

// ---- login ------------------------------------------------------------------------
function showLogin(message = "") {
  if (state.ws) { state.ws.onclose = null; state.ws.close(); state.ws = null; }
  stopAlarm();
  state.system.clear();
  $("system-banner").hidden = true;
  clearAlarms();
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
  $("username").focus();
}

async function onLogin(event) {
  event.preventDefault();
  unlockAudio(); // the click is the user gesture browsers require before playing sound
  try {
    await api("/api/auth/login", {
      method: "POST",
      body: JSON.stringify({ username: $("username").value, password: $("password").value }),
    });
    $("password").value = "";
    await start();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
}

async function start() {
  state.user = await api("/api/auth/me");
  if (state.user.role === "practitioner") { location.replace("/moi/"); return; } // her own page
  configureTiles((await api("/console/config")).tile_url);
  $("who").textContent = `${state.user.display_name} (${label("role", state.user.role)})`;
  $("login").hidden = true;
  $("app").hidden = false;
  state.filters = await setupFilters((filters) => { state.filters = filters; refreshList(); });
  refreshList();
  showOverview(new URLSearchParams(location.search).get("view") === "carte");
  connect();
  refreshHealth();
}

// ---- WebSocket with reconnection ----------------------------------------------------
function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/api/ws`);
  state.ws = ws;
  ws.onopen = () => { state.retry = 0; setConn(true); };
  ws.onmessage = (event) => onFrame(JSON.parse(event.data));
  ws.onclose = (event) => {
    setConn(false);
    if (event.code === 4401) { showLogin("Session expirée : reconnectez-vous."); return; }
    const delay = Math.min(10000, 500 * 2 ** state.retry++);
    setTimeout(() => { if (state.ws === ws) connect(); }, delay);
  };
}

function setConn(on) {
  const el = $("conn");
  el.textContent = on ? "en direct" : "hors ligne — reconnexion…";
  el.className = `conn ${on ? "conn-on" : "conn-off"}`;
}

// A busy feed sends its messages in one frame (dispatcher/web/console/frames.py). The
// list is then drawn, and the panels re-read, once per frame rather than once per
// message: in a surge a frame can hold many alerts, and the list every open one.
const batch = { open: false, pending: new Set() };

function soon(redraw) {
  if (batch.open) batch.pending.add(redraw);
  else redraw();
}

function onFrame(frame) {
  if (frame.type !== "batch") { onMessage(frame); return; }
  batch.open = true;
  try {
    frame.messages.forEach(onMessage);
  } finally {
    batch.open = false;
    const pending = [...batch.pending];
    batch.pending.clear();
    pending.forEach((redraw) => redraw());
  }
}

function onMessage(msg) {
  if (msg.type === "snapshot") {
    state.alerts = new Map(msg.alerts.map((a) => [a.id, a]));
    state.system = new Map((msg.system || []).map((s) => [s.topic, s.alarm]));
    drawSystemBanner();
    setAlarms(msg.alarms || []);
    refreshList();
    if (state.selected) loadDetail(state.selected);
    scheduleOverview();
  } else if (msg.type === "alert") {
    const isNew = !state.alerts.has(msg.alert.id);
    state.alerts.set(msg.alert.id, msg.alert);
    if (state.listed) { // a filtered list: shown at once if listed, then asked again of the server
      const i = state.listed.findIndex((a) => a.id === msg.alert.id);
      if (i >= 0) state.listed[i] = msg.alert;
      scheduleList();
    }
    soon(renderAlerts);
    if (isNew) soon(refreshHealthSoon); // a device's first alert may come before its first heartbeat
    if (isNew && msg.alert.needs_attention && !state.selected && !state.overview) select(msg.alert.id);
    else if (msg.alert.id === state.selected) scheduleDetail();
    if (msg.alarm) soon(refreshEvents);
    scheduleOverview();
  } else if (msg.type === "health") {
    soon(refreshHealthSoon);
  } else if (msg.type === "visit") {
    soon(refreshVisits);
    scheduleOverview();
  } else if (msg.type === "system") {
    showSystem(msg);
  } else if (msg.type === "alarm") {
    addAlarm(msg);
  } else if (msg.type === "alarm_handled") {
    dropAlarm(msg.id);
  } else if (msg.type === "events") {
    soon(refreshEvents);
  }
}

// ---- system alarms: no alert can arrive, or none can be sent (docs/console.md) ------------
function showSystem(msg) {
  if (msg.alarm) state.system.set(msg.topic, msg.alarm);
  else state.system.delete(msg.topic);
  drawSystemBanner();
  if (msg.alarm) beep();
  refreshEvents();
}

function drawSystemBanner() {
  const banner = $("system-banner");
  banner.textContent = [...state.system.values()].map((text) => `ALERTE SYSTÈME — ${text}`).join(" · ");
  banner.hidden = state.system.size === 0;
}

// ---- alarm: flash + Web Audio beep until someone takes the alert ------------------
function unlockAudio() {
  if (!state.audio) {
    const Context = window.AudioContext || window.webkitAudioContext;
    if (Context) state.audio = new Context();
  }
  if (state.audio && state.audio.state === "suspended") state.audio.resume();
  updateSoundButton();
}

function updateSoundButton() {
  const on = state.audio && state.audio.state === "running";
  $("sound").textContent = on ? "Son actif" : "Activer le son";
  $("sound").disabled = Boolean(on);
}

function beep() {
  const ctx = state.audio;
  if (!ctx || ctx.state !== "running") return;
  for (const [offset, freq] of [[0, 880], [0.25, 660], [0.5, 880]]) {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.frequency.value = freq;
    osc.type = "square";
    gain.gain.setValueAtTime(0.15, ctx.currentTime + offset);
    gain.gain.exponentialRampToValueAtTime(0.001, ctx.currentTime + offset + 0.2);
    osc.connect(gain).connect(ctx.destination);
    osc.start(ctx.currentTime + offset);
    osc.stop(ctx.currentTime + offset + 0.22);
  }
}

function updateAlarm() {
  const urgent = [...state.alerts.values()].filter((a) => a.needs_attention);
  const banner = $("banner");
  if (urgent.length === 0) { stopAlarm(); return; }
  const first = urgent[0];
  // An unanswered alarm (duress, exhausted escalation, nobody to alert) says which, whatever the state.
  const why = first.alarm ? ` — ${first.alarm.toUpperCase()}` : (first.duress ? " — SOUS CONTRAINTE" : "");
  banner.textContent = `${first.kind === "drill" ? "EXERCICE — " : ""}` +
    `${urgent.length > 1 ? `${urgent.length} ALERTES` : "ALERTE"} EN COURS — ` +
    `${first.practitioner_name || first.device_id}${first.site_name ? ` — ${first.site_name}` : ""}` +
    `${why} — cliquer pour ouvrir`;
  banner.dataset.id = first.id;
  banner.hidden = false;
  document.title = `(${urgent.length}) ALERTE — Vigie`;
  if (!state.beepTimer) { beep(); state.beepTimer = setInterval(beep, 2000); }
}

function stopAlarm() {
  $("banner").hidden = true;
  document.title = "Vigie — console opérateur";
  clearInterval(state.beepTimer);
  state.beepTimer = null;
}

// Tests and drills are told apart from real alerts everywhere they are listed.
function stateLabel(a) {
  if (a.kind === "test") return "TEST";
  const text = label("state", a.state);
  return a.kind === "drill" ? `EXERCICE — ${text}` : text;
}

// ---- alert list -------------------------------------------------------------------
// Every time in Europe/Paris, whatever the browser's zone (labels.js).
const time = parisTime;
const dateTime = parisDateTime;

// Without filters the list is the live feed's; with filters it is the server's answer to them
// (GET /api/alerts, scoped), asked again on every change. The alarm banner always watches the
// whole feed: a filter never hides an alert nobody has taken.
let listTimer = null;
function scheduleList() {
  clearTimeout(listTimer);
  listTimer = setTimeout(refreshList, 300);
}

async function refreshList() {
  if (!isActive(state.filters)) { state.listed = null; renderAlerts(); return; }
  const wanted = JSON.stringify(state.filters);
  try {
    const alerts = await api(alertsPath(state.filters));
    if (wanted !== JSON.stringify(state.filters)) return; // the filters changed meanwhile
    state.listed = alerts;
    $("filter-error").textContent = "";
  } catch (error) {
    $("filter-error").textContent = error.message;
  }
  renderAlerts();
}

function renderAlerts() {
  const list = (state.listed || [...state.alerts.values()])
    .slice()
    .sort((a, b) => (b.needs_attention - a.needs_attention) || b.received_at.localeCompare(a.received_at));
  const ul = $("alerts");
  ul.replaceChildren(...list.map((a) => {
    const li = el("li", null, `alert st-${a.state}${a.needs_attention ? " attention" : ""}` +
      `${a.id === state.selected ? " selected" : ""}`);
    li.tabIndex = 0;
    li.dataset.id = a.id;
    li.setAttribute("role", "button");
    const head = el("div");
    head.append(el("span", a.practitioner_name || a.device_id, "who"), " ",
      el("span", stateLabel(a), `badge st-${a.state}`));
    li.append(head, el("div", `${dateTime(a.received_at)} · ${a.site_name || label("source", a.location_source) || ""}`, "meta"),
      el("div", a.acked_by ? `pris par ${a.acked_by}` : (a.convention_name || "sans convention"), "meta"));
    li.onclick = () => select(a.id);
    li.onkeydown = (e) => { if (e.key === "Enter" || e.key === " ") select(a.id); };
    return li;
  }));
  $("no-alerts").textContent = state.listed ? "Aucune alerte pour ces filtres." : "Aucune alerte.";
  $("no-alerts").hidden = list.length > 0;
  $("list-count").textContent = state.listed ? `${list.length} filtrée(s)` : "";
  updateAlarm();
}

// ---- overview map -----------------------------------------------------------------
let overviewTimer = null;
function scheduleOverview() {
  if (!state.overview) return;
  clearTimeout(overviewTimer);
  overviewTimer = setTimeout(loadOverview, 300);
}

function showOverview(on, reload = true) {
  state.overview = on;
  setUrlParams({ view: on ? "carte" : "" });
  $("overview").hidden = !on;
  $("show-overview").setAttribute("aria-pressed", String(on));
  $("show-overview").textContent = on ? "Fermer la carte d'ensemble" : "Carte d'ensemble";
  $("detail").hidden = on || !state.selected;
  $("placeholder").hidden = on || Boolean(state.selected);
  if (on) loadOverview(); else stopOverview();
  if (!on && reload && state.selected) loadDetail(state.selected); // it may have changed meanwhile
}

// ---- alert detail -----------------------------------------------------------------
let detailTimer = null;
function scheduleDetail() {
  clearTimeout(detailTimer);
  detailTimer = setTimeout(() => loadDetail(state.selected), 250);
}

function select(id) {
  state.selected = id;
  if (state.overview) showOverview(false, false);
  renderAlerts();
  loadDetail(id);
}

async function loadDetail(id) {
  try {
    const [alert] = await Promise.all([api(`/api/alerts/${encodeURIComponent(id)}`), loadEscalation(id)]);
    if (id === state.selected) renderDetail(alert);
  } catch (error) {
    $("act-error").textContent = error.message;
  }
}

function kv(dl, rows) {
  dl.replaceChildren();
  for (const [key, value, cls] of rows) {
    if (value === null || value === undefined || value === "") continue;
    const dd = el("dd", null, cls);
    if (value instanceof Node) dd.append(value); else dd.textContent = value;
    dl.append(el("dt", key), dd);
  }
}

function phoneLinks(phones) {
  const span = el("span");
  phones.forEach((phone, i) => {
    const a = el("a", phone);
    a.href = `tel:${phone}`;
    span.append(i ? ", " : "", a);
  });
  return span;
}

function age(seconds) {
  if (seconds === null || seconds === undefined) return null;
  return seconds < 90 ? `${Math.round(seconds)} s` : `${Math.round(seconds / 60)} min`;
}

function renderDetail(a) {
  if (state.overview) return;
  $("placeholder").hidden = true;
  $("detail").hidden = false;
  $("d-title").textContent = a.practitioner_name || a.device_id;
  $("d-state").textContent = stateLabel(a);
  $("d-state").className = `badge st-${a.state}`;
  $("d-sub").textContent = `Alerte ${a.id} reçue le ${dateTime(a.received_at)} · ${a.convention_name || "aucune convention SSJ"}`;
  const p = a.practitioner;
  kv($("d-person"), [
    ["Nom", a.practitioner_name, "big"],
    ["Profession", p && p.profession],
    ["RPPS", p && p.rpps],
    ["Téléphones pré-identifiés", p && phoneLinks(p.phones), "big"],
    ["Balise", a.device ? `${a.device.label || a.device.id} (${label("deviceKind", a.device.kind)})` : a.device_id],
    ["Lieu d'exercice", a.site && a.site.name],
  ]);
  const loc = a.location;
  const addr = loc && loc.address;
  kv($("d-location"), loc ? [
    ["Source", label("source", loc.source), loc.stale ? "warn" : ""],
    ["Où", loc.description],
    ["Adresse", addr && addr.label],
    ["Étage", addr && addr.floor],
    ["Digicode", addr && addr.access_code, "big"],
    ["Accès", addr && addr.details],
    ["Coordonnées", loc.point ? `${loc.point.lat.toFixed(5)}, ${loc.point.lon.toFixed(5)}` : null],
    ["Précision", loc.accuracy_m ? `± ${Math.round(loc.accuracy_m)} m` : null],
    ["Âge de la position", age(loc.fix_age_s)],
    ["Attention", loc.stale ? "position ancienne, à confirmer par téléphone" : null, "warn"],
  ] : [["Où", "inconnue"]]);
  const live = a.live_position; // sent by her device every few seconds while the alert is open
  kv($("d-live"), live ? [
    ["Position en direct", `${live.lat.toFixed(5)}, ${live.lon.toFixed(5)}`, "big"],
    ["Précision", live.accuracy_m != null ? `± ${Math.round(live.accuracy_m)} m` : null],
    ["Relevée", `il y a ${age(live.age_s)} (${time(live.at)})`, live.age_s > 60 ? "warn" : ""],
  ] : []);
  renderDetailMap(loc);
  renderActions(a);
  $("d-timeline").replaceChildren(...a.timeline.map((e) => {
    const tr = el("tr");
    tr.append(el("td", time(e.at)), el("td", timelineText(e)));
    return tr;
  }));
  $("d-notifications").replaceChildren(...a.notifications.map((n) => {
    const tr = el("tr");
    tr.append(cell("Destinataire", `${n.contact_name} ${n.phone}`), cell("Canal", label("channel", n.channel)),
      cell("Palier", String(n.tier + 1)), cell("État", n.error ? `${label("delivery", n.status)} (${n.error})` : label("delivery", n.status),
        ["failed", "undelivered", "no-answer", "busy"].includes(n.status) ? "flag" : ""));
    return tr;
  }));
}

function renderActions(a) {
  const open = OPEN.has(a.state);
  const untaken = ["received", "notifying", "duress"].includes(a.state) && !a.acked_by;
  $("act-acknowledge").disabled = !untaken;
  // Taking it in hand is also how an alarm is answered (a duress after an acknowledgement...).
  $("act-take-over").disabled = !((untaken && !a.taken_over_by) || (open && a.alarm));
  $("act-resolve").disabled = !open;
  $("act-false-alarm").disabled = !open;
  const report = $("d-report");
  report.hidden = a.state !== "resolved";
  report.href = `/api/alerts/${encodeURIComponent(a.id)}/report`;
  $("act-error").textContent = "";
}

async function act(action) {
  const id = state.selected;
  if (!id) return;
  if ((action === "resolve" || action === "false-alarm") &&
      !window.confirm(action === "resolve" ? "Clôturer cette alerte ?" : "Déclarer une fausse alerte ?")) return;
  try {
    const summary = await api(`/api/alerts/${encodeURIComponent(id)}/${action}`, { method: "POST" });
    state.alerts.set(summary.id, summary);
    renderAlerts();
    await loadDetail(id);
  } catch (error) {
    $("act-error").textContent = error.message;
  }
}

async function addNote(event) {
  event.preventDefault();
  const text = $("note-text").value.trim();
  if (!text || !state.selected) return;
  try {
    await api(`/api/alerts/${encodeURIComponent(state.selected)}/notes`, {
      method: "POST", body: JSON.stringify({ text }),
    });
    $("note-text").value = "";
    await loadDetail(state.selected);
  } catch (error) {
    $("act-error").textContent = error.message;
  }
}

// ---- device health ----------------------------------------------------------------
function since(iso) {
  if (!iso) return "jamais";
  return `il y a ${age((Date.now() - new Date(iso).getTime()) / 1000)}`;
}

// At most one read of the devices' health per HEALTH_EVERY_MS when alerts or health events come
// in a burst (each asks for one): the first at once, the others folded into one after it.
const HEALTH_EVERY_MS = 2000;
// The console's table: the flagged devices first; the rest of a large territory is in the administration.
const HEALTH_ROWS = 200;
const health = { at: 0, timer: null };

function refreshHealthSoon() {
  if (health.timer) return;
  const wait = Math.max(0, health.at + HEALTH_EVERY_MS - Date.now());
  health.timer = setTimeout(() => { health.timer = null; refreshHealth(); }, wait);
}

async function refreshHealth() {
  health.at = Date.now();
  try {
    const { rows, total } = await apiPage(`/api/devices/health?limit=${HEALTH_ROWS}`);
    $("health-more").hidden = total <= rows.length;
    $("health-more").textContent = `${rows.length.toLocaleString("fr-FR")} balises affichées sur`
      + ` ${total.toLocaleString("fr-FR")}, celles hors ligne ou à batterie faible en premier.`;
    $("health").replaceChildren(...rows.map((d) => {
      const tr = el("tr");
      const status = d.state === "revoked" ? label("deviceState", d.state) : d.offline ? label("deviceStatus", "offline")
        : (label("deviceStatus", d.status) || "jamais vue");
      // Whose it is (whom to call when it goes offline); its site when hovered, the pane is narrow.
      const device = cell("Balise", d.label || d.device_id);
      if (d.practitioner_name) device.append(el("br"), el("span", d.practitioner_name, "muted small"));
      if (d.site_name) device.title = d.site_name;
      tr.append(device, cell("État", status, d.offline ? "flag" : ""),
        cell("Batterie", d.battery_pct === null ? "—" : `${d.battery_pct} %`, d.low_battery ? "flag" : ""),
        cell("Vue", since(d.last_seen_at)));
      return tr;
    }));
  } catch { /* shown on the next refresh */ }
  refreshEvents();
  refreshVisits();
}

// Home visits of the territory (docs/practitioner.md): open ones, overdue first and highlighted,
// then those checked out or escalated in the last hours.
function visitText(v) {
  const parts = [v.practitioner_name, v.label];
  if (v.phase === "closed") parts.push(`clôturée à ${parisHourMinute(v.finished_at)} (${v.closed_via === "sms" ? "OK par SMS" : "sortie déclarée"})`);
  else if (v.phase === "escalated") parts.push(`ALERTE visite non clôturée à ${parisHourMinute(v.finished_at)}`);
  else parts.push(`fin prévue ${parisHourMinute(v.ends_at)}${v.overdue ? " (dépassée)" : ""}`);
  if (v.phase === "checking") parts.push("vérification en cours");
  if (v.extensions) parts.push(`prolongée ×${v.extensions}`);
  if (v.dangerous) parts.push("lieu signalé dangereux");
  return parts.join(" — ");
}

async function refreshVisits() {
  try {
    const visits = await api("/api/open-visits?recent_h=6");
    $("open-visits").replaceChildren(...visits.map((v) => {
      const cls = v.phase === "escalated" || v.overdue ? "flag overdue" : v.phase === "closed" ? "muted" : "";
      const li = el("li", visitText(v), cls);
      li.dataset.id = v.id;
      return li;
    }));
    $("no-open-visits").hidden = visits.length > 0;
  } catch { /* idem */ }
}

async function refreshEvents() {
  if (!state.user || state.user.role === "practitioner") return;
  try {
    const events = await api("/api/operator-events?limit=15");
    $("events").replaceChildren(...events.map((e) => el("li", `${dateTime(e.at)} — ${e.message}`,
      e.kind === "alarm" || e.kind === "offline" || e.kind === "low_battery" ? "flag" : "")));
  } catch { /* idem */ }
}

// ---- wiring -----------------------------------------------------------------------
function wire() {
  $("login-form").addEventListener("submit", onLogin);
  $("logout").onclick = async () => {
    try { await api("/api/auth/logout", { method: "POST" }); } catch { /* already out */ }
    showLogin();
  };
  $("sound").onclick = unlockAudio;
  $("show-overview").onclick = () => showOverview(!state.overview);
  onPickAlert((id) => select(id));
  $("banner").onclick = () => select($("banner").dataset.id);
  $("note-form").addEventListener("submit", addNote);
  for (const action of ["acknowledge", "take-over", "resolve", "false-alarm"]) {
    $(`act-${action}`).onclick = () => act(action);
  }
  setInterval(refreshHealth, 30000);
  document.addEventListener("click", () => { if (state.audio) updateSoundButton(); });
}

wire();
fetch("/api/auth/me", { credentials: "same-origin" })
  .then((r) => (r.ok ? start() : showLogin()))
  .catch(() => showLogin("Serveur injoignable."));
