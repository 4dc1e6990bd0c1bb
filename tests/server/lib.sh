# Shared by the server's shell tests: fixtures check, a server on a free port,
# and checks that count. Source it; then start_server ARGS..., and stop_server.
set -u
: "${HALO:?HALO must name the halo binary}"
FIX="${HALO_FIXTURES:-${HALO_FIXTURES_DEFAULT:-}}"
if [ -z "$FIX" ] || [ ! -d "$FIX/models" ]; then
    echo "SKIPPED: fixtures not found (set HALO_FIXTURES; tried '${FIX}')"
    exit 77
fi
if ! command -v curl >/dev/null; then
    echo "SKIPPED: curl is not installed"
    exit 77
fi
MODEL="$FIX/models/tiny-qwen3-f16.gguf"
TMP=$(mktemp -d)
PID=""
cleanup() {
    if [ -n "$PID" ]; then kill -KILL "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; fi
    rm -rf "$TMP"
}
trap cleanup EXIT
fail=0
checks=0
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { # check DESCRIPTION COMMAND...: the command must succeed
    local what=$1; shift
    checks=$((checks + 1))
    "$@" || bad "$what"
}

# start_server ARGS...: halo serve on a free port; sets PID, PORT, URL
start_server() {
    : >"$TMP/server.log"
    "$HALO" serve -m "$MODEL" --port 0 "$@" >"$TMP/server.log" 2>&1 &
    PID=$!
    PORT=""
    for _ in $(seq 1 600); do
        PORT=$(sed -n 's|.*listening on http://[0-9.]*:\([0-9]*\).*|\1|p' "$TMP/server.log")
        [ -n "$PORT" ] && break
        if ! kill -0 "$PID" 2>/dev/null; then
            echo "FAIL: the server did not start:"; cat "$TMP/server.log"; exit 1
        fi
        sleep 0.05
    done
    [ -n "$PORT" ] || { echo "FAIL: no port after 30 s"; cat "$TMP/server.log"; exit 1; }
    URL="http://127.0.0.1:$PORT"
}

# stop_server: SIGTERM, a clean exit within 20 s
stop_server() {
    kill -TERM "$PID"
    local rc=0
    for _ in $(seq 1 400); do kill -0 "$PID" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$PID" 2>/dev/null; then bad "the server did not stop on SIGTERM"; kill -KILL "$PID"; fi
    wait "$PID"; rc=$?
    PID=""
    checks=$((checks + 1))
    [ "$rc" = 0 ] || { bad "the server exited with $rc"; tail -20 "$TMP/server.log"; }
}

# http METHOD PATH [BODY] [CURL ARGS...]: body to $TMP/body, status in $CODE
http() {
    local method=$1 path=$2; shift 2
    local data=()
    if [ $# -gt 0 ]; then data=(--data-binary "$1"); shift; fi
    CODE=$(curl -s -o "$TMP/body" -w '%{http_code}' -X "$method" -H 'Content-Type: application/json' \
        "${data[@]}" "$@" "$URL$path")
}
has() { grep -qF -- "$1" "$TMP/body"; }
# expect CODE PATTERN...: status and fixed strings in the body
expect() {
    local code=$1; shift
    checks=$((checks + 1))
    [ "$CODE" = "$code" ] || { bad "status $CODE, want $code: $(head -c 300 "$TMP/body")"; return; }
    for p in "$@"; do
        checks=$((checks + 1))
        has "$p" || bad "'$p' not in: $(head -c 300 "$TMP/body")"
    done
}
# eog_bias [CURL ARGS...]: a logit_bias object banning the end-of-turn tokens, so that a
# random-weight model generates for as long as it is told to
eog_bias() {
    local ids=() t
    for t in '<|im_end|>' '<|endoftext|>'; do
        ids+=("$(curl -s "$@" "$URL/tokenize" -d "{\"content\":\"$t\"}" | sed -n 's/.*"tokens":\[\([0-9]*\)\].*/\1/p')")
    done
    local out="{" sep=""
    for t in "${ids[@]}"; do [ -n "$t" ] && out="$out$sep\"$t\":-100" && sep=","; done
    echo "$out}"
}
finish() {
    echo "$checks checks, $fail failed"
    [ "$fail" = 0 ]
}
