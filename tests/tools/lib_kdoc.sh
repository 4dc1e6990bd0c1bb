# Shared by the tools' shell tests that run kdoc-moe (run, bench, perplexity): the
# fixtures check (skip, exit 77, when absent), $M the model, $TMP a scratch folder
# removed on exit, and the check helpers:
#   check CMD MSG             count a check; MSG is printed when CMD fails
#   run NAME ARGS...          halo ARGS: stdout to $TMP/NAME.out, stderr to .err, code in $rc
#   expect_error CODE NAME ARGS...  that exit code and an "error:" line on stderr
: "${HALO:?HALO must name the halo binary}"
FIX="${HALO_FIXTURES:-${HALO_FIXTURES_DEFAULT:-}}"
if [ -z "$FIX" ] || [ ! -f "$FIX/models/kdoc-moe-bf16.gguf" ]; then
    echo "SKIPPED: fixtures not found (set HALO_FIXTURES; tried '${FIX}')"
    exit 77
fi
M="$FIX/models/kdoc-moe-bf16.gguf"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0
checks=0
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { checks=$((checks + 1)); if ! eval "$1"; then bad "$2"; fi; }
run() {
    local name=$1; shift
    "$HALO" "$@" > "$TMP/$name.out" 2> "$TMP/$name.err"
    rc=$?
}
expect_error() {
    local code=$1 name=$2; shift 2
    run "$name" "$@"
    check "[ $rc -eq $code ]" "halo $* exited $rc, expected $code"
    check "grep -q '^error: ' '$TMP/$name.err'" "halo $*: no error line: $(head -c 300 "$TMP/$name.err")"
}
