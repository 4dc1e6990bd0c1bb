#!/usr/bin/env bash
# `halo serve` through the Vercel AI SDK (`ai` 6 with `@ai-sdk/openai-compatible` 2 for chat
# completions, `@ai-sdk/openai` 3 for the Responses API, and `zod` 4, installed into the build
# folder on first use): generateObject, streamText, a forced tool call, a tool loop. On the
# shipped model (kdoc-moe): the structured outputs come from constrained decoding.
source "$(dirname "$0")/lib.sh"
MODEL="${HALO_SOURCE_DIR:-$(dirname "$0")/../..}/models/kdoc-moe-bf16.gguf"
[ -f "$MODEL" ] || { echo "SKIPPED: $MODEL not found"; exit 77; }
if [ -n "${HALO_TEST_QUICK:-}" ]; then
    # the SDK's view of the same C paths that test_responses, test_structured and test_api
    # run under the sanitizers; there generation is ~30x slower (161 s of the suite)
    echo "SKIPPED: under HALO_TEST_QUICK (the sanitizer stage); the release stage runs it"; exit 77
fi
NODE_DIR="${HALO_BUILD_DIR:-$TMP}/node-ai-sdk"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "SKIPPED: node and npm are needed for the AI SDK test"; exit 77
fi
PKGS=(ai@6 @ai-sdk/openai-compatible@2 @ai-sdk/openai@3 zod@4)
missing=0
for p in ai @ai-sdk/openai-compatible @ai-sdk/openai zod; do
    [ -f "$NODE_DIR/node_modules/$p/package.json" ] || missing=1
done
if [ "$missing" = 1 ]; then
    if ! npm install --prefix "$NODE_DIR" "${PKGS[@]}" --no-audit --no-fund >"$TMP/npm.log" 2>&1; then
        echo "SKIPPED: 'npm install ${PKGS[*]}' failed (no registry?):"; tail -5 "$TMP/npm.log"; exit 77
    fi
fi
start_server -np 2 -c 4096 -t 1 --log-disable
checks=$((checks + 1))
HALO_URL="$URL" AI_SDK_MODULES="$NODE_DIR/node_modules" \
    node "$(dirname "$0")/ai_sdk.cjs" || bad "the AI SDK test"
stop_server
finish
