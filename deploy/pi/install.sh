#!/usr/bin/env bash
# Install the Vigie device client on a fresh Raspberry Pi OS Lite (bookworm) and
# start it at boot. Run as root ON THE PI, with the provisioned bundle copied there:
#
#   sudo ./install.sh --bundle /home/pi/btn-001 [--source /home/pi/vigie | --wheel vigie-*.whl]
#
# Idempotent: re-running upgrades the code and keeps the queue and sequence
# counter in /var/lib/vigie-device. See docs/deploy-pi.md.
set -euo pipefail

BUNDLE="" SOURCE="" WHEEL=""
PREFIX=/opt/vigie
CONF_DIR=/etc/vigie-device
UNIT_SRC="$(cd "$(dirname "$0")/.." && pwd)/systemd/vigie-device.service"

usage() { echo "usage: $0 --bundle DIR [--source DIR | --wheel FILE]" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --bundle) BUNDLE="$2"; shift 2 ;;
    --source) SOURCE="$2"; shift 2 ;;
    --wheel) WHEEL="$2"; shift 2 ;;
    *) usage ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "run as root (sudo)" >&2; exit 1; }
[ -n "$BUNDLE" ] || usage
for f in device.toml device.pem device.key hmac.key ca.pem; do
  [ -f "$BUNDLE/$f" ] || { echo "bundle $BUNDLE lacks $f (vigie provision device ... --out DIR)" >&2; exit 1; }
done
if [ -z "$SOURCE" ] && [ -z "$WHEEL" ]; then
  SOURCE="$(cd "$(dirname "$0")/../.." && pwd)"   # this checkout
fi

echo "==> packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# python3-lgpio: gpiozero's pin factory on bookworm; chrony: the alert timestamps must be right.
apt-get install -y -qq --no-install-recommends python3-venv python3-lgpio chrony ca-certificates >/dev/null
systemctl enable --now chrony >/dev/null 2>&1 || true

echo "==> user vigie-device (groups gpio, dialout)"
getent group gpio >/dev/null || groupadd --system gpio
id vigie-device >/dev/null 2>&1 || useradd --system --home-dir /var/lib/vigie-device --no-create-home \
  --shell /usr/sbin/nologin vigie-device
usermod -a -G gpio,dialout vigie-device

echo "==> code in $PREFIX/venv"
install -d -m 0755 "$PREFIX"
# --system-site-packages: use Debian's lgpio build instead of compiling it.
[ -x "$PREFIX/venv/bin/python" ] || python3 -m venv --system-site-packages "$PREFIX/venv"
"$PREFIX/venv/bin/pip" install --quiet --upgrade pip
if [ -n "$WHEEL" ]; then
  "$PREFIX/venv/bin/pip" install --quiet --upgrade "$WHEEL"
else
  "$PREFIX/venv/bin/pip" install --quiet --upgrade "$SOURCE"
fi
install -d -m 0755 "$PREFIX/docs"
[ -f "$SOURCE/docs/deploy-pi.md" ] && install -m 0644 "$SOURCE/docs/deploy-pi.md" "$PREFIX/docs/" || true

echo "==> bundle in $CONF_DIR"
install -d -m 0700 -o vigie-device -g vigie-device "$CONF_DIR"
for f in device.pem ca.pem; do install -m 0644 -o vigie-device -g vigie-device "$BUNDLE/$f" "$CONF_DIR/"; done
# device.toml holds the cancel and duress PINs.
for f in device.toml device.key hmac.key; do install -m 0600 -o vigie-device -g vigie-device "$BUNDLE/$f" "$CONF_DIR/"; done
if grep -Eq '^pin = ""' "$CONF_DIR/device.toml"; then
  echo "WARNING: [cancel] pin is empty in $CONF_DIR/device.toml: set the practitioner's cancel PIN" >&2
fi

echo "==> systemd unit"
install -m 0644 "$UNIT_SRC" /etc/systemd/system/vigie-device.service
systemctl daemon-reload
systemctl enable vigie-device.service >/dev/null
systemctl restart vigie-device.service
sleep 2
systemctl --no-pager --lines=5 status vigie-device.service || true
echo "done: journalctl -u vigie-device -f   (test alert: tap twice, wait 2 s; the button answers short-long)"
