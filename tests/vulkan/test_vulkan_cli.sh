#!/usr/bin/env bash
# The Vulkan backend from the command line (-ngl 99 -dev Vulkan<i>): --list-devices lists
# the device (the test skips, exit 77, where there is none); halo run's greedy text on
# kdoc-moe equals the CPU's (weights used in place and copied, mapped and --no-mmap),
# halo logits' on tiny-llama is within 1e-3 of it; halo bench says Vulkan in its backend column;
# HALO_VK_PROFILE=1 prints the time per shader (the same text); halo plan
# budgets the device's memory; a q8_0 KV cache gives the CPU's greedy text; routed experts
# kept in host memory (--n-cpu-moe, -ot ...=CPU) give the CPU's greedy text too, bench
# names them, plan leaves them out of the device's budget; what the backend cannot do
# (a partial -ngl, a device that does not exist) ends with an "error:" line and a
# non-zero exit, never a crash.
set -u
source "$(dirname "${BASH_SOURCE[0]}")/../tools/lib_kdoc.sh"
P="The device driver model"

run list run --list-devices
check "[ $rc -eq 0 ] && head -1 '$TMP/list.out' | grep -q '^Available devices:$'" \
    "--list-devices exited $rc: $(head -c 300 "$TMP/list.out" "$TMP/list.err")"
DEV=$(grep -E '^  Vulkan[0-9]+: ' "$TMP/list.out" | grep -v 'not usable' | head -1 |
    sed -E 's/^  (Vulkan[0-9]+):.*/\1/')
if [ -z "$DEV" ]; then
    echo "SKIPPED: no usable Vulkan device (halo run --list-devices: $(tr '\n' ' ' < "$TMP/list.out"))"
    exit 77
fi
check "grep -qE '^  $DEV: .+ \([0-9]+ MiB, (discrete|integrated|virtual|cpu|other)' '$TMP/list.out'" \
    "--list-devices: $DEV's line lacks its memory and type: $(cat "$TMP/list.out")"
G=(-ngl 99 -dev "$DEV")

run cpu run -m "$M" -p "$P" -n 8 --temp 0 -t 2
check "[ $rc -eq 0 ]" "the CPU's run exited $rc: $(tail -3 "$TMP/cpu.err")"
run vk run -m "$M" -p "$P" -n 8 --temp 0 -t 2 "${G[@]}"
check "[ $rc -eq 0 ]" "run ${G[*]} exited $rc: $(tail -3 "$TMP/vk.err")"
check "cmp -s '$TMP/cpu.out' '$TMP/vk.out'" \
    "run ${G[*]}: '$(cat "$TMP/vk.out")', the CPU: '$(cat "$TMP/cpu.out")'"
check "grep -q 'Vulkan' '$TMP/vk.err'" "run ${G[*]}: the log does not name the Vulkan device"

# weights used in place (a UMA device with VK_EXT_external_memory_host: lavapipe) or
# copied (HALO_VK_IMPORT=0), mapped or read (--no-mmap): the same text, the log says which
if grep -q 'weights used in place' "$TMP/vk.err"; then
    IMPORT=1
    run vkread run -m "$M" -p "$P" -n 8 --temp 0 -t 2 "${G[@]}" --no-mmap
    check "[ $rc -eq 0 ] && cmp -s '$TMP/cpu.out' '$TMP/vkread.out' && grep -q 'weights used in place' '$TMP/vkread.err'" \
        "run ${G[*]} --no-mmap exited $rc: '$(cat "$TMP/vkread.out")' $(tail -3 "$TMP/vkread.err")"
    # the copies: not in the sanitizer stage (HALO_TEST_QUICK), where test_vulkan_import
    # covers them
    [ -n "${HALO_TEST_QUICK:-}" ] || for mode in "" --no-mmap; do
        HALO_VK_IMPORT=0 run vkcopy run -m "$M" -p "$P" -n 8 --temp 0 -t 2 "${G[@]}" $mode
        check "[ $rc -eq 0 ] && cmp -s '$TMP/cpu.out' '$TMP/vkcopy.out' && grep -q 'copied into device memory, not used in place: HALO_VK_IMPORT=0' '$TMP/vkcopy.err'" \
            "HALO_VK_IMPORT=0 run ${G[*]} $mode exited $rc: '$(cat "$TMP/vkcopy.out")' $(tail -3 "$TMP/vkcopy.err")"
    done
else
    IMPORT=0
    check "grep -q 'copied into device memory' '$TMP/vk.err'" \
        "run ${G[*]}: the log says neither imported nor copied: $(cat "$TMP/vk.err")"
fi

# halo logits on tiny-llama: every position's logits within 1e-3 of the CPU's (the
# backends differ by f32 rounding: 1.2e-4 at most here, on logits up to 3.1)
if command -v python3 > /dev/null; then
    echo "1 15 200 31 7 99 5" > "$TMP/tokens.txt"
    L=(logits -m "$FIX/models/tiny-llama-f16.gguf" -f "$TMP/tokens.txt")
    run lcpu "${L[@]}" -o "$TMP/cpu.f32"
    run lvk "${L[@]}" -o "$TMP/vk.f32" "${G[@]}"
    check "[ $rc -eq 0 ] && python3 - '$TMP/cpu.f32' '$TMP/vk.f32' <<'PY'
import array, sys
a, b = (array.array('f', open(f, 'rb').read()) for f in sys.argv[1:3])
assert len(a) == len(b) > 0, (len(a), len(b))
assert max(abs(x - y) for x, y in zip(a, b)) < 1e-3
PY" "logits ${G[*]}: not the CPU's logits (exit $rc: $(tail -2 "$TMP/lvk.err"))"
fi

run bench bench -m "$M" "${G[@]}" -p 8 -n 4 -r 1
check "[ $rc -eq 0 ]" "bench ${G[*]} exited $rc: $(tail -3 "$TMP/bench.err")"
check "grep -qE '^\| model +\| +size \| +params \| backend +\| ngl \| +test \| +t/s \|$' '$TMP/bench.out'" \
    "bench ${G[*]}: header $(head -1 "$TMP/bench.out")"
check "[ \$(grep -cE '\| Vulkan +\| +99 \| +(pp8|tg4) \|' '$TMP/bench.out') -eq 2 ]" \
    "bench ${G[*]}: no Vulkan rows: $(cat "$TMP/bench.out")"

# HALO_VK_PROFILE=1: the GPU's own time per shader, a table on stderr at the end (the same
# text: the profile only adds barriers and timestamps)
# (not in the sanitizer stage, HALO_TEST_QUICK: the same launches as the run above)
[ -n "${HALO_TEST_QUICK:-}" ] || HALO_VK_PROFILE=1 run prof run -m "$M" -p "$P" -n 8 --temp 0 -t 2 "${G[@]}"
if [ -n "${HALO_TEST_QUICK:-}" ]; then
    :
elif grep -q 'has no timestamps' "$TMP/prof.err"; then
    echo "note: $DEV has no timestamps: the profile is off"
else
    check "[ $rc -eq 0 ] && cmp -s '$TMP/cpu.out' '$TMP/prof.out'" \
        "HALO_VK_PROFILE=1 run ${G[*]} exited $rc: '$(cat "$TMP/prof.out")' $(tail -3 "$TMP/prof.err")"
    check "grep -q '^Vulkan profile (HALO_VK_PROFILE), .*: [0-9.]* ms of commands' '$TMP/prof.err' && grep -qE '^\| mul_mv_float bf16 +\| +[0-9]+ \|' '$TMP/prof.err'" \
        "HALO_VK_PROFILE=1 run ${G[*]}: no table: $(tail -8 "$TMP/prof.err")"
fi

run plan plan -m "$M" "${G[@]}"
check "[ $rc -eq 0 ] && grep -q '$DEV: ' '$TMP/plan.out'" \
    "plan ${G[*]}: the budget is not $DEV's: $(head -5 "$TMP/plan.out") $(tail -2 "$TMP/plan.err")"
if [ "$IMPORT" = 1 ]; then
    check "grep -q '^weights  *shared, counted once' '$TMP/plan.out'" \
        "plan ${G[*]}: does not say the weights are shared: $(head -3 "$TMP/plan.out")"
fi

# -dev without -ngl: the CPU, as with CUDA, and a note says so
run devonly run -m "$M" -p "$P" -n 8 --temp 0 -t 2 -dev "$DEV"
check "[ $rc -eq 0 ] && cmp -s '$TMP/cpu.out' '$TMP/devonly.out'" "-dev $DEV alone exited $rc"
check "grep -q 'the model runs on the CPU' '$TMP/devonly.err'" "-dev $DEV alone: no note: $(head -3 "$TMP/devonly.err")"

# a quantized KV cache (rotated, as on the CPU): the same greedy text as the CPU's with it
# (where the device has shaderFloat64; else refused with the reason)
run q8cpu run -m "$M" -p "$P" -n 8 --temp 0 -t 2 -ctk q8_0 -ctv q8_0
run q8 run -m "$M" -p "$P" -n 8 --temp 0 -t 2 "${G[@]}" -ctk q8_0 -ctv q8_0
if grep -q 'shaderFloat64' "$TMP/q8.err"; then
    check "[ $rc -ne 0 ]" "-ctk q8_0 without shaderFloat64 exited 0"
else
    check "[ $rc -eq 0 ] && cmp -s '$TMP/q8cpu.out' '$TMP/q8.out'" \
        "-ctk q8_0 ${G[*]} exited $rc: '$(cat "$TMP/q8.out")', the CPU: '$(cat "$TMP/q8cpu.out")' $(tail -2 "$TMP/q8.err")"
fi

# routed experts kept in host memory, computed by the CPU (the first 3 layers' with
# --n-cpu-moe, every layer's with -ot): the CPU's greedy text; halo bench's n_cpu_moe
# column; halo plan leaves them out of the device's budget
run ncmoe run -m "$M" -p "$P" -n 8 --temp 0 -t 2 "${G[@]}" -ncmoe 3
check "[ $rc -eq 0 ] && cmp -s '$TMP/cpu.out' '$TMP/ncmoe.out'" \
    "-ncmoe 3 ${G[*]} exited $rc: '$(cat "$TMP/ncmoe.out")', the CPU: '$(cat "$TMP/cpu.out")' $(tail -2 "$TMP/ncmoe.err")"
check "grep -q 'routed experts of 3 of 8 layers stay in host memory' '$TMP/ncmoe.err'" \
    "-ncmoe 3 ${G[*]}: $(head -c 300 "$TMP/ncmoe.err")"
if [ -z "${HALO_TEST_QUICK:-}" ]; then # the sanitizer stage: -ncmoe's path is the same
    run ot run -m "$M" -p "$P" -n 8 --temp 0 -t 2 "${G[@]}" -ot '\.ffn_.*_exps\.=CPU'
    check "[ $rc -eq 0 ] && cmp -s '$TMP/cpu.out' '$TMP/ot.out'" \
        "-ot exps=CPU ${G[*]} exited $rc: '$(cat "$TMP/ot.out")', the CPU: '$(cat "$TMP/cpu.out")' $(tail -2 "$TMP/ot.err")"
fi
run bcm bench -m "$M" "${G[@]}" -p 8 -n 2 -r 1 --n-cpu-moe 99
check "[ $rc -eq 0 ] && [ \$(grep -cE '\| Vulkan +\| +99 \| +99 \| +(pp8|tg2) \|' '$TMP/bcm.out') -eq 2 ]" \
    "bench ${G[*]} --n-cpu-moe 99 exited $rc: $(cat "$TMP/bcm.out") $(tail -2 "$TMP/bcm.err")"
run pcm plan -m "$M" "${G[@]}" --n-cpu-moe 4
check "[ $rc -eq 0 ] && grep -q '^experts on CPU .* of 4 layers in host memory' '$TMP/pcm.out'" \
    "plan ${G[*]} --n-cpu-moe 4: $(head -3 "$TMP/pcm.out") $(tail -2 "$TMP/pcm.err")"
check "[ \"\$(grep -o 'weights [0-9.]* MiB' '$TMP/pcm.out')\" != \"\$(grep -o 'weights [0-9.]* MiB' '$TMP/plan.out')\" ]" \
    "plan ${G[*]} --n-cpu-moe 4: the experts are in the device's budget: $(grep needs "$TMP/pcm.out")"

# refused, with the reason
expect_error 1 partial run -m "$M" -p "$P" -n 2 -ngl 1 -dev "$DEV"
expect_error 1 nodev run -m "$M" -p "$P" -n 2 -ngl 99 -dev Vulkan99
check "grep -q 'Vulkan device 99' '$TMP/nodev.err'" "-dev Vulkan99: $(cat "$TMP/nodev.err")"
expect_error 2 badname run -m "$M" -p "$P" -n 2 -ngl 99 -dev Vulkan

echo "vulkan cli: $checks checks, $fail failed"
[ "$fail" -eq 0 ]
