#!/usr/bin/env bash
# The BitFleet demo fleet on one machine: a controller and agents as separate processes on
# loopback, the Fashion-MNIST sample models pushed and deployed, real test images fed to
# every agent so the aggregates are real, then a second version rolled out in stages.
#
#   ./Deploy/demo.sh              run until Ctrl-C (which stops every process it started)
#   ./Deploy/demo.sh --once       run the whole scenario, verify the fleet summary, stop
#   ./Deploy/demo.sh --reset      forget the previous demo's state first
#   ./Deploy/demo.sh --agents 5   number of agents (default 3)
#
# State lives in ./demo-data (controller database, keys, agent data); running again reuses it.
# BITFLEET_DEMO_DATA=DIR keeps it elsewhere; BITFLEET_DEMO_BIN=DIR runs binaries already
# built there instead of building release ones (Tests/Demo/demo_interrupt_test.sh does both).
set -euo pipefail
source "$(dirname "$0")/../scripts/lib.sh"
cd "$BITFLEET_ROOT"

ONCE=0; RESET=0; AGENTS=3; PORT=${BITFLEET_DEMO_PORT:-8080}
while [ $# -gt 0 ]; do
    case "$1" in
        --once) ONCE=1 ;;
        --reset) RESET=1 ;;
        --agents) AGENTS=$2; shift ;;
        --port) PORT=$2; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

require_system_packages
if [ -n "${BITFLEET_DEMO_BIN:-}" ]; then
    BIN=$BITFLEET_DEMO_BIN
else
    require_swift
    log "building BitFleet in release mode (the first build takes several minutes)"
    swift build -c release --product fleet-controller
    swift build -c release --product fleet-agent
    swift build -c release --product fleetctl
    BIN=$(swift build -c release --show-bin-path)
fi

DATA="${BITFLEET_DEMO_DATA:-$BITFLEET_ROOT/demo-data}"
if [ "$RESET" -eq 1 ]; then log "removing $DATA"; rm -rf "$DATA"; fi
mkdir -p "$DATA"

PIDS=()
cleanup() {
    trap - EXIT INT TERM
    if [ ${#PIDS[@]} -gt 0 ]; then
        log "stopping ${#PIDS[@]} processes"
        kill "${PIDS[@]}" 2>/dev/null || true
        wait "${PIDS[@]}" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_for_file() { for _ in $(seq 1 200); do [ -s "$1" ] && return 0; sleep 0.1; done; die "timed out waiting for $1"; }

port_free "$PORT" || die "port $PORT is in use; pass --port N or stop what listens there"
log "starting the controller on 127.0.0.1:$PORT"
rm -f "$DATA/controller/controller.url"
"$BIN/fleet-controller" serve --data-dir "$DATA/controller" --listen "127.0.0.1:$PORT" --heartbeat-interval 5 \
    --admin-token-file "$DATA/admin.token" > "$DATA/controller.log" 2>&1 &
PIDS+=($!)
wait_for_file "$DATA/controller/controller.url"
export FLEET_CONTROLLER; FLEET_CONTROLLER=$(cat "$DATA/controller/controller.url")
[ -s "$DATA/admin.token" ] || die "no admin token in $DATA/admin.token; run with --reset"
export FLEET_TOKEN; FLEET_TOKEN=$(cat "$DATA/admin.token")
F="$BIN/fleetctl"

SITES=(berlin paris lisbon oslo rome)
for i in $(seq 1 "$AGENTS"); do
    dir="$DATA/agent-$i"
    token_args=()
    if [ ! -f "$dir/identity.json" ]; then
        # The token carries the controller key's fingerprint (the agent pins only that key);
        # fleetctl prints the fingerprint on stderr, which goes to the demo's log.
        token_args=(--enroll-token "$("$F" enroll-token create --expires 1h --label "site=${SITES[$(( (i - 1) % 5 ))]}" 2>>"$DATA/fleetctl.log")")
    fi
    rm -f "$dir/agent.url"
    "$BIN/fleet-agent" run --data-dir "$dir" --controller "$FLEET_CONTROLLER" --listen 127.0.0.1:0 --name "pi-$i" \
        --heartbeat-interval 2 --aggregate-window 5 "${token_args[@]}" > "$DATA/agent-$i.log" 2>&1 &
    PIDS+=($!)
done
for i in $(seq 1 "$AGENTS"); do wait_for_file "$DATA/agent-$i/agent.url"; done
log "$AGENTS agents running"
sleep 3
"$F" devices list

push_if_missing() {
    local file=$1 version=$2
    if ! "$F" model list --json | grep -q "\"version\" : \"$version\""; then
        "$F" model push "$file" --name fashion --version "$version"
    fi
}
log "pushing the sample models (binary MLP as v1, binary CNN as v2)"
push_if_missing Models/fashion-mnist/bnn-mlp.bnn v1
push_if_missing Models/fashion-mnist/bnn-cnn.bnn v2
"$F" model list

log "deploying fashion v1 to every device"
"$F" deploy model v1 --wait --timeout 2m

IMAGES=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
feed() {
    for i in $(seq 1 "$AGENTS"); do
        "$BIN/fleet-agent" infer --data-dir "$DATA/agent-$i" --idx "$IMAGES" --offset $(( (i - 1) * 200 + $1 )) --limit 100 > /dev/null
    done
}
log "feeding each agent 100 Fashion-MNIST test images through its local endpoint"
feed 0

log "rolling out fashion v2 (the binary CNN) in stages: a third of the fleet first, then everyone"
ROLLOUT=$("$F" deploy model v2 --stages 34%,100% --soak 5s --max-failures 20% --min-devices 1 --auto-rollback --json \
    | sed -n 's/^  "id" : \([0-9]*\),*/\1/p')
[ -n "$ROLLOUT" ] || die "the rollout did not start"
if [ "$ONCE" -eq 0 ] && [ -t 1 ]; then
    "$F" rollout show "$ROLLOUT" --watch
else
    for _ in $(seq 1 120); do
        "$F" rollout show "$ROLLOUT" --json | grep -q '"state" : "completed"' && break
        sleep 1
    done
    "$F" rollout show "$ROLLOUT"
fi
"$F" rollout show "$ROLLOUT" --json | grep -q '"state" : "completed"' || die "rollout $ROLLOUT did not complete"
feed 100
log "waiting for the aggregates of the last window to reach the controller"
sleep 8

echo
log "fleet summary"
"$F" status
"$F" devices list
"$F" metrics --since 1h
echo
echo "dashboard:       $("$F" dashboard)   (one-time sign-in link; \`fleetctl dashboard\` makes another, or sign in at $FLEET_CONTROLLER/login with the token)"
echo "controller API:  $FLEET_CONTROLLER/api/v1/status"
echo "admin token:     $FLEET_TOKEN   (also in $DATA/admin.token)"
echo "try:             FLEET_CONTROLLER=$FLEET_CONTROLLER FLEET_TOKEN=\$(cat $DATA/admin.token) $F devices list"

if [ "$ONCE" -eq 1 ]; then
    status=$("$F" status --json)
    echo "$status" | grep -q "\"fashion v2\" : $AGENTS" || die "not every agent runs fashion v2: $status"
    "$F" metrics --since 1h --json | grep -q '"inferences" : [1-9]' || die "no inference aggregates reached the controller"
    log "demo verified: $AGENTS agents run fashion v2 and their aggregates reached the controller"
    exit 0
fi
log "the fleet is running; press Ctrl-C to stop every process"
wait
