#!/usr/bin/env bash
# `halo logits`: output size and layout, --chunk and --no-mmap give the same
# logits (f32 cache), --help, and clear errors with exit codes for bad input.
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
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
M="$FIX/models/tiny-llama-f16.gguf"
printf '40 95 284 282 590 18 270\n\n61 520 270\n' > "$TMP/tok.txt"

"$HALO" logits --help | grep -q "usage: halo logits" || bad "--help"
"$HALO" logits -m "$M" -f "$TMP/tok.txt" -o "$TMP/a.f32" -t 2 || bad "plain run failed"
size=$(stat -c %s "$TMP/a.f32" 2>/dev/null || echo 0)
[ "$size" -eq $((10 * 1024 * 4)) ] || bad "output is $size bytes, expected $((10 * 1024 * 4))"

"$HALO" logits -m "$M" -f "$TMP/tok.txt" -o "$TMP/b.f32" -t 1 -ctk f32 -ctv f32 --chunk 1 --no-mmap ||
    bad "--chunk 1 run failed"
"$HALO" logits -m "$M" -f "$TMP/tok.txt" -o "$TMP/c.f32" -t 2 -ctk f32 -ctv f32 -b 3 -ub 2 ||
    bad "-b 3 run failed"
cmp -s "$TMP/b.f32" "$TMP/c.f32" || bad "token by token and -b 3 -ub 2 differ (f32 cache)"

"$HALO" logits -m "$M" -f "$TMP/tok.txt" 2>"$TMP/e1"; rc=$?
[ $rc -eq 2 ] || bad "missing -o: exit $rc, expected 2"
"$HALO" logits -m "$M" -f "$TMP/tok.txt" -o "$TMP/x" -ctk q9 2>"$TMP/e2"; rc=$?
[ $rc -eq 2 ] && grep -q "unknown cache type" "$TMP/e2" || bad "bad -ctk: exit $rc $(cat "$TMP/e2")"
printf '1 2 x\n' > "$TMP/bad.txt"
"$HALO" logits -m "$M" -f "$TMP/bad.txt" -o "$TMP/x" 2>"$TMP/e3"; rc=$?
[ $rc -eq 1 ] && grep -q "bad.txt:1" "$TMP/e3" || bad "bad token file: exit $rc $(cat "$TMP/e3")"
printf '1 2 99999\n' > "$TMP/range.txt"
"$HALO" logits -m "$M" -f "$TMP/range.txt" -o "$TMP/x" 2>"$TMP/e4"; rc=$?
[ $rc -eq 1 ] && grep -q "outside the vocabulary" "$TMP/e4" || bad "out-of-range id: exit $rc $(cat "$TMP/e4")"
"$HALO" logits -m "$TMP/none.gguf" -f "$TMP/tok.txt" -o "$TMP/x" 2>"$TMP/e5"; rc=$?
[ $rc -eq 1 ] || bad "missing model: exit $rc"
"$HALO" logits -m "$FIX/models/qwen3-vocab.gguf" -f "$TMP/tok.txt" -o "$TMP/x" 2>"$TMP/e6"; rc=$?
[ $rc -eq 1 ] && grep -q "missing" "$TMP/e6" || bad "vocab-only model: exit $rc $(cat "$TMP/e6")"

if [ $fail -ne 0 ]; then echo "model/logits_cli: $fail failed"; exit 1; fi
echo "model/logits_cli: ok"
