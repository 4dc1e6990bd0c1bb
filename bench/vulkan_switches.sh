#!/usr/bin/env bash
# The Vulkan backend's speed switches against its defaults, on one model and device, with
# halo bench (so the rows are llama-bench's): recorded steps (HALO_VK_GRAPHS=0: every step
# recorded anew), barriers (HALO_VK_BARRIERS=all: after every command), split attention at
# depth (HALO_VK_ATTN_SPLIT=1: one workgroup a row), weights in place on a UMA device
# (HALO_VK_IMPORT=0: copied); then the GPU's time per shader of a short run
# (HALO_VK_PROFILE=1). Rounds alternate the variants so that a drifting machine shows as
# spread, not as a difference.
#
#   bench/vulkan_switches.sh MODEL.gguf [DEVICE (Vulkan0)] [ROUNDS (2)] [DEPTH (4096)]
#   HALO=build/halo bench/vulkan_switches.sh ...      # another binary
#   PP=64 TG=16 bench/vulkan_switches.sh ...          # shorter tests (a CPU driver)
set -u
M=${1:?usage: bench/vulkan_switches.sh MODEL.gguf [DEVICE] [ROUNDS] [DEPTH]}
DEV=${2:-Vulkan0}
ROUNDS=${3:-2}
DEPTH=${4:-4096}
PP=${PP:-512}
TG=${TG:-128}
HALO=${HALO:-$(dirname "$0")/../build/halo}
[ -x "$HALO" ] || { echo "error: no halo binary at $HALO (build first, or set HALO)" >&2; exit 2; }
[ -f "$M" ] || { echo "error: no model at $M" >&2; exit 2; }
B=("$HALO" bench -m "$M" -ngl 99 -dev "$DEV" -r 2)
variants=("" "HALO_VK_GRAPHS=0" "HALO_VK_BARRIERS=all" "HALO_VK_IMPORT=0")
echo "model $M on $DEV, $ROUNDS rounds"
for r in $(seq "$ROUNDS"); do
    for v in "${variants[@]}"; do
        env $v "${B[@]}" -p "$PP" -n "$TG" 2>/dev/null | grep '^| [a-z]' | grep -v '^| model' |
            sed "s/\$/ ${v:-defaults} (round $r)/"
    done
    for v in "" "HALO_VK_ATTN_SPLIT=1"; do
        env $v "${B[@]}" -p 0 -n "$TG" -d "$DEPTH" 2>/dev/null | grep '^| [a-z]' |
            grep -v '^| model' | sed "s/\$/ ${v:-defaults} (round $r)/"
    done
done
echo
echo "the GPU's time per shader (HALO_VK_PROFILE=1, pp64 + tg16):"
HALO_VK_PROFILE=1 "${B[@]}" -r 1 -p 64 -n 16 2>&1 >/dev/null | sed -n '/^Vulkan profile/,$p'
