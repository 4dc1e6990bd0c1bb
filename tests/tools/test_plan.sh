#!/usr/bin/env bash
# `halo plan`: the largest context for a budget, the trade-off table over KV
# cache types, the memory-bound and does-not-fit cases, --help and errors.
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
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
run() {
    local name=$1; shift
    echo "$HALO $*" > "$TMP/$name.cmd"
    "$HALO" "$@" > "$TMP/$name.out" 2> "$TMP/$name.err"
    rc=$?
}
expect_ok() {
    local name=$1; shift
    run "$name" "$@"
    checks=$((checks + 1))
    [ "$rc" -eq 0 ] || bad "halo $* exited $rc: $(cat "$TMP/$name.err")"
}
expect_lines() {
    local name=$1; shift
    for pat in "$@"; do
        checks=$((checks + 1))
        grep -qF -- "$pat" "$TMP/$name.out" || bad "'$pat' not in output of: $(cat "$TMP/$name.cmd")"
    done
}
expect_error() {
    local code=$1 name=$2; shift 2
    run "$name" "$@"
    checks=$((checks + 1))
    [ "$rc" -eq "$code" ] || bad "halo $* exited $rc, expected $code"
    [ "$(wc -l < "$TMP/$name.err")" -eq 1 ] || bad "halo $*: expected one line on stderr: $(cat "$TMP/$name.err")"
    grep -q '^error: ' "$TMP/$name.err" || bad "halo $*: stderr is not 'error: ...'"
}

K="$FIX/models/kdoc-moe-bf16.gguf"

# a big budget: capped at the trained context, every KV type listed
expect_ok big plan "$K" --mem 64GiB
expect_lines big "memory           64.0 GiB (--mem), 1 slot, K f16 / V f16" \
    "largest context  -c 32768 (the trained context; the memory would hold" \
    "KV cache 64.0 MiB" \
    "2.00 KiB per token (2 full-attention layers); recurrent state 1.57 MiB per slot (6 DeltaNet layers)" \
    "f32/f32           4.00 KiB          32768" \
    "f16/f16           2.00 KiB          32768" \
    "bf16/bf16         2.00 KiB          32768" \
    "q8_0/q8_0         1.06 KiB          32768" \
    "q4_0/q4_0            576 B          32768"

# slots multiply the cap (each slot is limited by the trained context)
expect_ok slots plan -m "$K" --mem 64 -np 2 -ctk q8_0 -ctv q8_0
expect_lines slots "2 slots, K q8_0 / V q8_0" "largest context  -c 65536 (the trained context x slots"

# a budget that binds: 100 MiB leaves room for fewer tokens than the trained context
expect_ok tight plan "$K" --mem 100MiB
expect_lines tight "(limited by memory)"
ctx=$(sed -n 's/^largest context  -c \([0-9]*\).*/\1/p' "$TMP/tight.out")
checks=$((checks + 1))
# (100 MiB - weights - state - compute) / 2 KiB per token, in 256-cell steps
[ -n "$ctx" ] && [ "$ctx" -gt 10000 ] && [ "$ctx" -lt 32768 ] && [ $((ctx % 256)) -eq 0 ] \
    || bad "tight budget: largest context '$ctx'"

# nothing fits
expect_ok none plan "$K" --mem 50MiB -c 4096
expect_lines none "largest context  none:" "at -c 4096" "does NOT fit"

# a dense model: no recurrent state
expect_ok llama plan "$FIX/models/tiny-llama-f16.gguf" --mem 1GiB
expect_lines llama "1.00 KiB per token (2 full-attention layers)" "largest context  -c 4096"
grep -q "DeltaNet" "$TMP/llama.out" && bad "tiny-llama plan mentions DeltaNet"

expect_ok c0 plan "$K" --mem 64GiB -c 0
expect_lines c0 "at -c 32768"

# this machine's memory when no --mem
expect_ok machine plan "$K"
expect_lines machine "(this machine)"

# the GPU's memory as the budget (-ngl / --vram)
expect_ok vram plan "$K" --vram 24GiB
expect_lines vram "24.0 GiB (--vram, GPU)" "largest context  -c 32768"
expect_ok vramngl plan "$K" -ngl 99 --vram 0.1
expect_lines vramngl "102 MiB (--vram, GPU)"
expect_error 2 vrammem plan "$K" -ngl 99 --mem 8GiB
# experts in host memory: out of the GPU's budget, so a longer context fits
expect_ok vramcpumoe plan "$K" -ngl 99 --vram 0.1 --n-cpu-moe 4
expect_lines vramcpumoe "experts on CPU   12.6 MB of 4 layers in host memory" "-c 25856"
# the same by -ot (the loader's rule: first match wins, a layer's three go together)
expect_ok ot plan "$K" -ngl 99 --vram 0.1 -ot 'blk\.[0-3]\.ffn_.*_exps\.=CPU'
expect_lines ot "experts on CPU   12.6 MB of 4 layers in host memory (-ot)" "-c 25856"
expect_ok otgate plan "$K" -ngl 99 --vram 0.1 -ot 'blk\.[0-3]\.ffn_gate_exps\.=CPU'
expect_lines otgate "experts on CPU   12.6 MB of 4 layers in host memory (-ot)"
expect_ok otgpu plan "$K" -ngl 99 --vram 0.1 -ot 'blk\.0\.=CUDA0' --n-cpu-moe 4
expect_lines otgpu "of 3 layers in host memory (-ot)"
expect_error 2 otattn plan "$K" -ngl 99 --vram 0.1 -ot 'attn_q=CPU'
expect_error 2 otdev plan "$K" -ngl 99 --vram 0.1 -ot 'exps=TPU0'

expect_error 2 badvram plan "$K" --vram lots

expect_ok help plan --help
expect_lines help "usage: halo plan" "--mem SIZE" "-np, --parallel" "-ctk, --cache-type-k"

expect_error 1 missing plan "$TMP/nope.gguf" --mem 64GiB
printf 'GGUF but not really' > "$TMP/bad.gguf"
expect_error 1 badfile plan "$TMP/bad.gguf" --mem 64GiB
expect_error 2 badmem plan "$K" --mem sixty
expect_error 2 badctk plan "$K" -ctk q4_K
expect_error 2 badnp plan "$K" -np -3
expect_error 2 unknown plan "$K" --frobnicate

echo "test_plan: $checks checks, $fail failed"
[ "$fail" -eq 0 ]
