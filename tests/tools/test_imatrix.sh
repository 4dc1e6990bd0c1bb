#!/usr/bin/env bash
# `halo imatrix` on kdoc-moe: 3 chunks of 128 tokens of text/calib.txt give a file in
# llama-imatrix's GGUF layout with the statistics of every matrix the peer's
# llama-imatrix records (when ../shared/peer/bin/llama-imatrix is there: run with the
# same settings and compared: same tensors and shapes, equal counts for 2-D weights,
# per-expert counts within 4 rows (routing near-ties: the peer rounds activations to
# bf16 before its products; measured at most 2 here) with equal totals, and in_sum2
# within 2e-2 relative L1 difference per tensor (measured, 3 chunks: 5.6e-3 for 2-D
# weights, 8.1e-3 for expert tensors; 2 chunks: 8.3e-3, 1.1e-2; f16 models without
# experts: ~1e-3)); one-token ubatches (the fused one-token paths: every
# product of a multi-product job, the routed experts of one token, the fused DeltaNet
# output) give the same statistics as whole ubatches; halo reads both files; --help;
# bad arguments exit 2, bad input 1.
set -u
source "$(dirname "${BASH_SOURCE[0]}")/lib_kdoc.sh"
SRC=${HALO_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
# the comparison tool: the C test of quant/imatrix (tests/quant/test_imatrix.c)
CMP="${HALO_BUILD_DIR:-$(dirname "$HALO")}/quant_test_imatrix"
PEER="${HALO_PEER_BIN:-$SRC/../shared/peer/bin}/llama-imatrix"
# the first 40 KB of calib.txt (~9 k tokens): the first chunks are the whole file's
T="$TMP/calib-head.txt"
head -c 40000 "$FIX/text/calib.txt" > "$T"
# Under the sanitizers (HALO_TEST_QUICK=1: an unoptimized engine) fewer chunks: two, as
# one alone differs more from the peer's (1.6e-2 / 1.7e-2: fewer rows to average the
# rounding differences over), too near the bound.
QUICK=0
[ "${HALO_TEST_QUICK:-0}" = 1 ] && QUICK=1
CH=3
[ $QUICK = 1 ] && CH=2

# 1. the file, and the progress on stderr
run im imatrix -m "$M" -f "$T" -o "$TMP/halo.gguf" -c 128 --chunks $CH -t 2
check "[ $rc -eq 0 ] && [ -s '$TMP/halo.gguf' ]" "imatrix exited $rc: $(tail -3 "$TMP/im.err")"
check "grep -q 'chunk $CH/$CH, [0-9.]* tokens/s, ETA' '$TMP/im.err'" \
    "no progress line: $(head -c 400 "$TMP/im.err")"
check "grep -q 'wrote $TMP/halo.gguf: 102 matrices, $CH chunks of 128 tokens' '$TMP/im.err'" \
    "not 102 matrices: $(tail -1 "$TMP/im.err")"
check "[ ! -s '$TMP/im.out' ]" "stdout is not empty"
# the layout: halo info cannot describe it (not a model), but its strings are there
for key in general.type imatrix imatrix.datasets imatrix.chunk_count imatrix.chunk_size \
    blk.0.ffn_up_exps.weight.in_sum2 blk.0.ffn_up_exps.weight.counts blk.7.attn_output.weight.counts \
    blk.0.ssm_out.weight.in_sum2; do
    check "grep -qaF '$key' '$TMP/halo.gguf'" "'$key' not in the file"
done
# output.weight's entry, not a layer's attn_output.weight
OUT_RE='(^|[^a-z_.0-9])output[.]weight[.]in_sum2'
check "! grep -qaE '$OUT_RE' '$TMP/halo.gguf'" \
    "the output head was recorded without --process-output"

if [ -x "$CMP" ]; then
    # 2. one-token ubatches: the fused paths report the same products
    run ub1 imatrix -m "$M" -f "$T" -o "$TMP/ub1.gguf" -c 128 --chunks $CH -t 2 -ub 1
    check "[ $rc -eq 0 ]" "imatrix -ub 1 exited $rc: $(tail -3 "$TMP/ub1.err")"
    "$CMP" compare "$TMP/ub1.gguf" "$TMP/halo.gguf" 1e-4 0 > "$TMP/cmp1.out" 2>&1
    check "[ $? -eq 0 ]" "-ub 1 against whole ubatches: $(tail -c 600 "$TMP/cmp1.out")"
    cat "$TMP/cmp1.out" | tail -1

    # 3. against the peer's llama-imatrix, and halo reading its file
    if [ -x "$PEER" ]; then
        "$PEER" -m "$M" -f "$T" -o "$TMP/peer.gguf" -c 128 --chunks $CH -t 2 \
            > "$TMP/peer.log" 2>&1
        check "[ $? -eq 0 ] && [ -s '$TMP/peer.gguf' ]" "llama-imatrix failed: $(tail -3 "$TMP/peer.log")"
        "$CMP" compare "$TMP/halo.gguf" "$TMP/peer.gguf" 2e-2 4 > "$TMP/cmp2.out" 2>&1
        check "[ $? -eq 0 ]" "against llama-imatrix: $(tail -c 800 "$TMP/cmp2.out")"
        cat "$TMP/cmp2.out" | tail -1
    else
        echo "note: $PEER absent: not compared with the peer"
    fi
else
    echo "note: $CMP absent: files not compared"
fi

# 4. --process-output records the output head, every token's row (tiny-llama's is its
#    own tensor; kdoc-moe's is tied to the embedding, which llama-imatrix never records)
L="$FIX/models/tiny-llama-f16.gguf"
if [ $QUICK = 0 ] && [ -f "$L" ]; then
    run po imatrix -m "$L" -f "$T" -o "$TMP/po.gguf" -c 128 --chunks 2 -t 2 --process-output
    check "[ $rc -eq 0 ] && grep -qaE '$OUT_RE' '$TMP/po.gguf'" \
        "--process-output did not record output.weight: $(tail -2 "$TMP/po.err")"
    if [ -x "$CMP" ] && [ -x "$PEER" ]; then
        "$PEER" -m "$L" -f "$T" -o "$TMP/ppo.gguf" -c 128 --chunks 2 -t 2 --process-output \
            > "$TMP/ppo.log" 2>&1
        "$CMP" compare "$TMP/po.gguf" "$TMP/ppo.gguf" 2e-2 0 > "$TMP/cmp3.out" 2>&1
        check "[ $? -eq 0 ]" "tiny-llama --process-output against llama-imatrix: $(tail -c 600 "$TMP/cmp3.out")"
        tail -1 "$TMP/cmp3.out"
    fi
    run tied imatrix -m "$M" -f "$T" -o "$TMP/tied.gguf" -c 128 --chunks 1 -t 2 --process-output
    check "[ $rc -eq 0 ] && grep -q 'wrote $TMP/tied.gguf: 102 matrices' '$TMP/tied.err'" \
        "kdoc-moe --process-output: $(tail -1 "$TMP/tied.err")"
fi

# 5. usage and input errors
run help imatrix --help
check "[ $rc -eq 0 ] && grep -q -- '--chunks' '$TMP/help.out' && grep -q -- '-o, --output' '$TMP/help.out'" "--help"
expect_error 2 nofile imatrix -m "$M"
expect_error 2 badc imatrix -m "$M" -f "$T" -c abc
expect_error 2 badchunks imatrix -m "$M" -f "$T" --chunks 0
expect_error 2 unknown imatrix -m "$M" -f "$T" --frobnicate
expect_error 2 novalue imatrix -m "$M" -f "$T" -o
expect_error 2 gpu imatrix -m "$M" -f "$T" -ngl 99
expect_error 1 notext imatrix -m "$M" -f "$TMP/none.txt" -o "$TMP/x.gguf"
expect_error 1 nomodel imatrix -m "$TMP/none.gguf" -f "$T" -o "$TMP/x.gguf"
printf 'too short' > "$TMP/short.txt"
expect_error 1 short imatrix -m "$M" -f "$TMP/short.txt" -o "$TMP/x.gguf"
check "grep -q 'you need at least 1024 tokens' '$TMP/short.err'" "short text: no token count"
check "[ ! -e '$TMP/x.gguf' ]" "a failed run left an output file"
expect_error 1 badout imatrix -m "$M" -f "$T" -c 128 --chunks 1 -o "$TMP/no/such/dir/x.gguf"

echo "imatrix cli: $checks checks, $fail failed"
[ $fail -eq 0 ]
