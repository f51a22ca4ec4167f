// Must-act alarms (docs/console.md): a home visit whose alert could not be raised, because she has
// no device to file it under. Nobody else was told, so each one stays on every console of its
// territory, beeping, until an operator presses « Pris en charge »; then it leaves every console.

import { api } from "./api.js";
import { $, el } from "./dom.js";

const open = new Map(); // event id → text ("local-…" when the store could not keep it)
let ring = null;
let ringOnce = () => {};
let onChange = () => {};
let localCount = 0;

/** ``beep`` rings once; ``changed`` is told whenever the list changes (the events list is re-read). */
export function setupAlarms(beep, changed) { ringOnce = beep; onChange = changed; }

/** The snapshot's list: everything still open in this console's scope. */
export function setAlarms(alarms) {
  open.clear();
  for (const a of alarms) open.set(keyOf(a), a.alarm);
  draw();
}

export function addAlarm(alarm) { open.set(keyOf(alarm), alarm.alarm); draw(); onChange(); }

export function dropAlarm(id) { if (open.delete(String(id))) { draw(); onChange(); } }

export function clearAlarms() { open.clear(); draw(); }

function keyOf(alarm) { return alarm.id == null ? `local-${++localCount}` : String(alarm.id); }

function draw() {
  const box = $("must-act");
  box.replaceChildren(...[...open].map(([id, text]) => item(id, text)));
  box.hidden = open.size === 0;
  if (open.size > 0 && !ring) { ringOnce(); ring = setInterval(ringOnce, 2000); }
  if (open.size === 0 && ring) { clearInterval(ring); ring = null; }
}

function item(id, text) {
  const row = el("div", null, "must-act-item");
  const why = el("span", null, "must-act-error");
  const button = el("button", "Pris en charge", "must-act-handle");
  button.type = "button";
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      // An alarm the store could not keep has nothing to mark: it only leaves this console.
      if (!id.startsWith("local-")) await api(`/api/operator-events/${id}/handled`, { method: "POST" });
      dropAlarm(id);
    } catch (error) {
      why.textContent = ` — ${error.message}`;
      button.disabled = false;
    }
  });
  const words = el("p", null, "must-act-text");
  words.append(el("strong", "À TRAITER — "), text, why);
  row.append(words, button);
  return row;
}
