#!/usr/bin/env bash
# `halo perplexity` on kdoc-moe: 3 windows of 128 tokens of text/test.txt give the
# peer engine's figure (llama-perplexity -c 128 --chunks 3: [1]50.0460,[2]45.2979,
# [3]36.1652, PPL = 36.1652 +/- 8.07720) within 1 %; the output has llama-perplexity's
# shape; KLD of the model against its own saved logits is 0; bad input fails cleanly.
set -u
source "$(dirname "${BASH_SOURCE[0]}")/lib_kdoc.sh"
# the first 40 KB of text/test.txt (~9 k tokens): its first windows are the whole file's
# (tokenization is local), and tokenizing 500 KB per run would cost more than the model
T="$TMP/test-head.txt"
head -c 40000 "$FIX/text/test.txt" > "$T"
# Under the sanitizers (HALO_TEST_QUICK=1: an unoptimized engine) one window where
# three would be evaluated, and KLD over one.
QUICK=0
[ "${HALO_TEST_QUICK:-0}" = 1 ] && QUICK=1
CH=3 KCH=2
[ $QUICK = 1 ] && CH=1 KCH=1

# 1. the figure, and the shape of the output
run ppl perplexity -m "$M" -f "$T" -c 128 --chunks $CH -t 2
check "[ $rc -eq 0 ]" "perplexity exited $rc: $(tail -3 "$TMP/ppl.err")"
shape='^\[1\][0-9.]+,\[2\][0-9.]+,\[3\][0-9.]+,$'
[ $QUICK = 1 ] && shape='^\[1\][0-9.]+,$'
check "grep -qE '$shape' '$TMP/ppl.out'" \
    "running estimates not as [1]x,[2]y,...: $(head -c 300 "$TMP/ppl.out")"
ppl=$(sed -n 's/^Final estimate: PPL = \([0-9.]*\) +\/- \([0-9.]*\)$/\1 \2/p' "$TMP/ppl.out")
check "[ -n '$ppl' ]" "no 'Final estimate: PPL = X +/- Y' line"
if [ -n "$ppl" ] && [ $QUICK = 0 ]; then
    set -- $ppl
    check "awk -v p=$1 'BEGIN { exit !(p > 36.1652 * 0.99 && p < 36.1652 * 1.01) }'" \
        "PPL $1, the peer's is 36.1652 (1 % allowed)"
    check "awk -v e=$2 'BEGIN { exit !(e > 8.07720 * 0.95 && e < 8.07720 * 1.05) }'" \
        "uncertainty $2, the peer's is 8.07720"
fi
if [ -n "$ppl" ]; then
    first=$(sed -n 's/^\[1\]\([0-9.]*\),.*/\1/p' "$TMP/ppl.out")
    check "awk -v p=$first 'BEGIN { exit !(p > 50.0460 * 0.99 && p < 50.0460 * 1.01) }'" \
        "first window's PPL $first, the peer's is 50.0460"
fi

# 2. KLD against itself: 0, same top token everywhere, ratio 1
run base perplexity -m "$M" -f "$T" -c 128 --chunks $KCH -t 2 --kld-base "$TMP/base.kld"
check "[ $rc -eq 0 ] && [ -s '$TMP/base.kld' ]" "--kld-base failed ($rc): $(tail -2 "$TMP/base.err")"
run self perplexity -m "$M" -f "$T" -t 2 --kld "$TMP/base.kld"
check "[ $rc -eq 0 ]" "--kld failed ($rc): $(tail -2 "$TMP/self.err")"
kld=$(sed -n 's/^Mean    KLD: *\([-0-9.]*\) .*/\1/p' "$TMP/self.out")
check "awk -v k='$kld' 'BEGIN { exit !(k != \"\" && k + 0 < 1e-5 && k + 0 > -1e-5) }'" \
    "KLD of the model against itself is '$kld', not 0"
check "grep -q '^Same top p: 100.000 ' '$TMP/self.out'" "same top token not 100 %"
check "grep -qE '^Mean PPL\(Q\)/PPL\(base\) *: *1.0000' '$TMP/self.out'" "PPL ratio not 1"
# the base file holds the tokens: -f is optional, but if given must match
run self2 perplexity -m "$M" -t 2 --kld "$TMP/base.kld" --chunks 1
check "[ $rc -eq 0 ]" "--kld without -f failed ($rc)"
printf 'some other text entirely, %.0s' $(seq 200) > "$TMP/other.txt"
expect_error 1 other perplexity -m "$M" -f "$TMP/other.txt" --kld "$TMP/base.kld"
expect_error 1 otherc perplexity -m "$M" -c 256 --kld "$TMP/base.kld"

# 2b. quantized KV caches against f16 (issue 11, item 6): 8 windows of 512 tokens, bounds
# from the measurement on this text (7 Dec, rows rotated: q8_0 5.6e-5 +- 2.2e-5, q4_0
# 2.18e-3 +- 1.57e-4, iq4_nl 1.22e-3 +- 6.9e-5, the same at 1 and 2 threads) at two
# standard errors. q4_0 without the rotation measured 2.50e-3: above its bound.
# Skipped under the sanitizers.
if [ $QUICK = 0 ]; then
    run kvbase perplexity -m "$M" -f "$T" -c 512 --chunks 8 -t 2 --kld-base "$TMP/kv.kld"
    for kv in q8_0:0.0001 q4_0:0.00249 iq4_nl:0.00136; do
        t=${kv%%:*} bound=${kv##*:}
        run kv_$t perplexity -m "$M" -f "$T" -c 512 --chunks 8 -t 2 --kld "$TMP/kv.kld" -ctk $t -ctv $t
        k=$(sed -n 's/^Mean    KLD: *\([-0-9.]*\) .*/\1/p' "$TMP/kv_$t.out")
        check "awk -v k='$k' -v b=$bound 'BEGIN { exit !(k != \"\" && k + 0 > 0 && k + 0 <= b) }'" \
            "KV $t: KLD against f16 '$k', bound $bound"
    done
fi

# 3. hostile or wrong KLD files
printf 'not a kld file at all, no no no no no no no no no no no' > "$TMP/junk.kld"
expect_error 1 junk perplexity -m "$M" --kld "$TMP/junk.kld"
head -c 5000 "$TMP/base.kld" > "$TMP/short.kld"
expect_error 1 short perplexity -m "$M" --kld "$TMP/short.kld"
cp "$TMP/base.kld" "$TMP/ver.kld"
printf '\x09' | dd of="$TMP/ver.kld" bs=1 seek=8 conv=notrunc 2>/dev/null
expect_error 1 version perplexity -m "$M" --kld "$TMP/ver.kld"
check "grep -q 'version' '$TMP/version.err'" "a wrong version is not named"
cp "$TMP/base.kld" "$TMP/vocab.kld"
printf '\x01' | dd of="$TMP/vocab.kld" bs=1 seek=16 conv=notrunc 2>/dev/null
expect_error 1 vocab perplexity -m "$M" --kld "$TMP/vocab.kld"
expect_error 1 missing perplexity -m "$M" --kld "$TMP/nonexistent.kld"

# 4. usage and input errors
printf 'too short' > "$TMP/short.txt"
expect_error 1 shorttext perplexity -m "$M" -f "$TMP/short.txt"
check "grep -q 'you need at least 1024 tokens' '$TMP/shorttext.err'" "short text: no token count"
expect_error 2 nofile perplexity -m "$M"
expect_error 2 badc perplexity -m "$M" -f "$T" -c abc
expect_error 2 both perplexity -m "$M" -f "$T" --kld-base a --kld b
expect_error 2 unknown perplexity -m "$M" -f "$T" --frobnicate
expect_error 1 nomodel perplexity -m "$TMP/none.gguf" -f "$T"
run help perplexity --help
check "[ $rc -eq 0 ] && grep -q -- '--kld-base' '$TMP/help.out'" "--help"

echo "perplexity cli: $checks checks, $fail failed"
[ $fail -eq 0 ]
