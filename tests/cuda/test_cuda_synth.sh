# Every block format and every architecture on the GPU against the CPU engine:
# small models of the real structure written by `halo synth` (one type for every
# matrix), two token sequences through `halo logits` on the CPU and with -ngl 99,
# relative RMS difference of the logits. Both engines keep activations in f32
# and decode the same weights bit for bit, so what differs is summation order
# (~1e-6) unless a near-tie in expert routing flips (then a few 1e-3 at most on
# these random models). Skipped where no GPU is visible.
: "${HALO:?HALO must name the halo binary}"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
if ! command -v python3 >/dev/null; then
    echo "SKIPPED: python3 is needed to compare the logits"
    exit 77
fi
"$HALO" synth --preset llama-8b --layers 1 --vocab 512 --ff 256 --type f32 -o "$TMP/probe.gguf" \
    >/dev/null 2>&1
printf '1 2 3\n' > "$TMP/probe.txt"
if ! "$HALO" logits -m "$TMP/probe.gguf" -f "$TMP/probe.txt" -o "$TMP/probe.f32" -ngl 99 \
    > "$TMP/probe.out" 2>&1; then
    echo "SKIPPED: no GPU run possible: $(grep -m1 error "$TMP/probe.out")"
    exit 77
fi
python3 - "$TMP" <<'EOF' > "$TMP/tokens.txt"
import random, sys
random.seed(7)
for n in (37, 70):
    print(" ".join(str(random.randrange(4, 2000)) for _ in range(n)))
EOF
fail=0
checks=0
# every format on the main architecture; the others with a few (the products are
# the same kernels whatever the architecture)
all_types="f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_K q3_K q4_K q5_K q6_K iq4_nl iq4_xs mxfp4 Q4_K_M"
for preset in qwen35moe-35b-a3b qwen35-27b qwen3moe-30b-a3b qwen3-8b llama-8b; do
    experts=""
    case $preset in *moe*) experts="--experts 16" ;; esac
    types="f16 q4_K Q4_K_M"
    [ $preset = qwen35moe-35b-a3b ] && types=$all_types
    for t in $types; do
        m="$TMP/$preset-$t.gguf"
        if ! "$HALO" synth --preset "$preset" --layers 4 --vocab 2048 $experts --ff 512 \
            --ctx 4096 --type "$t" -o "$m" > "$TMP/synth.out" 2>&1; then
            echo "FAIL: synth $preset $t: $(tail -n1 "$TMP/synth.out")"
            fail=$((fail + 1))
            continue
        fi
        kvs="f16"
        [ $t = q4_K ] && kvs="f16 q8_0 q4_0 iq4_nl"
        for kv in $kvs; do
            checks=$((checks + 1))
            "$HALO" logits -m "$m" -f "$TMP/tokens.txt" -o "$TMP/cpu.f32" -ctk $kv -ctv $kv \
                > /dev/null 2> "$TMP/cpu.err" &&
            "$HALO" logits -m "$m" -f "$TMP/tokens.txt" -o "$TMP/gpu.f32" -ctk $kv -ctv $kv \
                -ngl 99 > /dev/null 2> "$TMP/gpu.err" &&
            "$HALO" logits -m "$m" -f "$TMP/tokens.txt" -o "$TMP/gpu1.f32" -ctk $kv -ctv $kv \
                -ngl 99 --chunk 1 > /dev/null 2> "$TMP/gpu1.err"
            if [ $? -ne 0 ]; then
                echo "FAIL: $preset $t kv $kv: $(cat "$TMP/cpu.err" "$TMP/gpu.err" "$TMP/gpu1.err" | grep -i -m2 "error\|fail" | tr '\n' ' ')"
                fail=$((fail + 1))
                continue
            fi
            [ $kv = f16 ] && cp "$TMP/cpu.f32" "$TMP/cpu_f16.f32"
            if ! python3 - "$TMP" "$preset" "$t" "$kv" <<'EOF'; then fail=$((fail + 1)); fi
import sys, numpy as np
d, preset, t, kv = sys.argv[1:]
c = np.fromfile(d + "/cpu.f32", dtype=np.float32).astype(np.float64)
g = np.fromfile(d + "/gpu.f32", dtype=np.float32).astype(np.float64)
g1 = np.fromfile(d + "/gpu1.f32", dtype=np.float32).astype(np.float64)
rel = lambda a, b: float(np.sqrt(((a - b) ** 2).sum() / (b ** 2).sum()))
r, r1 = rel(g, c), rel(g1, c)
ok = c.size == g.size == g1.size and r < 5e-3 and r1 < 5e-3
extra = ""
if kv != "f16" and not ok and c.size == g.size == g1.size:
    # A quantized cache rounds each K/V value to its grid (q4_0: 1/8 of the block's
    # largest), so the GPU's products (int16 activations, ~3e-5 from the CPU's f32)
    # flip some roundings and the two engines' logits part by a fraction of the
    # cache's own error. What must hold: the GPU's cache is as accurate as the CPU's,
    # both measured against the CPU with the f16 cache (at most 25 % more error).
    f = np.fromfile(d + "/cpu_f16.f32", dtype=np.float32).astype(np.float64)
    ec, eg, eg1 = rel(c, f), rel(g, f), rel(g1, f)
    ok = eg <= 1.25 * ec and eg1 <= 1.25 * ec
    extra = f"  vs the f16 cache: CPU {ec:.2e}, GPU {eg:.2e}, one token at a time {eg1:.2e}"
print(f"{'ok  ' if ok else 'FAIL'} {preset:18s} {t:7s} kv {kv:5s} GPU vs CPU {r:.2e}  one token at a time {r1:.2e}{extra}")
sys.exit(0 if ok else 1)
EOF
        done
        rm -f "$m"
    done
done
echo "cuda/synth: $checks checks, $fail failed"
[ $fail -eq 0 ]
