#!/usr/bin/env bash
# `halo quantize --target-size / --target-bpw` (mixed precision chosen by measurement) on
# kdoc-moe, kept short: two candidate types, one calibration window of 128 tokens:
#   - the output file is within the budget, the chosen map is printed and stored in the
#     metadata (halo.quantize.type_map, one NAME=TYPE per matrix), both types are used;
#   - the measurements saved with --kld-table are reused for another budget (no new pass),
#     --target-bpw holds the bits per weight `halo info` reports, --tensor-type fixes a
#     tensor's type and the rest is chosen around it;
#   - quality: KLD on held-out text below the bound set from a measurement;
#   - the command-line errors.
set -u
source "$(dirname "${BASH_SOURCE[0]}")/lib_kdoc.sh"
QUICK=0
[ "${HALO_TEST_QUICK:-0}" = 1 ] && QUICK=1
head -c 40000 "$FIX/text/calib.txt" > "$TMP/calib.txt"
head -c 12000 "$FIX/text/test.txt" > "$TMP/text.txt"
MIX=(--calib "$TMP/calib.txt" --calib-chunks 1 --calib-ctx 128 --target-types q4_K,q8_0 -t 2)
fsize() { stat -c %s "$1"; }

# Under the sanitizers (HALO_TEST_QUICK=1: an unoptimized engine, ~20x slower) only a small
# model (tiny-qwen3, 1.5 M parameters, 6 groups) and the errors.
if [ $QUICK = 1 ]; then
    T3="$FIX/models/tiny-qwen3-f16.gguf"
    run tiny quantize "$T3" "$TMP/tiny.gguf" --calib "$TMP/calib.txt" --calib-chunks 1 --calib-ctx 64 \
        --target-types q4_0,q8_0 --target-bpw 6 -t 2
    check "[ $rc -eq 0 ]" "tiny-qwen3 --target-bpw: $(tail -n 5 "$TMP/tiny.err")"
    check "grep -qa 'halo.quantize.type_map' '$TMP/tiny.gguf' && grep -q '^total' '$TMP/tiny.out'" \
        "tiny-qwen3: no map: $(head -c 400 "$TMP/tiny.out")"
    run tiny_info info "$TMP/tiny.gguf"
    b=$(sed -n 's/^weights .* \([0-9.]*\) bits per weight$/\1/p' "$TMP/tiny_info.out")
    check "[ -n '$b' ] && awk -v b='$b' 'BEGIN { exit !(b <= 6.0) }'" "tiny-qwen3: ${b:-?} bits per weight"
fi

# 1. a size budget between all-q4_K (~11.7 MiB) and all-q8_0 (~21 MiB): 13 MiB = 13631488 B
if [ $QUICK = 0 ]; then # to the end of 3.
run mix quantize "$M" "$TMP/mix.gguf" "${MIX[@]}" --target-size 13MiB --kld-table "$TMP/kld.tsv"
check "[ $rc -eq 0 ]" "--target-size exited $rc: $(tail -n 5 "$TMP/mix.err")"
check "[ -f '$TMP/mix.gguf' ] && [ \$(fsize '$TMP/mix.gguf') -le 13631488 ]" \
    "the file is over the 13 MiB budget: $(fsize "$TMP/mix.gguf" 2>/dev/null) bytes"
check "[ -f '$TMP/mix.gguf' ] && [ \$(fsize '$TMP/mix.gguf') -ge 13000000 ]" \
    "the file leaves much of the budget unused: $(fsize "$TMP/mix.gguf" 2>/dev/null) bytes"
check "grep -q '^measure: \[49/49\]' '$TMP/mix.err'" "no progress lines: $(head -c 400 "$TMP/mix.err")"
check "grep -Eq '^blk\.0\.ffn_down_exps +1 ' '$TMP/mix.out' && grep -q '^total' '$TMP/mix.out'" \
    "the chosen map is not printed: $(head -c 600 "$TMP/mix.out")"
check "grep -qa 'halo.quantize.type_map' '$TMP/mix.gguf' && grep -qaE 'blk\.0\.ffn_down_exps\.weight=q(4_K|8_0)' '$TMP/mix.gguf'" \
    "no halo.quantize.type_map in the metadata"
run mix_info info "$TMP/mix.gguf"
check "grep -Eq '^  q4_K ' '$TMP/mix_info.out' && grep -Eq '^  q8_0 ' '$TMP/mix_info.out'" \
    "not a mix of both types: $(grep -E '^  (q|f)' "$TMP/mix_info.out")"
check "[ \$(grep -c . '$TMP/kld.tsv') -eq 99 ]" "--kld-table: not 1 + 49 x 2 lines"

# 2. another budget from the saved measurements (no pass; the 16 of the 8 ffn_up_exps groups
# not needed), in bits per weight, with an override that stays as given
run bpw quantize "$M" "$TMP/bpw.gguf" "${MIX[@]}" --target-bpw 6 --kld-table "$TMP/kld.tsv" \
    --tensor-type 'ffn_up_exps=q5_K'

check "[ $rc -eq 0 ]" "--target-bpw exited $rc: $(tail -n 5 "$TMP/bpw.err")"
check "grep -q 'measure: 82 measurements reused' '$TMP/bpw.err' && ! grep -q 'measure: \[' '$TMP/bpw.err'" \
    "the measurements were not reused: $(head -c 400 "$TMP/bpw.err")"
run bpw_info info "$TMP/bpw.gguf"
b=$(sed -n 's/^weights .* \([0-9.]*\) bits per weight$/\1/p' "$TMP/bpw_info.out")
check "[ -n '$b' ] && awk -v b='$b' 'BEGIN { exit !(b <= 6.0 && b > 5.8) }'" \
    "--target-bpw 6 gave ${b:-?} bits per weight"

check "grep -qa 'blk.3.ffn_up_exps.weight=q5_K' '$TMP/bpw.gguf' && ! grep -q '_up_exps' '$TMP/bpw.out'" \
    "the override was not kept out of the search"

# 3. quality on held-out text (the first 11 windows of 256 tokens of test.txt): the 13 MiB
# mix measured 0.0162 (7 Dec; the all-q4_K file, 11.7 MiB: 0.0299, Q4_K_M, 13.4 MiB: ~0.02),
# bound at 0.020
run base perplexity -m "$M" -f "$TMP/text.txt" -c 256 -t 2 --kld-base "$TMP/base.kld"
run mixkld perplexity -m "$TMP/mix.gguf" --kld "$TMP/base.kld" -c 256 -t 2
km=$(sed -n 's/^Mean *KLD: *\([0-9.e+-]*\).*/\1/p' "$TMP/mixkld.out" | head -n1)
echo "KLD on 12 KB of test.txt: 13 MiB mix $km"
check "awk -v m='$km' 'BEGIN { exit !(m > 0 && m <= 0.020) }'" "KLD of the mix ${km:-?} (bound 0.020)"
fi # QUICK = 0

# 4. errors
expect_error 2 e_calib quantize "$M" "$TMP/e.gguf" --target-size 13MiB
expect_error 2 e_pure quantize "$M" "$TMP/e.gguf" q4_K --pure "${MIX[@]}" --target-size 13MiB
expect_error 2 e_size quantize "$M" "$TMP/e.gguf" "${MIX[@]}" --target-size lots
expect_error 2 e_types quantize "$M" "$TMP/e.gguf" "${MIX[@]}" --target-types q4_K,nope --target-size 13MiB
expect_error 2 e_nomix quantize "$M" "$TMP/e.gguf" Q4_K_M --calib "$TMP/calib.txt"
expect_error 1 e_small quantize "$M" "$TMP/e.gguf" "${MIX[@]}" --target-size 8MiB
check "grep -q 'below the smallest mix' '$TMP/e_small.err'" "budget too small: $(cat "$TMP/e_small.err")"
check "[ ! -e '$TMP/e.gguf' ]" "a failed run left an output file"

echo "$checks checks, $fail failed"
[ $fail -eq 0 ]
