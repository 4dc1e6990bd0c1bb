#!/usr/bin/env bash
# Bounded load on loopback: 64 concurrent clients send a mix of valid, invalid and
# cancelled requests for a few seconds (fewer under the sanitizers); the server
# must answer each correctly, come back to idle, and shut down cleanly (no crash,
# deadlock or leak: the sanitizer build checks the last).
source "$(dirname "$0")/lib.sh"
if ! command -v node >/dev/null; then echo "SKIPPED: node is needed for the load client"; exit 77; fi
SECS=8
[ -n "${HALO_TEST_QUICK:-}" ] && SECS=3
# the slots sample in parallel after each step (as with -ngl): slots end at different steps
export HALO_SERVE_SAMPLE_THREADS=3
start_server -np 4 -c 4096 -t 2 --queue 32 --log-disable
checks=$((checks + 1))
HALO_URL="$URL" CLIENTS=64 LOAD_SECONDS=$SECS node "$(dirname "$0")/load.cjs" || bad "the load test"
stop_server
finish
