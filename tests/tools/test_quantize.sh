# halo quantize on kdoc-moe: recipes and single types, the summary, overrides, the output
# loading in halo (and in the peer engine when its tools are beside the fixtures), the
# quality ordering measured by KL divergence, and the command-line errors.
. "$(dirname "$0")/lib_kdoc.sh"
quick=${HALO_TEST_QUICK:-}
# a slice of held-out text for the quality checks (a few 256-token windows)
head -c 12000 "$FIX/text/test.txt" > "$TMP/text.txt"
if [ -z "$quick" ]; then
    run base perplexity -m "$M" -f "$TMP/text.txt" -c 256 -t 2 --kld-base "$TMP/base.kld"
    check "[ $rc -eq 0 ]" "base logits: $(cat "$TMP/base.err")"
fi

kld_of() { # model -> mean KLD printed by halo perplexity --kld
    "$HALO" perplexity -m "$1" --kld "$TMP/base.kld" -c 256 -t 2 2>/dev/null |
        sed -n 's/^Mean *KLD: *\([0-9.e+-]*\).*/\1/p' | head -n1
}

# a recipe: the summary names every class, and the file runs
run q4km quantize "$M" "$TMP/q4km.gguf" Q4_K_M -t 2
check "[ $rc -eq 0 ]" "Q4_K_M: $(tail -n 3 "$TMP/q4km.err")"
check "grep -q '^routed experts' '$TMP/q4km.err' && grep -q '^total' '$TMP/q4km.err'" "Q4_K_M summary: $(cat "$TMP/q4km.err")"
run q4km_info info "$TMP/q4km.gguf"
check "[ $rc -eq 0 ] && grep -q 'q6_K' '$TMP/q4km_info.out'" "Q4_K_M info: $(head -c 400 "$TMP/q4km_info.out")"
run q4km_run run -m "$TMP/q4km.gguf" -p "The page cache" -n 8 --temp 0
check "[ $rc -eq 0 ] && [ -s '$TMP/q4km_run.out' ]" "Q4_K_M run: $(cat "$TMP/q4km_run.err")"

# recipes, an override, and the quality ordering Q8_0 < Q4_K(_M) < Q2_K in KLD
# (under the sanitizers, HALO_TEST_QUICK: the recipe and the errors only)
if [ -z "$quick" ]; then
for t in q8_0 q4_K q2_K; do
    run "$t" quantize "$M" "$TMP/$t.gguf" "$t" -t 2
    check "[ $rc -eq 0 ]" "$t: $(tail -n 2 "$TMP/$t.err")"
done
k8=$(kld_of "$TMP/q8_0.gguf"); k4=$(kld_of "$TMP/q4_K.gguf"); k2=$(kld_of "$TMP/q2_K.gguf")
echo "KLD on 12 KB of test.txt: q8_0 $k8, q4_K $k4, q2_K $k2"
check "awk 'BEGIN { exit !($k8 > 0 && $k8 < $k4 && $k4 < $k2 && $k8 < 0.01) }'" "KLD order: q8_0 $k8 q4_K $k4 q2_K $k2"
# overrides: the 8 ffn_down_exps in q8_0, the (tied) token embedding in q6_K, the rest q4_0
run ov quantize "$M" "$TMP/ov.gguf" q4_0 --pure --tensor-type 'ffn_down_exps=q8_0' --token-embedding-type q6_K -t 2
check "[ $rc -eq 0 ]" "override: $(tail -n 2 "$TMP/ov.err")"
run ov_info info "$TMP/ov.gguf"
check "grep -Eq '^  q8_0 +8 tensors' '$TMP/ov_info.out' && grep -Eq '^  q6_K +1 tensors' '$TMP/ov_info.out'" "overrides not applied: $(grep -E '^  (q|f|b)' "$TMP/ov_info.out")"
fi

# round trips with the peer engine: it runs halo's file; its quantizer takes halo's importance
# matrix, and halo's quantizer takes its importance matrix
PEERBIN="$(dirname "$FIX")/peer/bin"
if [ -x "$PEERBIN/llama-bench" ] && [ -x "$PEERBIN/llama-quantize" ] && [ -x "$PEERBIN/llama-imatrix" ] &&
    [ -z "$quick" ]; then
    "$PEERBIN/llama-bench" -m "$TMP/q4km.gguf" -p 8 -n 4 -r 1 -t 2 > "$TMP/peer.out" 2>&1
    check "grep -q 'tg4' '$TMP/peer.out'" "the peer could not run halo's Q4_K_M: $(tail -n 3 "$TMP/peer.out")"
    head -c 30000 "$FIX/text/calib.txt" > "$TMP/calib.txt"
    run him imatrix -m "$M" -f "$TMP/calib.txt" -o "$TMP/halo.imat.gguf" -c 128 --chunks 2 -t 2
    check "[ $rc -eq 0 ]" "halo imatrix: $(tail -n 2 "$TMP/him.err")"
    "$PEERBIN/llama-quantize" --imatrix "$TMP/halo.imat.gguf" "$M" "$TMP/peer-q4km.gguf" Q4_K_M 2 \
        > "$TMP/pq.out" 2>&1
    check "[ $? -eq 0 ] && [ -s '$TMP/peer-q4km.gguf' ]" "llama-quantize refused halo's imatrix: $(tail -n 3 "$TMP/pq.out")"
    "$PEERBIN/llama-imatrix" -m "$M" -f "$TMP/calib.txt" -o "$TMP/peer.imat.gguf" -c 128 --chunks 2 -t 2 \
        > "$TMP/pim.out" 2>&1
    run hq quantize --imatrix "$TMP/peer.imat.gguf" "$M" "$TMP/hq.gguf" q4_K -t 2
    check "[ $rc -eq 0 ] && ! grep -q 'nothing for' '$TMP/hq.err'" "halo quantize with the peer's imatrix: $(tail -n 3 "$TMP/hq.err")"
    # llama-quantize's recipes: the same block type for every tensor as the peer chooses, on
    # four architectures (GQA 2, 8 experts and 4, hybrid) and with an importance matrix
    if command -v python3 >/dev/null; then
        types() { python3 "$(dirname "$0")/gguf_types.py" "$1" | sort; }
        for m in tiny-llama-f16 tiny-qwen3moe-f16 tiny-qwen35-f16; do
            for t in Q8_0 Q6_K Q5_K_M Q4_K_M Q4_K_S Q3_K_M Q3_K_L Q2_K IQ4_XS IQ4_NL Q4_0 Q5_1; do
                "$HALO" quantize "$FIX/models/$m.gguf" "$TMP/r-h.gguf" $t -t 2 > /dev/null 2>&1 &&
                    "$PEERBIN/llama-quantize" "$FIX/models/$m.gguf" "$TMP/r-p.gguf" $t 2 > /dev/null 2>&1
                check "[ \"\$(types '$TMP/r-h.gguf')\" = \"\$(types '$TMP/r-p.gguf')\" ]" "$m $t: types differ from llama-quantize's"
            done
        done
        for t in Q6_K IQ4_XS Q4_0; do # kdoc-moe: 8 experts; with the imatrix (its own rules)
            "$HALO" quantize --imatrix "$TMP/halo.imat.gguf" "$M" "$TMP/r-h.gguf" $t -t 2 > /dev/null 2>&1 &&
                "$PEERBIN/llama-quantize" --imatrix "$TMP/halo.imat.gguf" "$M" "$TMP/r-p.gguf" $t 2 > /dev/null 2>&1
            check "[ \"\$(types '$TMP/r-h.gguf')\" = \"\$(types '$TMP/r-p.gguf')\" ]" "kdoc $t with imatrix: types differ from llama-quantize's"
        done
    fi
else
    echo "note: the peer's tools are not beside the fixtures (or HALO_TEST_QUICK): round trips skipped"
fi

# errors
expect_error 2 badtype quantize "$M" "$TMP/x.gguf" Q9_Z
expect_error 2 noargs quantize "$M"
expect_error 2 same quantize "$M" "$M" q8_0
expect_error 1 missing quantize "$TMP/none.gguf" "$TMP/x.gguf" q8_0
expect_error 2 requant quantize "$TMP/q4km.gguf" "$TMP/x.gguf" q4_0
expect_error 2 badre quantize "$M" "$TMP/x.gguf" q4_0 --tensor-type '(=q8_0'
run help quantize --help
check "[ $rc -eq 0 ] && grep -q -- '--imatrix' '$TMP/help.out'" "--help"

echo "quantize cli: $checks checks, $fail failed"
[ $fail -eq 0 ]
