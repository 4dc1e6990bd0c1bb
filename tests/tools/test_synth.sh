#!/usr/bin/env bash
# `halo synth`: small versions (few layers, small vocabulary/experts/FFN) of every preset
# in several block types and mixes: exit 0, a GGUF file that `halo info` reads back with
# the expected structure; the same seed gives the same bytes whatever the thread count;
# the Q4_K_M mix at full scale picks llama-quantize's per-tensor types and the published
# file sizes; bad arguments exit 2 with one clear error line. Needs no fixtures.
set -u
: "${HALO:?HALO must name the halo binary}"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail=0
checks=0
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }

run() { # run NAME ARGS...: stdout to $TMP/NAME.out, stderr to .err, code in $rc
    local name=$1; shift
    "$HALO" "$@" > "$TMP/$name.out" 2> "$TMP/$name.err"
    rc=$?
}

# expect_in NAME PATTERN...: each fixed string is in NAME's stdout
expect_in() {
    local name=$1; shift
    for pat in "$@"; do
        checks=$((checks + 1))
        grep -qF -- "$pat" "$TMP/$name.out" || bad "'$pat' not in output of $name: $(head -c 400 "$TMP/$name.out")"
    done
}

# a usage error: exit CODE, exactly one line on stderr starting with "error:", no stdout
expect_error() {
    local code=$1 name=$2; shift 2
    run "$name" "$@"
    checks=$((checks + 1))
    [ "$rc" -eq "$code" ] || bad "halo $* exited $rc, expected $code"
    local n
    n=$(wc -l < "$TMP/$name.err")
    [ "$n" -eq 1 ] || bad "halo $* printed $n lines on stderr, expected 1: $(cat "$TMP/$name.err")"
    grep -q '^error: ' "$TMP/$name.err" || bad "halo $*: stderr is not 'error: ...'"
    [ -s "$TMP/$name.out" ] && bad "halo $*: printed on stdout despite failing"
    return 0
}

# synth NAME ARCH ARGS...: write $TMP/NAME.gguf, check it, and read it back with halo info
synth() {
    local name=$1 arch=$2; shift 2
    local f="$TMP/$name.gguf"
    run "$name" synth "$@" -o "$f"
    checks=$((checks + 1))
    if [ "$rc" -ne 0 ]; then
        bad "halo synth $* exited $rc: $(cat "$TMP/$name.err")"
        return
    fi
    checks=$((checks + 1))
    [ "$(head -c 4 "$f")" = "GGUF" ] || bad "$name: no GGUF magic"
    expect_in "$name" "wrote $f"
    run "$name.info" info "$f"
    checks=$((checks + 1))
    if [ "$rc" -ne 0 ]; then
        bad "halo info on $name exited $rc: $(cat "$TMP/$name.info.err")"
        return
    fi
    expect_in "$name.info" "architecture  $arch" "tokenizer     gpt2" "chat template yes"
}

# ---- help and list -------------------------------------------------------------
run help synth --help
checks=$((checks + 1))
[ "$rc" -eq 0 ] || bad "halo synth --help exited $rc"
expect_in help "--preset" "--type" "--layers" "--vocab" "--experts"
run list synth --list
checks=$((checks + 1))
[ "$rc" -eq 0 ] || bad "halo synth --list exited $rc"
expect_in list qwen35moe-35b-a3b qwen35moe-122b-a10b qwen35-27b qwen3moe-30b-a3b qwen3-8b \
    llama-8b "34.7 B" "8.03 B"

# ---- every preset, small, in several types ---------------------------------------
V="--vocab 1024"
synth q35moe qwen35moe --preset qwen35moe-35b-a3b --layers 4 $V --experts 4 --ff 256 --type Q4_K_M
expect_in q35moe.info "layer map     DDDA" "4 experts"
synth q35moe122 qwen35moe --preset qwen35moe-122b-a10b --layers 4 $V --experts 2 --ff 256 --type q8_0
synth q35dense qwen35 --preset qwen35-27b --layers 4 $V --ff 256 --type q4_0
synth q3moe qwen3moe --preset qwen3moe-30b-a3b --layers 2 $V --experts 4 --ff 64 --type Q4_K_S
synth q3moe_mx qwen3moe --preset qwen3moe-30b-a3b --layers 1 $V --experts 4 --ff 256 --type MXFP4_MOE
synth q3dense qwen3 --preset qwen3-8b --layers 1 $V --ff 256 --type q5_K
synth llama llama --preset llama-8b --layers 1 --vocab 768 --ff 256 --type f16
expect_in llama.info "vocab 768"
# (hidden 2048: the smallest attention; the IQ4 encoders search a grid and are slow)
# Under the sanitizers (HALO_TEST_QUICK=1, set by scripts/test.sh) three of them: the
# encoders themselves are covered there by tests/quant; this loop is about the files.
types="q4_0 q4_1 q5_0 q5_1 q2_K q3_K q6_K iq4_xs mxfp4 f32 Q3_K_M Q5_K_M"
[ "${HALO_TEST_QUICK:-0}" = 1 ] && types="q4_0 q2_K Q3_K_M"
for ty in $types; do
    synth "ty_$ty" qwen3moe --preset qwen3moe-30b-a3b --layers 1 --vocab 512 --experts 2 --ff 256 --type "$ty"
done

# ---- determinism: a pure function of the seed, not of the thread count ----------------
A=(synth --preset qwen3moe-30b-a3b --layers 1 --vocab 512 --experts 4 --ff 256 --type q4_K)
run det1 "${A[@]}" --seed 7 -t 1 -o "$TMP/det1.gguf"
run det2 "${A[@]}" --seed 7 -t 3 -o "$TMP/det2.gguf"
run det3 "${A[@]}" --seed 8 -o "$TMP/det3.gguf"
checks=$((checks + 2))
cmp -s "$TMP/det1.gguf" "$TMP/det2.gguf" || bad "same seed, different thread counts: files differ"
cmp -s "$TMP/det1.gguf" "$TMP/det3.gguf" && bad "different seeds gave identical files"

# ---- the Q4_K_M mix at full scale (dry run: nothing written) ------------------------------
run dry_llama synth --preset llama-8b --dry-run
# llama-quantize: output Q6_K; attn_v / ffn_down Q6_K where use_more_bits(layer, 32): layers
# 0-3, 28-31 and every third from 6; token embedding and the rest Q4_K. Public Q4_K_M: 4.92 GB.
expect_in dry_llama "292 tensors" "8.03 B params" "tensor data 4.91 GB" \
    "blk.0.attn_v.weight                q6_K" "blk.4.attn_v.weight                q4_K" \
    "blk.6.ffn_down.weight              q6_K" "blk.7.ffn_down.weight              q4_K" \
    "output.weight                      q6_K" "token_embd.weight                  q4_K" \
    "rope_freqs.weight                  f32"
run dry_q35 synth --preset qwen35moe-35b-a3b --dry-run
expect_in dry_q35 "733 tensors" "34.7 B params (3.45 B active)" \
    "blk.0.attn_qkv.weight              q6_K" "blk.5.attn_qkv.weight              q4_K" \
    "blk.0.ffn_down_exps.weight         q6_K" "blk.0.ffn_gate_inp.weight          f32" \
    "blk.0.ssm_conv1d.weight            f32" "blk.3.attn_q.weight                q4_K"
run dry_q3moe synth --preset qwen3moe-30b-a3b --dry-run
expect_in dry_q3moe "579 tensors" "tensor data 18.6 GB"
# a row length that Q4_K's 256-blocks do not divide falls back as llama-quantize does
run dry_fallback synth --preset qwen3-8b --layers 1 --ff 96 --vocab 512 --dry-run
expect_in dry_fallback "blk.0.ffn_down.weight              q8_0" "blk.0.ffn_up.weight                q4_K"

# ---- usage errors ----------------------------------------------------------------------
expect_error 2 e_nopreset synth
expect_error 2 e_preset synth --preset gpt-5
expect_error 2 e_type synth --preset llama-8b --type q4_K_X
expect_error 2 e_layers0 synth --preset llama-8b --layers 0
expect_error 2 e_layers3 synth --preset qwen35-27b --layers 3
expect_error 2 e_layersx synth --preset llama-8b --layers many
expect_error 2 e_experts synth --preset llama-8b --experts 4
expect_error 2 e_option synth --preset llama-8b --bogus
expect_error 2 e_vocab synth --preset qwen3-8b --layers 1 --ff 256 --vocab 100 -o "$TMP/v.gguf"
expect_error 1 e_path synth --preset qwen3-8b --layers 1 --ff 256 --vocab 512 -o "$TMP/no/such/dir/x.gguf"
checks=$((checks + 1))
[ -e "$TMP/v.gguf" ] && bad "a failed synth left its output file"

echo "$checks checks, $fail failed"
[ "$fail" -eq 0 ]
