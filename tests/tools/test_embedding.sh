#!/usr/bin/env bash
# `halo embedding` (like llama-embedding): one line a vector, unit length, the values the
# server gives (tests/server/test_embeddings.sh checks those against the peer); every
# token's vector with pooling none; json output; usage errors (exit 2).
set -u
: "${HALO:?HALO must name the halo binary}"
FIX="${HALO_FIXTURES:-${HALO_FIXTURES_DEFAULT:-}}"
if [ -z "$FIX" ] || [ ! -d "$FIX/models" ]; then
    echo "SKIPPED: fixtures not found (set HALO_FIXTURES; tried '${FIX}')"
    exit 77
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0
checks=0
check() { local what=$1; shift; checks=$((checks + 1)); "$@" || { echo "FAIL: $what"; fail=$((fail + 1)); }; }
M="$FIX/models/tiny-qwen3-f16.gguf"

"$HALO" embedding -m "$M" -t 1 --pooling mean -p $'The page cache\nA spinlock' >"$TMP/mean.out" 2>"$TMP/err"
check "exit 0" [ $? = 0 ]
check "two vectors" [ "$(grep -c '^embedding [01]: ' "$TMP/mean.out")" = 2 ]
check "256 values, unit length" awk '{ s = 0; for (i = 3; i <= NF; i++) s += $i * $i;
    if (NF - 2 != 256 || s < 0.9999 || s > 1.0001) exit 1 }' "$TMP/mean.out"
"$HALO" embedding -m "$M" -t 1 --pooling mean --embd-normalize -1 -p 'The page cache' >"$TMP/raw.out" 2>/dev/null
check "--embd-normalize -1: not unit length" awk '{ s = 0; for (i = 3; i <= NF; i++) s += $i * $i;
    if (s > 0.9 && s < 1.1) exit 1 }' "$TMP/raw.out"
"$HALO" embedding -m "$M" -t 1 --pooling mean --embd-output-format json -p 'The page cache' >"$TMP/json.out" 2>/dev/null
check "json output" grep -q '^{"object":"list","data":\[{"object":"embedding","index":0,"embedding":\[' "$TMP/json.out"
"$HALO" embedding -m "$M" -t 1 -p 'spin.' >"$TMP/none.out" 2>/dev/null
n_tok=$("$HALO" tokenize -m "$M" --ids -p 'spin.' 2>/dev/null | tr -d '[],' | wc -w)
check "pooling none (the file's): a vector per token ($n_tok)" \
    [ "$(grep -c '^ *-\?[0-9]' "$TMP/none.out")" = "$n_tok" ]
for args in "" "-p x --pooling rank" "-p x --pooling avg" "-p x --embd-normalize 99" "-p x --bogus" "-p x --embd-output-format csv"; do
    # shellcheck disable=SC2086
    "$HALO" embedding -m "$M" $args >/dev/null 2>"$TMP/err"
    check "'$args': usage error (exit 2)" [ $? = 2 ]
done
"$HALO" embedding -m "$M" -p '' >/dev/null 2>"$TMP/err"
check "an empty text: exit 1" [ $? = 1 ]
echo "$checks checks, $fail failed"
[ "$fail" = 0 ]
