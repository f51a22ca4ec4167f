#!/usr/bin/env bash
# Maintainer check: do the README's two commands work on a truly fresh Debian 12?
#
# Builds a debootstrap *minbase* bookworm root, installs only what a newcomer
# needs to type the README's commands (git, make, python3, ca-certificates),
# clones this repository into it, then runs `make test` and a short
# `make demo` there (everything else must come from scripts/system-deps.sh and
# the Makefile) and prints a summary. Runs as root, takes 20-40 minutes.
#
#   scripts/fresh-debian-check.sh [--ref COMMIT-OR-BRANCH] [--root DIR] [--demo-seconds N]
#
# The root is kept after the run (for inspection) and wiped at the next run.
# Logs: DIR/../fresh-debian-logs/{bootstrap,test,demo}.log
set -euo pipefail

HERE="$(cd "$(dirname "$0")/.." && pwd)"
REF="$(git -C "$HERE" rev-parse HEAD)"
ROOT=/var/tmp/vigie-fresh/root
DEMO_SECONDS=120
HTTP_PORT=27180
BROKER_PORT=27183
MIRROR=http://deb.debian.org/debian
while [ $# -gt 0 ]; do
  case "$1" in
    --ref) REF="$(git -C "$HERE" rev-parse "$2")"; shift 2 ;;
    --root) ROOT="$2"; shift 2 ;;
    --demo-seconds) DEMO_SECONDS="$2"; shift 2 ;;
    *) echo "usage: $0 [--ref REF] [--root DIR] [--demo-seconds N]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "run as root (debootstrap, chroot, mounts)" >&2; exit 2; }
LOGS="$(dirname "$ROOT")/fresh-debian-logs"
GITDIR="$(git -C "$HERE" rev-parse --path-format=absolute --git-common-dir)"

mounts=()
cleanup() {
  # Processes left inside the root (a demo interrupted halfway): ours, found by their root.
  for proc in /proc/[0-9]*; do
    if [ "$(readlink "$proc/root" 2>/dev/null)" = "$ROOT" ]; then kill -9 "${proc#/proc/}" 2>/dev/null || true; fi
  done
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[$i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
bind() {  # bind <host path> <path in root> [ro]
  mkdir -p "$ROOT$2"
  mount --bind "$1" "$ROOT$2"
  mounts+=("$ROOT$2")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$ROOT$2"; fi
}
EGRESS_ENV=()
in_root() {  # a clean environment: nothing of this machine's settings leaks in
  env -i HOME=/root LANG=C.UTF-8 TERM=dumb PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive "${EGRESS_ENV[@]}" chroot "$ROOT" /bin/bash -c "$1"
}

command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
rm -rf "$(dirname "$ROOT")"  # a previous run's root (its mounts are gone with the trap)
mkdir -p "$ROOT" "$LOGS"
started=$(date +%s)
echo "[1/4] debootstrap --variant=minbase bookworm -> $ROOT"
debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" >"$LOGS/bootstrap.log" 2>&1
mount -t proc proc "$ROOT/proc"; mounts+=("$ROOT/proc")
mount -t sysfs sys "$ROOT/sys"; mounts+=("$ROOT/sys")
bind /dev /dev
bind /dev/pts /dev/pts
mount -t tmpfs -o mode=1777 shm "$ROOT/dev/shm"; mounts+=("$ROOT/dev/shm")
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
# A chroot has no init: packages must not start services (a real machine runs
# systemd, and system-deps.sh disables them there).
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"; chmod +x "$ROOT/usr/sbin/policy-rc.d"
# This machine's egress may re-sign TLS with a local CA: not part of the check,
# so the root trusts it too, and pip (which has its own CA bundle) is told to
# use the system's.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$ROOT/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/"
  EGRESS_ENV=(PIP_CERT=/etc/ssl/certs/ca-certificates.crt SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt)
fi

echo "[2/4] apt-get install git make python3 ca-certificates; git clone ($REF)"
in_root "apt-get update -qq && apt-get install -y -qq --no-install-recommends git make python3 ca-certificates \
  && update-ca-certificates" >>"$LOGS/bootstrap.log" 2>&1
bind "$GITDIR" /mnt/vigie.git ro
in_root "git clone -q /mnt/vigie.git /root/vigie && git -C /root/vigie checkout -q $REF" >>"$LOGS/bootstrap.log" 2>&1

echo "[3/4] make test (log: $LOGS/test.log)"
t0=$(date +%s)
test_rc=0
in_root "cd /root/vigie && make test" >"$LOGS/test.log" 2>&1 || test_rc=$?
test_s=$(( $(date +%s) - t0 ))

echo "[4/4] make demo HTTP_PORT=$HTTP_PORT BROKER_PORT=$BROKER_PORT for ${DEMO_SECONDS} s, then Ctrl-C (log: $LOGS/demo.log)"
# setsid: the demo gets its own process group, which receives the SIGINT a
# terminal's Ctrl-C would send.
in_root "cd /root/vigie && exec setsid make demo HTTP_PORT=$HTTP_PORT BROKER_PORT=$BROKER_PORT" >"$LOGS/demo.log" 2>&1 &
demo=$!
sleep 2
demo_pgid=$(ps -o pgid= -p "$(pgrep -P "$demo" | head -1)" 2>/dev/null | tr -d ' ' || true)
waited=0
while [ "$waited" -lt "$DEMO_SECONDS" ] && kill -0 "$demo" 2>/dev/null; do sleep 1; waited=$((waited + 1)); done
demo_alive=no; kill -0 "$demo" 2>/dev/null && demo_alive=yes
[ -n "$demo_pgid" ] && kill -INT -- "-$demo_pgid" 2>/dev/null || true
demo_rc=0; wait "$demo" || demo_rc=$?

pytest_line=$(grep -E '^=+ .*(passed|failed|error).* in [0-9.]+s' "$LOGS/test.log" | tail -1 | tr -d '=' | sed 's/^ *//;s/ *$//' || true)
alerts=$(grep -c "alerte envoyée" "$LOGS/demo.log" || true)
acked=$(grep -c "prise en charge par" "$LOGS/demo.log" || true)
escalated=$(grep -c "personne n'a répondu à temps" "$LOGS/demo.log" || true)
exhausted=$(grep -c "chaîne épuisée" "$LOGS/demo.log" || true)
tracebacks=$(grep -c "Traceback" "$LOGS/demo.log" || true)
banner=no; grep -q "/console/" "$LOGS/demo.log" && banner=yes
demo_ok=no
if [ "$demo_alive" = yes ] && [ "$demo_rc" -eq 0 ] && [ "$tracebacks" -eq 0 ] && [ "$banner" = yes ] && [ "$alerts" -gt 0 ]; then
  demo_ok=yes
fi
test_ok=no; [ "$test_rc" -eq 0 ] && test_ok=yes
cat <<SUMMARY

=== fresh Debian 12 (debootstrap minbase) check — $(git -C "$HERE" log -1 --format='%h %s' "$REF")
  installed by hand : git make python3 ca-certificates (the rest came from make / system-deps.sh)
  system packages   : $(grep -o 'Installation de .* (apt-get)' "$LOGS/test.log" | head -1 | sed 's/Installation de //;s/ (apt-get)//')
  make test         : $( [ "$test_ok" = yes ] && echo PASS || echo "FAIL (exit $test_rc)" ) in ${test_s} s — ${pytest_line:-no pytest summary line}
  make demo         : $( [ "$demo_ok" = yes ] && echo PASS || echo FAIL ) — alive after ${DEMO_SECONDS} s: $demo_alive, exit after Ctrl-C: $demo_rc, console URL printed: $banner
                      alerts pressed: $alerts, taken: $acked, escalations: $escalated, exhausted: $exhausted, tracebacks: $tracebacks
  total             : $(( $(date +%s) - started )) s; logs in $LOGS
SUMMARY
[ "$test_ok" = yes ] && [ "$demo_ok" = yes ]
