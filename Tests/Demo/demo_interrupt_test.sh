#!/usr/bin/env bash
# The demo's two promises that CI's `demo.sh --once --reset` never exercises:
# - Ctrl-C stops every process the demo started (a terminal sends SIGINT to the demo's
#   process group; its background processes ignore it, so the demo's trap must stop them);
# - running the demo again reuses its state: the same controller data, admin token and
#   devices (agents are not enrolled twice) and the models already pushed.
# Uses the binaries of an existing build (no release build) and a temporary data
# directory, with two agents. Prints "N passed, M failed"; exits non-zero on a failure.
#
#   Tests/Demo/demo_interrupt_test.sh [BIN_DIR]     (default: swift build --show-bin-path)
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
BIN="${1:-$(cd "$ROOT" && swift build --show-bin-path)}"
DATA="$(mktemp -d /tmp/bitfleet-demo-test.XXXXXX)"
PORT=$((20000 + RANDOM % 20000))
passed=0; failed=0
check() {  # check NAME CONDITION...
    local name=$1; shift
    if "$@"; then passed=$((passed + 1)); echo "ok: $name"; else failed=$((failed + 1)); echo "FAILED: $name"; fi
}
# Only processes of this test: their command lines name its data directory.
ours() { pgrep -f -- "--data-dir $DATA/" || true; }
finish() {
    local left; left=$(ours)
    [ -n "$left" ] && kill $left 2>/dev/null
    rm -rf "$DATA"
}
trap finish EXIT

export BITFLEET_DEMO_BIN="$BIN" BITFLEET_DEMO_DATA="$DATA/demo"
# First run, interactive mode (runs until Ctrl-C), in its own process group as a terminal's
# foreground job is. Bash starts `&` jobs of a script with SIGINT ignored, and an ignored
# signal cannot be trapped, so the demo is started through Python with SIGINT restored.
python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.setsid(); os.execv(sys.argv[1], sys.argv[1:])' \
    "$ROOT/Deploy/demo.sh" --reset --agents 2 --port "$PORT" > "$DATA/first.log" 2>&1 < /dev/null &
demo=$!
for _ in $(seq 1 300); do
    grep -q "press Ctrl-C to stop every process" "$DATA/first.log" && break
    kill -0 "$demo" 2>/dev/null || break
    sleep 0.5
done
check "the demo comes up and waits for Ctrl-C" grep -q "press Ctrl-C to stop every process" "$DATA/first.log"
running=$(ours | wc -l)
check "a controller and two agents run ($running processes)" test "$running" -eq 3
token=$(cat "$DATA/demo/admin.token" 2>/dev/null)
identities=$(cat "$DATA"/demo/agent-*/identity.json 2>/dev/null | sha256sum)

kill -INT -- "-$demo"  # what Ctrl-C does: SIGINT to the whole foreground process group
for _ in $(seq 1 40); do kill -0 "$demo" 2>/dev/null || break; sleep 0.25; done
wait "$demo"; status=$?
check "Ctrl-C ends the demo (exit status $status)" test "$status" -eq 130
check "the demo's own cleanup ran (it stops what it started, whatever they do with SIGINT)" grep -q "stopping 3 processes" "$DATA/first.log"
sleep 0.5
left=$(ours)
check "Ctrl-C stopped every process the demo started${left:+ (left: $left)}" test -z "$left"

# Second run, the scenario once, without --reset: the state of the first is reused.
"$ROOT/Deploy/demo.sh" --once --agents 2 --port "$PORT" > "$DATA/second.log" 2>&1 < /dev/null
status=$?
check "the rerun completes its scenario (exit status $status)" test "$status" -eq 0
check "the rerun keeps the admin token" test "$(cat "$DATA/demo/admin.token" 2>/dev/null)" = "$token"
check "the rerun keeps both agents' identities (no second enrollment)" \
    test "$(cat "$DATA"/demo/agent-*/identity.json 2>/dev/null | sha256sum)" = "$identities"
devices=$(sed -n '/==> fleet summary/,$p' "$DATA/second.log" | grep -c ' pi-[0-9] ' || true)
check "the fleet summary lists exactly two devices ($devices)" test "$devices" -eq 2
left=$(ours)
check "the --once run leaves no process behind${left:+ (left: $left)}" test -z "$left"

if [ "$failed" -gt 0 ]; then
    for log in "$DATA"/first.log "$DATA"/second.log; do echo "--- $log"; tail -40 "$log"; done
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
