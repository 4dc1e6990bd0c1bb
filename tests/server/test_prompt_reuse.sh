#!/usr/bin/env bash
# Prompt reuse on the shipped hybrid model (kdoc-moe: DeltaNet + attention, so a prompt can
# restart only where a recurrent-state checkpoint was saved): the conversations that clients
# send (a system prompt shared by two conversations on two slots, an appended turn, an edited
# early message, a new conversation, a tool-calling turn re-rendered without its reasoning),
# at ~2 K and ~16 K tokens of prompt. Each reuses the cache to within 64 tokens of where it
# diverges from what the cache holds (the checkpoints at the start of every message), and
# replies at temperature 0 exactly as a server reading the whole prompt does. At ~2 K also a
# conversation that returns after two others took both slots: its KV comes back from host
# memory (the copy its slot saved when it gave it up).
# tests/server/prompt_reuse.cjs plays the cases; HALO_TEST_QUICK: ~2 K only.
source "$(dirname "$0")/lib.sh"
if ! command -v node >/dev/null; then echo "SKIPPED: node is needed to play the conversations"; exit 77; fi
KDOC="${HALO_SOURCE_DIR:-$(dirname "$0")/../..}/models/kdoc-moe-bf16.gguf"
[ -f "$KDOC" ] || { echo "SKIPPED: $KDOC not found"; exit 77; }
MODEL=$KDOC

SIZES="2048 16384"
if [ -n "${HALO_TEST_QUICK:-}" ] && [ -z "${HALO_REUSE_QUICK_SIZE:-}" ]; then
    # the sanitizer stage: ~30x slower generation made this 217 s at 512 tokens there (989 s
    # at 2 K); test_cache runs the checkpoint paths under the sanitizers, the release stage
    # this test (HALO_REUSE_QUICK_SIZE=512 runs it here at that length)
    echo "SKIPPED: under HALO_TEST_QUICK (the sanitizer stage); the release stage runs it"; exit 77
fi
[ -n "${HALO_TEST_QUICK:-}" ] && SIZES="$HALO_REUSE_QUICK_SIZE"
FRESH_PID=""
trap 'if [ -n "$FRESH_PID" ]; then kill -KILL "$FRESH_PID" 2>/dev/null; fi; cleanup' EXIT
for size in $SIZES; do
    # the server that answers from scratch (every request with cache_prompt false)
    start_server -np 1 -c $((size + 4096)) -t 2 --log-disable
    FRESH_PID=$PID FRESH_URL=$URL
    cp "$TMP/server.log" "$TMP/fresh.log"
    # the server under test: two slots, each holding a whole conversation
    start_server -np 2 -c $((2 * size + 8192)) -t 2 --log-disable
    checks=$((checks + 1))
    # at 2 K also a conversation that comes back after two others took both slots (host memory)
    node "$(dirname "$0")/prompt_reuse.cjs" "$URL" "$FRESH_URL" "$size" \
        "$([ "$size" = 2048 ] || [ -n "${HALO_TEST_QUICK:-}" ] && echo returning)" | tee "$TMP/out" | grep -v '^{'
    [ "${PIPESTATUS[0]}" = 0 ] || bad "prompt reuse at $size tokens"
    http GET /metrics
    n=$(sed -n 's/^halo_prompt_cache_checkpoints \([0-9]*\)/\1/p' "$TMP/body")
    bytes=$(sed -n 's/^halo_prompt_cache_checkpoints_bytes \([0-9]*\)/\1/p' "$TMP/body")
    check "metrics: $n checkpoints of $bytes bytes" [ "${n:-0}" -gt 0 -a "${bytes:-0}" -gt 0 ]
    http GET /slots
    check "/slots: checkpoint_bytes per slot" has '"checkpoint_bytes":'
    stop_server
    PID=$FRESH_PID; FRESH_PID=""; stop_server
done
finish
