#!/usr/bin/env bash
# Installs a BitFleet agent bundle on Raspberry Pi OS 64-bit (or any Debian aarch64/x86-64
# with systemd). Run as root from the unpacked bundle; downloads nothing.
#
#   sudo ./install-agent.sh --controller http://controller:8080 --token enr_<secret>.<fingerprint> \
#        [--name pi-kitchen] [--labels site=berlin,room=kitchen] [--advertise http://10.0.0.7:7070] \
#        [--controller-key-fingerprint sha256:<hex>] [--metrics-listen 0.0.0.0:9100]
#   (the token from `fleetctl enroll-token create` carries the controller key's fingerprint;
#   a token without one needs --controller-key-fingerprint, else the agent refuses to enroll;
#   --labels are only proposed: deployments target the labels of the token)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
CONTROLLER=""; TOKEN=""; NAME="$(hostname)"; LABELS=""; ADVERTISE=""; PORT=7070; FINGERPRINT=""; METRICS_LISTEN=""
while [ $# -gt 0 ]; do
    case "$1" in
        --controller) CONTROLLER=$2; shift ;;
        --token) TOKEN=$2; shift ;;
        --name) NAME=$2; shift ;;
        --labels) LABELS=$2; shift ;;
        --advertise) ADVERTISE=$2; shift ;;
        --port) PORT=$2; shift ;;
        --controller-key-fingerprint) FINGERPRINT=$2; shift ;;
        --metrics-listen) METRICS_LISTEN=$2; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
[ -n "$CONTROLLER" ] && [ -n "$TOKEN" ] || { echo "--controller and --token are required" >&2; exit 2; }
# A token ends in .<64 hex> when it carries the controller key's fingerprint.
if ! [[ "$TOKEN" =~ \.[0-9a-fA-F]{64}$ ]] && [ -z "$FINGERPRINT" ]; then
    echo "the token carries no controller key fingerprint: pass --controller-key-fingerprint sha256:<hex>" \
         "(printed by \`fleetctl enroll-token create\` and \`fleet-controller rotate-signing-key\`)" >&2
    exit 2
fi
[ -x "$HERE/bin/fleet-agent" ] || { echo "no bin/fleet-agent next to this script; run it from the unpacked bundle" >&2; exit 1; }
"$HERE/bin/fleet-agent" --help >/dev/null || { echo "bin/fleet-agent does not run on this machine ($(uname -m)); build the bundle for it" >&2; exit 1; }
if [ -z "$ADVERTISE" ]; then
    ADVERTISE="http://$(hostname -I | awk '{print $1}'):$PORT"
fi

id bitfleet-agent >/dev/null 2>&1 || useradd --system --home-dir /var/lib/bitfleet-agent --shell /usr/sbin/nologin bitfleet-agent
install -m 0755 "$HERE/bin/fleet-agent" /usr/local/bin/fleet-agent
install -d -m 0755 /etc/bitfleet
umask 027
cat > /etc/bitfleet/agent.env <<ENV
FLEET_CONTROLLER=$CONTROLLER
BITFLEET_ENROLL_TOKEN=$TOKEN
BITFLEET_AGENT_DATA_DIR=/var/lib/bitfleet-agent
BITFLEET_AGENT_LISTEN=0.0.0.0:$PORT
BITFLEET_AGENT_ADVERTISE=$ADVERTISE
BITFLEET_AGENT_NAME=$NAME
BITFLEET_AGENT_LABELS=$LABELS
BITFLEET_AGENT_THREADS=2
BITFLEET_CONTROLLER_KEY_FINGERPRINT=$FINGERPRINT
BITFLEET_AGENT_METRICS_LISTEN=$METRICS_LISTEN
LOG_LEVEL=info
ENV
chown root:bitfleet-agent /etc/bitfleet/agent.env
chmod 0640 /etc/bitfleet/agent.env
install -m 0644 "$HERE/systemd/bitfleet-agent.service" /etc/systemd/system/bitfleet-agent.service
systemctl daemon-reload
systemctl enable --now bitfleet-agent.service
echo "bitfleet-agent installed and started; follow it with: journalctl -u bitfleet-agent -f"
