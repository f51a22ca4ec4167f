// The responder page: polls /r/<token>/etat every few seconds, two buttons. French, Europe/Paris times.
const $ = (id) => document.getElementById(id);
const token = location.pathname.split("/")[2] || "";
const base = `/r/${encodeURIComponent(token)}`;
const ZONE = "Europe/Paris";
const TIME = new Intl.DateTimeFormat("fr-FR", { timeZone: ZONE, hour: "2-digit", minute: "2-digit", second: "2-digit" });
const HM = new Intl.DateTimeFormat("fr-FR", { timeZone: ZONE, hour: "2-digit", minute: "2-digit" });
const SOURCES = {
  live: "Position en direct (balise)", gps: "Position GPS de la balise au moment de l'alerte",
  home_visit: "Adresse de la visite à domicile déclarée", site: "Lieu d'exercice (adresse connue)",
  last_known: "Dernière position connue", unknown: "Position inconnue",
};
const state = { data: null, fetchedAt: 0, timer: null, map: null, marker: null, circle: null, tilesFailed: false, stopped: false, failing: false };

function ageWords(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `il y a ${s} s`;
  if (s < 3600) return `il y a ${Math.floor(s / 60)} min`;
  return `il y a ${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}`;
}

function text(id, value) { const el = $(id); el.textContent = value || ""; return el; }
function show(id, on) { $(id).hidden = !on; }

function renderWho(who, d) {
  text("who-name", who.name);
  text("who-role", [who.role, who.site].filter(Boolean).join(" · "));
  text("avatar", who.initials);
  text("who-phone", who.phone ? `Son téléphone : ${who.phone}` : "");
  text("who-rpps", who.rpps ? `RPPS ${who.rpps}` : "");
  text("received", `Alerte reçue à ${HM.format(new Date(d.received_at))}${d.reason ? ` — ${d.reason}` : ""}`);
}

function renderPosition(p) {
  const elapsed = (Date.now() - state.fetchedAt) / 1000;
  let source = SOURCES[p.source] || "Position";
  if (p.age_s !== null && p.age_s !== undefined) {
    source += ` · ${ageWords(p.age_s + elapsed)} (${TIME.format(new Date(p.at))})`;
  }
  if (p.stale) source = `ANCIENNE ${source.toLowerCase()}`;
  const src = text("pos-source", source);
  src.className = `source${p.live ? " live" : ""}${p.stale ? " stale" : ""}`;
  const a = p.address;
  const place = a && (a.offset || `${a.near ? "À proximité de : " : ""}${a.label}`);
  text("address", place || p.description || "Aucune adresse connue");
  text("floor", a && a.floor); show("floor-row", Boolean(a && a.floor));
  text("code", a && a.access_code); show("code-row", Boolean(a && a.access_code));
  text("details", a && a.details); show("details-row", Boolean(a && a.details));
  text("other-place", p.other_place); show("other-place", Boolean(p.other_place));
  renderMap(p);
}

function showFallback(on) { show("map", !on); show("map-fallback", on); }

function renderMap(p) {
  if (p.lat === null || p.lat === undefined) {
    show("map", false); show("map-fallback", false); show("map-link", false);
    return;
  }
  const accuracy = p.accuracy_m ? ` (± ${Math.round(p.accuracy_m)} m)` : "";
  text("fallback-coords", `${p.lat.toFixed(5)}, ${p.lon.toFixed(5)}${accuracy}`);
  $("map-link").href = p.map_url; show("map-link", true);
  const tiles = state.data.tile_url;
  if (!window.L || !tiles || state.tilesFailed) { showFallback(true); return; }
  showFallback(false);
  const here = [p.lat, p.lon];
  if (!state.map) {
    state.map = window.L.map($("map"), { attributionControl: true });
    const layer = window.L.tileLayer(tiles, { maxZoom: 19, attribution: "© contributeurs OpenStreetMap" });
    let loaded = 0;
    layer.on("tileload", () => { loaded += 1; });
    layer.on("tileerror", () => { if (!loaded) { state.tilesFailed = true; showFallback(true); } });
    layer.addTo(state.map);
    state.map.setView(here, 17);
  } else {
    state.map.panTo(here);
  }
  if (state.marker) state.marker.remove();
  if (state.circle) state.circle.remove();
  state.marker = window.L.marker(here).addTo(state.map);
  if (p.accuracy_m) state.circle = window.L.circle(here, { radius: p.accuracy_m, color: "#c4161c" }).addTo(state.map);
}

function stateWords(s) {
  switch (s.code) {
    case "acknowledged": return s.acked_by_you ? "Prise en charge par vous" : `Prise en charge par ${s.acked_by || "un intervenant"}`;
    case "resolved": return `Incident clos${s.closed_by ? ` par ${s.closed_by}` : ""}`;
    case "cancelled": return "Alerte annulée par le praticien avec son code personnel : aucune intervention requise";
    case "false_alarm": return `Fausse alerte${s.closed_by ? ` (déclarée par ${s.closed_by})` : ""} : aucune intervention requise`;
    default: return s.acked_by ? `Prise en charge par ${s.acked_by}` : "Personne n'a encore pris l'alerte en charge";
  }
}

function renderState(d) {
  const s = d.state;
  const pill = text("state-pill", !s.open ? "CLOSE" : s.acked_by ? "PRISE EN CHARGE" : "EN COURS");
  pill.className = `pill${!s.open ? " closed" : s.acked_by ? " acknowledged" : ""}`;
  text("state-text", stateWords(s));
  text("duress", s.duress); show("duress", Boolean(s.duress));
  text("drill", d.drill); show("drill", Boolean(d.drill));
  const list = $("on-site");
  list.replaceChildren(...d.on_site.map((e) => {
    const li = document.createElement("li");
    li.textContent = `Sur place : ${e.by} à ${HM.format(new Date(e.at))}`;
    return li;
  }));
  $("ack").disabled = !s.open || Boolean(s.acked_by);
  $("onsite").disabled = !s.open || d.on_site_by_you;
  text("you", `Vous : ${d.you}`);
  text("updated", `Mis à jour à ${TIME.format(new Date(d.now))}`);
}

function render(d) {
  state.data = d;
  state.fetchedAt = Date.now();
  renderWho(d.who, d);
  renderPosition(d.position);
  renderState(d);
}

function gone() {
  state.stopped = true;
  show("gone", true);
  $("ack").disabled = true; $("onsite").disabled = true;
  text("state-pill", "LIEN EXPIRÉ").className = "pill closed";
}

async function refresh() {
  try {
    const response = await fetch(`${base}/etat`, { cache: "no-store" });
    if (response.status === 404) { gone(); return; }
    if (response.ok) {
      render(await response.json());
      if (state.failing) text("msg", "");  // a button's confirmation stays
      state.failing = false;
    } else {
      state.failing = true; text("msg", "Mise à jour impossible, nouvel essai…");
    }
  } catch (_error) {
    state.failing = true; text("msg", "Réseau indisponible, nouvel essai…");
  } finally {
    if (!state.stopped) state.timer = setTimeout(refresh, ((state.data && state.data.poll_s) || 3) * 1000);
  }
}

async function act(path, done) {
  text("msg", "Envoi…");
  try {
    const response = await fetch(`${base}/${path}`, { method: "POST", cache: "no-store" });
    if (response.status === 404) { gone(); return; }
    if (!response.ok) { text("msg", "Échec, réessayez."); return; }
    render(await response.json());
    text("msg", done);
  } catch (_error) {
    text("msg", "Réseau indisponible, réessayez.");
  }
}

$("ack").addEventListener("click", () => act("prise-en-charge", "Prise en charge enregistrée."));
$("onsite").addEventListener("click", () => act("sur-place", "« Sur place » enregistré."));
refresh();
