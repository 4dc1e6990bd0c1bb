#!/usr/bin/env bash
# `halo serve` through the official `openai` npm client (installed into the build
# folder on first use): plain and streamed chat, a tool call round trip, embeddings, errors.
source "$(dirname "$0")/lib.sh"
NODE_DIR="${HALO_BUILD_DIR:-$TMP}/node"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "SKIPPED: node and npm are needed for the openai client test"; exit 77
fi
if [ ! -f "$NODE_DIR/node_modules/openai/package.json" ]; then
    if ! npm install --prefix "$NODE_DIR" openai --no-audit --no-fund >"$TMP/npm.log" 2>&1; then
        echo "SKIPPED: 'npm install openai' failed (no registry?):"; tail -5 "$TMP/npm.log"; exit 77
    fi
fi
start_server -np 2 -c 2048 -t 1 --api-key sekrit --log-disable --embeddings --pooling mean
checks=$((checks + 1))
HALO_URL="$URL" OPENAI_MODULE="$NODE_DIR/node_modules/openai" HALO_EMBEDDINGS=1 \
    node "$(dirname "$0")/openai_client.cjs" || bad "the openai client test"
stop_server
finish
