// Vigie — the practitioner's page: declare a visit, its timer, her devices, her alerts and reports.
// No framework, no build step; every string from the server goes through textContent.

import { sessionClient } from "/common/static/session.js";

const $ = (id) => document.getElementById(id);
const PARIS = "Europe/Paris";
const hhmm = new Intl.DateTimeFormat("fr-FR", { timeZone: PARIS, hour: "2-digit", minute: "2-digit" });
const dayTime = new Intl.DateTimeFormat("fr-FR", {
  timeZone: PARIS, day: "2-digit", month: "2-digit", year: "numeric", hour: "2-digit", minute: "2-digit",
});
const STATE_FR = {
  notifying: "en cours", received: "reçue", acknowledged: "prise en charge", resolved: "clôturée",
  cancelled: "annulée", false_alarm: "fausse alerte",
};
const PHASE_FR = { open: "en cours", checking: "vérification", closed: "clôturée", escalated: "alerte déclenchée" };
const SMS_FR = {
  pending: "en attente", sending: "envoi", queued: "envoyé", sent: "envoyé", delivered: "reçu sur votre téléphone",
  failed: "échec", undelivered: "non distribué", unknown: "incertain",
};
const AMBER_S = 5 * 60;

const state = { user: null, visits: [], current: null, minutes: 30, poll: null, tick: null, report: null };

// ---- REST (the client every signed-in page uses; her errors name the form fields) ----------
function refused(status, detail) {
  const error = new Error(typeof detail === "string" ? detail
    : Array.isArray(detail) ? detail.map((d) => d.msg).join(" ; ") : `erreur ${status}`);
  error.fields = Array.isArray(detail) ? detail.map((d) => d.loc[d.loc.length - 1]) : [];
  return error;
}

function sessionExpired(path) {
  if (path === "/api/auth/login") return null;
  showLogin("Session expirée : reconnectez-vous.");
  return new Error("session expirée");
}

const { api } = sessionClient({ onUnauthorized: sessionExpired, refused });
const post = (path, body) => api(path, { method: "POST", body: body === undefined ? undefined : JSON.stringify(body) });

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

// ---- login ------------------------------------------------------------------------
function showLogin(message = "") {
  clearInterval(state.poll); clearInterval(state.tick);
  $("app").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message;
}

async function onLogin(event) {
  event.preventDefault();
  try {
    await post("/api/auth/login", { username: $("username").value, password: $("password").value });
    $("password").value = "";
    await start();
  } catch (error) {
    $("login-error").textContent = error.message;
  }
}

async function start() {
  state.user = await api("/api/auth/me");
  if (state.user.role !== "practitioner") { location.replace("/console/"); return; }
  $("who").textContent = state.user.display_name;
  $("login").hidden = true;
  $("app").hidden = false;
  await Promise.all([refreshVisits(), refreshRecent()]);
  clearInterval(state.poll); clearInterval(state.tick);
  state.poll = setInterval(refreshVisits, 5000);
  state.tick = setInterval(renderTimer, 1000);
}

// ---- tabs -------------------------------------------------------------------------
function showTab(name) {
  for (const button of document.querySelectorAll(".tabs button")) {
    button.classList.toggle("active", button.dataset.tab === name);
  }
  for (const tab of ["visit", "devices", "alerts"]) $(`tab-${tab}`).hidden = tab !== name;
  if (name === "devices") refreshDevices();
  if (name === "alerts") refreshAlerts();
}

// ---- visits and the timer ---------------------------------------------------------
async function refreshVisits() {
  state.visits = await api("/api/me/visits");
  state.current = state.visits.find((v) => v.phase === "open" || v.phase === "checking") || null;
  $("visit-form").hidden = state.current !== null;
  renderTimer();
  $("no-visits").hidden = state.visits.length > 0;
  const list = $("visits");
  list.replaceChildren(...state.visits.slice(0, 8).map((v) => {
    const li = el("li");
    const line = el("div", null, "line");
    line.append(el("span", v.label), el("span", PHASE_FR[v.phase] || v.phase, "badge"));
    li.append(line, el("div", `${dayTime.format(new Date(v.started_at))} → ${hhmm.format(new Date(v.ends_at))}`, "muted"));
    return li;
  }));
}

function renderTimer() {
  const v = state.current;
  $("timer").hidden = v === null;
  if (!v) {
    $("t-warning").textContent = "";  // the declaration's warnings last as long as its visit
    return;
  }
  const left = Math.round((new Date(v.ends_at) - Date.now()) / 1000);
  const checking = v.phase === "checking";
  $("timer").className = `card timer ${checking || left <= 0 ? "red" : left <= AMBER_S ? "amber" : ""}`;
  $("t-address").textContent = v.label;
  $("t-access").textContent = [v.floor, v.access_code && `code ${v.access_code}`, v.notes,
    v.dangerous && "lieu signalé dangereux"].filter(Boolean).join(" · ");
  const abs = Math.abs(left);
  const text = `${Math.floor(abs / 60)}:${String(abs % 60).padStart(2, "0")}`;
  $("t-countdown").textContent = left >= 0 ? text : `+${text}`;
  $("t-until").textContent = left >= 0 ? `Fin prévue à ${hhmm.format(new Date(v.ends_at))}`
    : `Dépassement depuis ${hhmm.format(new Date(v.ends_at))}`;
  $("t-check").hidden = !checking;
  if (checking && v.check_deadline) $("t-deadline").textContent = hhmm.format(new Date(v.check_deadline));
  $("t-checkout").textContent = checking ? "Tout va bien, je suis sortie" : "Je suis sortie";
}

async function checkOut() {
  if (!state.current) return;
  try {
    await post(`/api/me/visits/${state.current.id}/checkout`);
    $("t-error").textContent = "";
    await refreshVisits();
  } catch (error) { $("t-error").textContent = error.message; }
}

async function extend(event) {
  if (!state.current) return;
  try {
    await post(`/api/me/visits/${state.current.id}/extend`, { by_s: Number(event.currentTarget.dataset.min) * 60 });
    $("t-error").textContent = "";
    await refreshVisits();
  } catch (error) { $("t-error").textContent = error.message; }
}

// ---- declaring a visit -------------------------------------------------------------
let suggestTimer = null;
function onAddressInput() {
  clearTimeout(suggestTimer);
  const q = $("v-label").value.trim();
  if (q.length < 3) { $("suggestions").hidden = true; return; }
  suggestTimer = setTimeout(async () => {
    const found = await api(`/api/me/geocode?q=${encodeURIComponent(q)}`).catch(() => []);
    const ul = $("suggestions");
    ul.replaceChildren(...found.map((s) => {
      const li = el("li", s.label);
      li.setAttribute("role", "option");
      li.addEventListener("click", () => { $("v-label").value = s.label; ul.hidden = true; });
      return li;
    }));
    ul.hidden = found.length === 0;
  }, 250);
}

async function refreshRecent() {
  const recent = await api("/api/me/addresses/recent").catch(() => []);
  $("recent").replaceChildren(...recent.map((v) => {
    const chip = el("button", v.label.split(",")[0]);
    chip.type = "button";
    chip.title = v.label;
    chip.addEventListener("click", () => {
      $("v-label").value = v.label;
      $("v-floor").value = v.floor || "";
      $("v-code").value = v.access_code || "";
      $("v-notes").value = v.notes || "";
      $("v-dangerous").checked = v.dangerous;
    });
    return chip;
  }));
}

function pickDuration(event) {
  state.minutes = Number(event.currentTarget.dataset.min);
  $("v-custom").value = "";
  for (const b of document.querySelectorAll(".durations button")) b.classList.toggle("selected", b === event.currentTarget);
}

async function declare(event) {
  event.preventDefault();
  const custom = $("v-custom").value;
  const minutes = custom ? Number(custom) : state.minutes;
  const body = {
    label: $("v-label").value.trim(), floor: $("v-floor").value || null, access_code: $("v-code").value || null,
    notes: $("v-notes").value || null, dangerous: $("v-dangerous").checked, duration_s: Math.round(minutes * 60),
  };
  if (!$("v-commune").hidden && $("v-postcode").value) {
    body.postcode = $("v-postcode").value.trim();
    body.commune = $("v-city").value.trim();
  }
  $("v-submit").disabled = true;
  try {
    const made = await post("/api/me/visits", body);
    $("visit-form").reset();
    $("v-commune").hidden = true;
    $("v-error").textContent = "";
    // Declared, but she must know what it lacks (no device: only the operators would be alerted).
    $("t-warning").textContent = (made.warnings || []).join(" ");
    await Promise.all([refreshVisits(), refreshRecent()]);
  } catch (error) {
    $("v-error").textContent = error.message;
    // The address cannot be placed: offer the postcode/commune route.
    if ((error.fields || []).some((f) => f === "label" || f === "commune")) $("v-commune").hidden = false;
  } finally {
    $("v-submit").disabled = false;
  }
}

// ---- devices and "Tester ma balise" ------------------------------------------------
function ago(iso) {
  if (!iso) return "jamais";
  const s = Math.max(0, Math.round((Date.now() - new Date(iso)) / 1000));
  if (s < 60) return `il y a ${s} s`;
  if (s < 3600) return `il y a ${Math.floor(s / 60)} min`;
  return dayTime.format(new Date(iso));
}

async function refreshDevices() {
  const devices = await api("/api/me/devices");
  $("no-devices").hidden = devices.length > 0;
  $("devices").replaceChildren(...devices.map(deviceItem));
}

function deviceItem(d) {
  const li = el("li");
  li.dataset.id = d.id;
  const line = el("div", null, "line");
  const online = d.online === null ? ["jamais vue", "badge"] : d.online ? ["en ligne", "badge ok"] : ["hors ligne", "badge bad"];
  line.append(el("strong", d.label), el("span", online[0], online[1]));
  const battery = d.battery_pct === null ? "—" : `${d.battery_pct} %`;
  const batteryClass = d.battery_pct !== null && d.battery_pct < 20 ? "badge warn" : "badge";
  const facts = el("div", null, "muted");
  facts.append(el("span", `Batterie ${battery}`, batteryClass), ` · signal ${ago(d.last_seen_at)} · dernier test ${ago(d.last_test_at)}`);
  const button = el("button", "Tester ma balise", "primary");
  button.type = "button";
  const steps = el("ul", null, "steps");
  button.addEventListener("click", () => runTest(d, button, steps));
  li.append(line, facts, button, steps);
  return li;
}

async function runTest(device, button, steps) {
  button.disabled = true;
  const step = (text, cls) => { const li = el("li", text, cls); steps.append(li); return li; };
  steps.replaceChildren();
  try {
    const { alert_id: alertId } = await post(`/api/me/devices/${device.id}/test`);
    const received = step("Test reçu par Vigie", "done");
    received.dataset.alert = alertId;
    const sms = step("SMS de test : envoi…", "wait");
    const vibration = step("Vibration envoyée à la balise…", "wait");
    for (let i = 0; i < 40; i++) {
      const r = await api(`/api/me/devices/${device.id}/tests/${alertId}`);
      sms.textContent = `SMS de test : ${SMS_FR[r.sms_status] || r.sms_status || "—"}`;
      sms.className = r.sms_status === "delivered" ? "done" : ["failed", "undelivered"].includes(r.sms_status) ? "fail" : "wait";
      vibration.textContent = r.device_feedback
        ? `Vibration envoyée à la balise (${r.device_online ? "en ligne" : "hors ligne : elle vibrera à sa reconnexion"})`
        : "Vibration envoyée à la balise…";
      vibration.className = r.device_feedback ? (r.device_online === false ? "fail" : "done") : "wait";
      if (r.done) break;
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  } catch (error) {
    step(error.message, "fail");
  } finally {
    button.disabled = false;
  }
}

// ---- alerts and the fiche de signalement -------------------------------------------
async function refreshAlerts() {
  const alerts = await api("/api/me/alerts");
  $("no-alerts").hidden = alerts.length > 0;
  $("alerts").replaceChildren(...alerts.map((a) => {
    const li = el("li");
    li.dataset.id = a.id;
    const line = el("div", null, "line");
    line.append(el("strong", dayTime.format(new Date(a.received_at))), el("span", STATE_FR[a.state] || a.state, "badge"));
    li.append(line);
    if (a.reason) li.append(el("div", `Motif : ${a.reason}`, "muted"));
    if (a.place) li.append(el("div", a.place, "muted"));
    if (a.acknowledged_by) {
      const delay = a.time_to_ack_s === null ? "" : ` en ${Math.floor(a.time_to_ack_s / 60)} min ${Math.round(a.time_to_ack_s % 60)} s`;
      li.append(el("div", `Prise en charge par ${a.acknowledged_by}${delay}`, "muted"));
    }
    if (a.report_available) {
      const open = el("button", a.report_saved ? "Fiche de signalement (enregistrée)" : "Remplir la fiche de signalement");
      open.type = "button";
      open.className = "report-open";
      open.addEventListener("click", () => openReport(a));
      li.append(open);
    }
    return li;
  }));
}

async function openReport(alert) {
  const view = await api(`/api/me/alerts/${alert.id}/report`);
  state.report = alert.id;
  const f = view.form;
  $("r-alert").textContent = `Alerte du ${dayTime.format(new Date(alert.received_at))}${alert.place ? ` — ${alert.place}` : ""}`;
  $("r-facts").value = f.facts;
  $("r-consequences").value = f.consequences;
  $("r-stoppage").value = f.work_stoppage_days ?? "";
  $("r-complaint").checked = f.complaint_filed;
  $("r-complaint-place").value = f.complaint_place;
  $("r-onvs").checked = f.onvs_declared;
  $("r-ordre").checked = f.ordre_declared;
  for (const box of document.querySelectorAll("input[name=violence]")) box.checked = f.violence_types.includes(box.value);
  $("r-pdf").href = `/api/me/alerts/${alert.id}/report.pdf`;
  $("r-status").textContent = view.saved_at ? `Enregistrée le ${dayTime.format(new Date(view.saved_at))}` : "Pas encore enregistrée";
  $("report").hidden = false;
  $("report").scrollIntoView();
}

async function saveReport(event) {
  event.preventDefault();
  const body = {
    facts: $("r-facts").value, consequences: $("r-consequences").value,
    violence_types: [...document.querySelectorAll("input[name=violence]:checked")].map((b) => b.value),
    work_stoppage_days: $("r-stoppage").value === "" ? null : Number($("r-stoppage").value),
    complaint_filed: $("r-complaint").checked, complaint_place: $("r-complaint-place").value,
    onvs_declared: $("r-onvs").checked, ordre_declared: $("r-ordre").checked,
  };
  try {
    const view = await api(`/api/me/alerts/${state.report}/report`, { method: "PUT", body: JSON.stringify(body) });
    $("r-status").textContent = `Enregistrée le ${dayTime.format(new Date(view.saved_at))}`;
  } catch (error) { $("r-status").textContent = error.message; }
}

// ---- wiring -------------------------------------------------------------------------
$("login-form").addEventListener("submit", onLogin);
$("logout").addEventListener("click", async () => { await post("/api/auth/logout").catch(() => null); showLogin(); });
for (const b of document.querySelectorAll(".tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));
$("t-checkout").addEventListener("click", checkOut);
for (const b of document.querySelectorAll("button.extend")) b.addEventListener("click", extend);
$("v-label").addEventListener("input", onAddressInput);
for (const b of document.querySelectorAll(".durations button")) b.addEventListener("click", pickDuration);
$("visit-form").addEventListener("submit", declare);
$("report").addEventListener("submit", saveReport);
$("r-close").addEventListener("click", () => { $("report").hidden = true; refreshAlerts(); });

api("/api/auth/me").then(start).catch(() => showLogin());
