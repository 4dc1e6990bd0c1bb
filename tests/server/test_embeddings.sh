#!/usr/bin/env bash
# POST /v1/embeddings and llama-server's /embedding (halo serve --embeddings): 501 without
# the flag; a decoder LLM's pooling none (400 on /v1/embeddings, every token's vector on
# /embedding); float and base64 encodings, several inputs, token ids, the refusals; a
# request next to a running generation; then halo's vectors against the peer's recorded
# ones (data/embeddings_ref.json, made by data/embeddings_ref.py) on five architectures.
source "$(dirname "$0")/lib.sh"
HERE="$(cd "$(dirname "$0")" && pwd)"
PY=$(command -v python3 || true)

# without --embeddings: 501, as llama-server answers
start_server -c 512 -t 1 --log-disable
http POST /v1/embeddings '{"input":"hello"}'; expect 501 'Start it with `--embeddings`' '"not_supported_error"'
http POST /embedding '{"content":"hello"}'; expect 501 '--embeddings'
stop_server

# a decoder LLM has no pooling metadata: pooling none, as llama-server
start_server -c 512 -t 1 --embeddings --log-disable
http POST /v1/embeddings '{"input":"hello world"}'; expect 400 "Pooling type 'none' is not OAI compatible"
http POST /tokenize '{"content":"hello world","add_special":true}'; expect 200
n_tok=$(sed 's/.*"tokens":\[\([^]]*\)\].*/\1/' "$TMP/body" | tr ',' '\n' | grep -c .)
http POST /embedding '{"content":"hello world"}'; expect 200 '[{"index":0,"embedding":[['
n_vec=$(grep -o '\],\[' "$TMP/body" | wc -l)
check "/embedding with pooling none: one vector per token ($n_tok)" [ $((n_vec + 1)) = "$n_tok" ]
http POST /v1/completions '{"prompt":"hello","max_tokens":2}'; expect 200 '"text_completion"'
stop_server

start_server -np 2 -c 256 -b 64 -ub 16 -t 1 --embeddings --pooling mean --log-disable
http POST /v1/embeddings '{"input":"The page cache","model":"whatever"}'
expect 200 '"object":"list"' '"object":"embedding"' '"index":0' '"embedding":[' \
    '"usage":{"prompt_tokens":' '"model":"tiny-qwen3-f16.gguf"'
cp "$TMP/body" "$TMP/float.json"
http POST /v1/embeddings '{"input":"The page cache","encoding_format":"base64"}'
expect 200 '"embedding":"'
b64=$(sed 's/.*"embedding":"\([^"]*\)".*/\1/' "$TMP/body")
check "base64 of 256 float32 values is 1368 characters (${#b64})" [ "${#b64}" = 1368 ]
cp "$TMP/body" "$TMP/b64.json"
if [ -n "$PY" ]; then
    check "base64 decodes to the float reply's values, of unit length" "$PY" -c '
import base64, json, struct, sys, math
f = json.load(open(sys.argv[1]))["data"][0]["embedding"]
b = base64.b64decode(json.load(open(sys.argv[2]))["data"][0]["embedding"])
v = struct.unpack("<256f", b)
assert all(struct.unpack("<f", struct.pack("<f", x))[0] == y for x, y in zip(f, v)), "differ"
assert abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-5' "$TMP/float.json" "$TMP/b64.json"
fi
http POST /v1/embeddings '{"input":["a","The page cache","c"]}'
expect 200 '"index":0' '"index":1' '"index":2'
http POST /v1/embeddings '{"input":[11,268,82,317]}'
expect 200 '"index":0' '"prompt_tokens":4'
http POST /v1/embeddings '{"input":[[11,268],[82,317,5]],"dimensions":256}'
expect 200 '"index":1' '"prompt_tokens":5'
http POST /v1/embeddings '{"input":"x","embd_normalize":-1}'; expect 200
http POST /embedding '{"content":["a","b"]}'; expect 200 '{"index":1,"embedding":[['
http POST /v1/embeddings '{"content":"a"}'; expect 200 '[{"index":0,"embedding":[['
# refusals
http POST /v1/embeddings '{"input":""}'; expect 400 'input 0 is empty'
http POST /v1/embeddings '{"input":["a",""]}'; expect 400 'input 1 is empty'
http POST /v1/embeddings '{"input":[]}'; expect 400 '"param":"input"'
http POST /v1/embeddings '{"input":[[]]}'; expect 400 'input 0 is empty'
http POST /v1/embeddings '{}'; expect 400 "'input' is required"
http POST /v1/embeddings '{"input":5}'; expect 400 '"param":"input"'
http POST /v1/embeddings '{"input":["a",3]}'; expect 400 'not a mix'
http POST /v1/embeddings '{"input":[1.5]}'; expect 400 'token ids'
http POST /v1/embeddings '{"input":[-1]}'; expect 400 'token ids'
http POST /v1/embeddings '{"input":[99999]}'; expect 400 'token ids'
http POST /v1/embeddings '{"input":[[1],["a"]]}'; expect 400 'token ids'
http POST /v1/embeddings '{"input":"a","dimensions":3}'; expect 400 '"param":"dimensions"' '256 dimensions'
http POST /v1/embeddings '{"input":"a","dimensions":"3"}'; expect 400 '"param":"dimensions"'
http POST /v1/embeddings '{"input":"a","encoding_format":"xx"}'; expect 400 '"param":"encoding_format"'
http POST /v1/embeddings '{"input":"a","model":5}'; expect 400 '"param":"model"'
http POST /v1/embeddings '{"input":"a","embd_normalize":"x"}'; expect 400 '"param":"embd_normalize"'
http POST /v1/embeddings '{"input":"a","stream":true}'; expect 400 '"param":"stream"'
http POST /v1/embeddings 'not json'; expect 400 'JSON object'
http POST /v1/embeddings '[1]'; expect 400 'JSON object'
long=$(printf 'page %.0s' $(seq 1 200))
http POST /v1/embeddings "{\"input\":[\"a\",\"$long\"]}"; expect 400 'input 1 has' 'more than the 128'
http GET /v1/embeddings; expect 405
# an embedding while a generation runs in the other slot: both answer, the generation
# is unaffected (greedy, the same text as alone)
http POST /v1/completions '{"prompt":"The page","max_tokens":24,"temperature":0,"ignore_eos":true}'
expect 200 '"text_completion"'
alone=$(sed 's/.*"text":"\([^"]*\)".*/\1/' "$TMP/body")
curl -s "$URL/v1/completions" -H 'Content-Type: application/json' \
    -d '{"prompt":"The page","max_tokens":24,"temperature":0,"ignore_eos":true}' >"$TMP/gen.json" &
gen=$!
for i in 1 2 3; do
    http POST /v1/embeddings "{\"input\":[\"$long\",\"b $i\"]}"
    [ "$CODE" = 400 ] || bad "long input: $CODE"
    http POST /v1/embeddings "{\"input\":[\"the page cache $i\",\"b $i\"]}"; expect 200 '"index":1'
done
wait $gen
together=$(sed 's/.*"text":"\([^"]*\)".*/\1/' "$TMP/gen.json")
check "a generation next to embeddings gives its text as alone" [ "$together" = "$alone" ]
stop_server

# halo against the peer's recorded vectors. The bounds come from the measured differences
# (peer 9749, CPU: cosine >= 0.9999980, max |diff| 3.5e-4 on the pooled unit vectors of
# five architectures; 3.6e-3 on pooling none's unnormalized per-token vectors, values up
# to 3.8): a few times those, no more.
if [ -z "$PY" ]; then
    echo "note: python3 not found: the comparison with the peer's vectors is skipped"
else
    REF="$HERE/data/embeddings_ref.json"
    n_cases=$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["cases"]))' "$REF")
    for i in $(seq 0 $((n_cases - 1))); do
        read -r m p < <("$PY" -c 'import json,sys; c=json.load(open(sys.argv[1]))["cases"][int(sys.argv[2])]; print(c["model"], c["pooling"])' "$REF" "$i")
        MODEL="$FIX/models/$m"
        if [ ! -f "$MODEL" ]; then echo "note: $m absent: case $i skipped"; continue; fi
        start_server -np 2 -c 1024 -b 64 -ub 16 -t 1 --embeddings --pooling "$p" --log-disable
        if [ "$p" = none ]; then min_cos=0.99999; max_abs=1e-2; else min_cos=0.99999; max_abs=1e-3; fi
        check "case $i ($m, pooling $p) against the peer" \
            "$PY" "$HERE/embeddings_compare.py" "$REF" "$i" "$URL" "$min_cos" "$max_abs"
        stop_server
    done
fi
finish
