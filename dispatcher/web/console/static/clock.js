// The server's clock, as the console knows it: the browser's own clock may be wrong or in another zone.
// Each API answer carrying the server's `now` re-anchors it; time then runs on the browser's monotonic
// clock (performance.now), which a clock change on the workstation does not move.

let anchor = null; // { server: ms since epoch on the server, local: performance.now() then }

/** Re-anchor on the server's `now` (ISO string) received just now. */
export function syncServer(nowIso) {
  const server = new Date(nowIso).getTime();
  if (!Number.isNaN(server)) anchor = { server, local: performance.now() };
}

/** The server's time now, in ms since the epoch (the browser's clock until the first sync). */
export function serverNow() {
  return anchor ? anchor.server + (performance.now() - anchor.local) : Date.now();
}

/** Seconds from the server's now until `iso` (negative once past). */
export function secondsUntil(iso) {
  return (new Date(iso).getTime() - serverNow()) / 1000;
}

/** "40 s", "2 min 05 s", "1 h 04 min". */
export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds));
  if (s < 90) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

/** "il y a 35 s", "il y a 2 min", "il y a 3 h", from the server's now. */
export function ago(iso) {
  const s = Math.max(0, (serverNow() - new Date(iso).getTime()) / 1000);
  if (Number.isNaN(s)) return "—";
  if (s < 60) return `il y a ${Math.round(s)} s`;
  if (s < 5400) return `il y a ${Math.round(s / 60)} min`;
  return `il y a ${Math.round(s / 3600)} h`;
}
