#!/usr/bin/env bash
# Installs the Debian packages Vigie's demo and tests run against for real:
# Mosquitto (broker), Chromium (console browser tests), PostgreSQL (scale-out
# store tests). Installs them when we are root, otherwise says what to install.
set -euo pipefail

have_postgres() {
  command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-dejavu-core)
have_postgres || need+=(postgresql)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)

if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Vigie needs these Debian packages: ${need[*]}" >&2
  echo "Install them with:  sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "Installing ${need[*]} with apt-get ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts system-wide services; Vigie's tests and demo run their own.
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now mosquitto postgresql >/dev/null 2>&1 || true
fi
