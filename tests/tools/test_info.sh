#!/usr/bin/env bash
# `halo info` on every fixture model in the three load modes (mmap, --no-mmap,
# --mlock): exit 0 and the expected lines; --help; and the failures users meet —
# a missing file, a truncated copy, a file that is not GGUF (exit 1, one error
# line), bad flags (exit 2, one error line).
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

# expect_out CODE FILE-TEXT PATTERN...: each pattern (fixed string) is in the output
expect_lines() {
    local out=$1; shift
    for pat in "$@"; do
        checks=$((checks + 1))
        grep -qF -- "$pat" "$out" || bad "'$pat' not in output of: $(head -c 300 "$out.cmd")"
    done
}

run() { # run NAME ARGS...: stdout to $TMP/NAME.out, stderr to .err, code in $rc
    local name=$1; shift
    echo "$HALO $*" > "$TMP/$name.out.cmd"
    "$HALO" "$@" > "$TMP/$name.out" 2> "$TMP/$name.err"
    rc=$?
}

# a failure: exit code CODE and exactly one line on stderr, starting with "error:"
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

# ---- every fixture model, every load mode ------------------------------------
n=0
for f in "$FIX"/models/*.gguf; do
    [ -e "$f" ] || continue
    n=$((n + 1))
    for mode in "" --no-mmap --mlock; do
        run "m$n$mode" info "$f" $mode
        checks=$((checks + 1))
        if [ "$rc" -ne 0 ]; then
            bad "halo info $f $mode exited $rc: $(cat "$TMP/m$n$mode.err")"
            continue
        fi
        expect_lines "$TMP/m$n$mode.out" "model         $f" "architecture  " "file          " \
            "chat template " "tokenizer     " "memory plan   4096 tokens over 1 slot" \
            "  KV cache" "  total" "largest context"
        case "$mode" in
        --no-mmap) expect_lines "$TMP/m$n$mode.out" "load          read (--no-mmap)" ;;
        --mlock) expect_lines "$TMP/m$n$mode.out" "load          mmap + mlock" ;;
        *) expect_lines "$TMP/m$n$mode.out" "load          mmap," ;;
        esac
    done
done
[ "$n" -ge 5 ] || bad "only $n fixture models found in $FIX/models"

# ---- what each model should say -----------------------------------------------
K="$FIX/models/kdoc-moe-bf16.gguf"
run kdoc info "$K"
expect_lines "$TMP/kdoc.out" \
    "architecture  qwen35moe: 8 layers (6 Gated DeltaNet + 2 gated full attention, every 4th)," \
    "hidden 256, vocab 8192" \
    "attention 2 query / 1 KV heads of dim 256" \
    "DeltaNet 2 key / 4 value heads of dim 128 (conv 4)" \
    "8 experts (2 routed per token) of width 256 + 1 shared expert of width 256" \
    "RoPE on 64 of 256 dims (base 1e+07, sections 11/11/10/0)" \
    "trained context 32768" \
    "layer map     DDDA DDDA" \
    "parameters    20.5 M total, 11.1 M active per token (2 of 8 experts)" \
    "file          41.4 MB, GGUF v3, 1 part, 148 tensors, 36 metadata keys" \
    "16.04 bits per weight" \
    "  bf16        87 tensors" \
    "tokenizer     gpt2 (pre-tokenizer qwen2), 8192 tokens, 7929 merges" \
    "chat template yes" \
    "2.00 KiB per token: 2 attention layers x 1 KV head x 256 dims, K+V" \
    "  KV cache               8.00 MiB" \
    "per slot: 6 DeltaNet layers, conv 72.0 KiB + state 1.50 MiB"

run llama info "$FIX/models/tiny-llama-f16.gguf"
expect_lines "$TMP/llama.out" "architecture  llama: 2 layers, hidden 256, vocab 1024, attention 4 query / 2 KV heads of dim 64," \
    "FFN 512, RoPE (base 10000), RMS eps 1e-06, trained context 4096" \
    "parameters    1.71 M" "  KV cache               4.00 MiB   1.00 KiB per token"
grep -q "recurrent state" "$TMP/llama.out" && bad "tiny-llama has no recurrent state"

run vocab info "$FIX/models/qwen3-vocab.gguf"
expect_lines "$TMP/vocab.out" "parameters    none (vocabulary only)" "151936 tokens"

# the flags llama.cpp users type, both spellings
run flags info -m "$K" -c 32k -np 2 -ctk q8_0 -ctv q4_0 --mem 8GiB
checks=$((checks + 1)); [ "$rc" -eq 0 ] || bad "flags: exit $rc $(cat "$TMP/flags.err")"
expect_lines "$TMP/flags.out" "memory plan   32768 tokens over 2 slots (16384 each), K q8_0 / V q4_0" \
    "memory                 8.00 GiB   --mem: fits"
run flags2 info --model "$K" --ctx-size 1024 --parallel 1 --cache-type-k f32 --cache-type-v bf16 --no-mmap
checks=$((checks + 1)); [ "$rc" -eq 0 ] || bad "long flags: exit $rc $(cat "$TMP/flags2.err")"
expect_lines "$TMP/flags2.out" "K f32 / V bf16" "read (--no-mmap)"
# -c 0: the trained context, as llama.cpp reads it
run c0 info "$K" -c 0
expect_lines "$TMP/c0.out" "memory plan   32768 tokens over 1 slot"

# every quantized fixture (one block type each) describes its weights
for f in "$FIX"/quant/*.gguf; do
    [ -e "$f" ] || continue
    run q info "$f"
    checks=$((checks + 1))
    [ "$rc" -eq 0 ] || bad "halo info $f exited $rc: $(cat "$TMP/q.err")"
    expect_lines "$TMP/q.out" "bits per weight" "memory plan"
done

run tight info "$K" --mem 50MiB
expect_lines "$TMP/tight.out" "does NOT fit"

run json info "$K" --json
checks=$((checks + 1)); [ "$rc" -eq 0 ] || bad "--json exit $rc"
if command -v python3 > /dev/null; then
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["architecture"]=="qwen35moe" and d["layer_kinds"]=="DDDADDDA" and d["plan"]["kv_bytes_per_token"]==2048, d' "$TMP/json.out" \
        || bad "--json output is not the expected JSON"
fi

# no model argument: the repository's default model
run default info
checks=$((checks + 1)); [ "$rc" -eq 0 ] || bad "halo info with no model exited $rc: $(cat "$TMP/default.err")"

run help info --help
checks=$((checks + 1)); [ "$rc" -eq 0 ] && grep -q "usage: halo info" "$TMP/help.out" || bad "--help"
expect_lines "$TMP/help.out" "-c, --ctx-size" "-np, --parallel" "-ctk, --cache-type-k" "-ctv, --cache-type-v" "--no-mmap" "--mlock" "--mem"

# ---- failures --------------------------------------------------------------------
expect_error 1 missing info "$TMP/no-such-model.gguf"
head -c 100000 "$K" > "$TMP/truncated.gguf"
expect_error 1 truncated info "$TMP/truncated.gguf"
head -c 20 "$K" > "$TMP/header-only.gguf"
expect_error 1 header info "$TMP/header-only.gguf"
printf 'this is not a model\n%.0s' $(seq 100) > "$TMP/text.gguf"
expect_error 1 notgguf info "$TMP/text.gguf"
: > "$TMP/empty.gguf"
expect_error 1 empty info "$TMP/empty.gguf"

expect_error 2 badc info "$K" -c abc
expect_error 2 negc info "$K" -c -5
expect_error 2 hugec info "$K" -c 99999999999
expect_error 2 nocval info "$K" -c
expect_error 2 badnp info "$K" -np 0
expect_error 2 badctk info "$K" -ctk q5_k
expect_error 2 badctv info "$K" --cache-type-v nonsense
expect_error 2 badmem info "$K" --mem lots
expect_error 2 zeromem info "$K" --mem 0
expect_error 2 unknown info "$K" --bogus
expect_error 2 twomodels info "$K" "$K"
expect_error 2 ctxslots info "$K" -c 2 -np 4

echo "test_info: $checks checks, $fail failed"
[ "$fail" -eq 0 ]
