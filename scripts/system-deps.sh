#!/usr/bin/env bash
# Installs the Debian packages `make test` and `make demo` need on a fresh
# Debian 12 machine (checked from a debootstrap minbase root by
# scripts/fresh-debian-check.sh):
#   python3-venv        `python3 -m venv` (the project's .venv)
#   mosquitto           the broker the demo and the tests run for real, with
#                       its dynamic-security plugin (mosquitto_dynamic_security.so,
#                       same package): broker_config/dynsec.py
#   chromium, fonts     the console's browser tests; libatomic1 is what the
#                       node driver bundled with Playwright for Python needs
#   postgresql          the scale-out store tests
#   systemd             systemd-analyze verifies the deploy/ units
#   openssl             the shell signing example of docs/protocol.md (tested)
#   curl                the curl examples of docs/sandbox.md (run by a test)
#   erlang-base, lua5.4 read the rendered EMQX ACL (file:consult, as EMQX does) and
#                       the VerneMQ Lua hook (luac -p): tests/deploy/test_cluster_broker.py
# Installs them when we are root, otherwise says what to install.
set -euo pipefail

have_postgres() {
  command -v initdb >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null
}
have_package() {  # installed, per dpkg (for libraries, which have no command)
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"
}

need=()
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || need+=(python3-venv)
have_dynsec_plugin() {  # where Debian's "mosquitto" puts it (multiarch), as broker_config/dynsec.py looks
  compgen -G "/usr/lib/*/mosquitto_dynamic_security.so" >/dev/null || [ -f /usr/lib/mosquitto_dynamic_security.so ]
}
{ command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } && have_dynsec_plugin || need+=(mosquitto)
command -v chromium >/dev/null 2>&1 || need+=(chromium fonts-dejavu-core)
have_package libatomic1 || need+=(libatomic1)
have_postgres || need+=(postgresql)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v erl >/dev/null 2>&1 || need+=(erlang-base)
command -v luac5.4 >/dev/null 2>&1 || need+=(lua5.4)

if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "Vigie a besoin de ces paquets Debian : ${need[*]}" >&2
  echo "Installez-les avec :  sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "Installation de ${need[*]} (apt-get) ..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# Debian starts system-wide services; Vigie's tests and demo run their own.
if command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now mosquitto postgresql >/dev/null 2>&1 || true
fi
