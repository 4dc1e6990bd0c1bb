#!/usr/bin/env bash
# `halo serve` over raw HTTP (curl) with the tiny Qwen3 model: every endpoint,
# streaming, the prompt cache's cached_tokens, every error class (400 bad JSON /
# types / ranges / too-long prompt, 401 key, 404, 405, 413 body), a client that
# hangs up mid-stream, the queue bound (503), and a clean SIGTERM shutdown.
source "$(dirname "$0")/lib.sh"

# the command line: --help, usage errors (exit 2), a model that is not there (exit 1)
"$HALO" serve --help >"$TMP/help" 2>&1; check "serve --help exits 0" [ $? = 0 ]
check "--help lists --api-key" grep -q -- '--api-key' "$TMP/help"
"$HALO" serve --bogus >/dev/null 2>&1; check "an unknown flag exits 2" [ $? = 2 ]
"$HALO" serve --port 70000 >/dev/null 2>&1; check "a bad port exits 2" [ $? = 2 ]
"$HALO" serve --reasoning maybe >/dev/null 2>&1; check "a bad --reasoning exits 2" [ $? = 2 ]
"$HALO" serve -m "$TMP/none.gguf" --port 0 >"$TMP/err" 2>&1; check "a missing model exits 1" [ $? = 1 ]
check "one error line for a missing model" [ "$(grep -c '^error:' "$TMP/err")" = 1 ]
"$HALO" serve -m "$MODEL" --host nowhere --port 0 >"$TMP/err" 2>&1; check "a bad --host exits 1" [ $? = 1 ]
check "a bad --host is reported" grep -q 'not an IP address' "$TMP/err"

start_server -np 2 -c 2048 -t 1 --api-key sekrit --max-body 1 --log-disable
# a second server on the same port fails with exit 1 and a message
"$HALO" serve -m "$MODEL" --port "$PORT" >"$TMP/err" 2>&1; check "a port in use exits 1" [ $? = 1 ]
check "a port in use is reported" grep -q 'cannot listen' "$TMP/err"
A=(-H 'Authorization: Bearer sekrit')
USER_MSG='"messages":[{"role":"user","content":"Say hello"}]'

# health needs no key; everything else does
http GET /health; expect 200 '"status":"ok"'
http GET /v1/models; expect 401 '"type":"authentication_error"' '"error"'
http GET /v1/models "" -H 'Authorization: Bearer wrong'; expect 401
http GET /v1/models "" -H 'Authorization: Bearer sekrit-and-more'; expect 401
http GET /v1/models "" "${A[@]}"; expect 200 '"object":"list"' '"id":"tiny-qwen3-f16.gguf"'
http GET /v1/models/tiny-qwen3-f16.gguf "" "${A[@]}"; expect 200 '"object":"model"' '"id":"tiny-qwen3-f16.gguf"'
http GET /v1/models/gpt-4 "" "${A[@]}"; expect 404 "no model 'gpt-4'" '"param":"model"'
# llama-server's native /completion: content, stop, stop_type, n_probs, streamed events
http POST /completion '{"prompt":"The kernel","n_predict":4,"temperature":0}' "${A[@]}"
expect 200 '"content":"' '"stop":true' '"tokens_predicted":4' '"stop_type":"limit"' '"timings":{'
http POST /completion '{"prompt":"The kernel","n_predict":3,"temperature":0,"n_probs":2}' "${A[@]}"
expect 200 '"completion_probabilities":[{"id":' '"top_logprobs":[{"id":'
http POST /completion '{"prompt":"The kernel","n_predict":3,"temperature":0,"stream":true}' "${A[@]}"
expect 200 'data: {"index":0,"content":' '"stop":false' '"stop":true'
checks=$((checks + 1))
! grep -q 'DONE' "$TMP/body" || bad "the native stream ends with its last event, not [DONE]"
http POST /completion '{"prompt":"x","n_probs":21}' "${A[@]}"; expect 400 '"param":"n_probs"'
# llama-server's /props and /apply-template
http GET /props "" "${A[@]}"; expect 200 '"total_slots":' '"default_generation_settings":{"n_ctx":' '"chat_template":"' '"temperature":0.8,'
http POST /apply-template "{$USER_MSG}" "${A[@]}"; expect 200 '"prompt":"' 'Say hello'
http POST /apply-template '{"messages":3}' "${A[@]}"; expect 400 '"param":"messages"'
http GET /models "" "${A[@]}"; expect 200 '"object":"model"'
# llama-server's /slots and id_slot: a request pinned to slot 1 leaves its cache there
http GET /slots "" "${A[@]}"; expect 200 '"id":0,' '"id":1,' '"is_processing":false'
http POST /completion '{"prompt":"Hello there","n_predict":3,"id_slot":1}' "${A[@]}"; expect 200 '"id_slot":1'
http GET /slots "" "${A[@]}"; expect 200 '"id":1,"n_ctx":1024,"is_processing":false,"n_tokens":'
http POST /completion '{"prompt":"x","id_slot":2}' "${A[@]}"; expect 400 '"param":"id_slot"'
http POST '/slots/1?action=erase' "" "${A[@]}"; expect 200 '"id_slot":1' '"n_erased":'
http POST '/slots/1?action=save' "" "${A[@]}"; expect 400 '"param":"action"'
http POST '/slots/7?action=erase' "" "${A[@]}"; expect 404 'no slot'
http POST /slots "" "${A[@]}"; expect 405
# /infill needs the FIM tokens this model lacks (test_infill has a model with them)
http POST /infill '{"input_prefix":"int main(","input_suffix":"}"}' "${A[@]}"; expect 501 'fill-in-the-middle'

# chat, not streamed
http POST /v1/chat/completions "{$USER_MSG,\"max_tokens\":4,\"temperature\":0}" "${A[@]}"
expect 200 '"object":"chat.completion"' '"role":"assistant"' '"finish_reason":"length"' \
    '"completion_tokens":4' '"prompt_tokens_details":{"cached_tokens":'
cp "$TMP/body" "$TMP/first"
# the same request again: greedy gives the same text, and the prompt comes from the cache
http POST /v1/chat/completions "{$USER_MSG,\"max_tokens\":4,\"temperature\":0}" "${A[@]}"
expect 200 '"finish_reason":"length"'
c1=$(sed 's/.*"content":"\([^"]*\)".*/\1/' "$TMP/first"); c2=$(sed 's/.*"content":"\([^"]*\)".*/\1/' "$TMP/body")
check "greedy replies differ: '$c1' vs '$c2'" [ "$c1" = "$c2" ]
cached=$(sed -n 's/.*"cached_tokens":\([0-9]*\).*/\1/p' "$TMP/body")
prompt=$(sed -n 's/.*"prompt_tokens":\([0-9]*\).*/\1/p' "$TMP/body")
check "cached_tokens $cached of $prompt: want all but one" [ "$cached" = "$((prompt - 1))" ]
http POST /v1/chat/completions "{$USER_MSG,\"max_tokens\":4,\"temperature\":0,\"cache_prompt\":false}" "${A[@]}"
expect 200 '"cached_tokens":0}'
c3=$(sed 's/.*"content":"\([^"]*\)".*/\1/' "$TMP/body")
check "greedy reply without the cache differs: '$c1' vs '$c3'" [ "$c1" = "$c3" ]

# streamed, with usage
http POST /v1/chat/completions "{$USER_MSG,\"max_tokens\":3,\"stream\":true,\"stream_options\":{\"include_usage\":true}}" "${A[@]}"
expect 200 'data: {"id":"chatcmpl-' '"object":"chat.completion.chunk"' '"delta":{"role":"assistant"' \
    '"finish_reason":"length"' '"choices":[],"usage":{' 'data: [DONE]'
check "stream does not end with [DONE]" [ "$(tail -c 14 "$TMP/body" | head -c 12)" = "data: [DONE]" ]

# content parts, stop strings, sampling fields, chat_template_kwargs, tools
http POST /v1/chat/completions '{"messages":[{"role":"system","content":[{"type":"text","text":"Be brief."}]},{"role":"user","content":"Hi"}],"max_tokens":3,"temperature":0.7,"top_k":20,"top_p":0.9,"min_p":0.05,"presence_penalty":1.5,"frequency_penalty":0.5,"repeat_penalty":1.1,"seed":7,"stop":["zzz"],"chat_template_kwargs":{"enable_thinking":false}}' "${A[@]}"
expect 200 '"object":"chat.completion"'
http POST /v1/chat/completions '{"messages":[{"role":"user","content":"Weather in Paris?"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},{"role":"tool","tool_call_id":"call_1","content":"18 C"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],"max_tokens":2}' "${A[@]}"
expect 200 '"object":"chat.completion"'

# completions: text and token ids, streamed and not
http POST /v1/completions '{"prompt":"The kernel","max_tokens":3}' "${A[@]}"
expect 200 '"object":"text_completion"' '"text":' '"completion_tokens":3'
http POST /v1/completions '{"prompt":[1,2,3],"max_tokens":2,"stream":true}' "${A[@]}"
expect 200 '"object":"text_completion"' 'data: [DONE]'
# ignore_eos (llama-server's field): end-of-generation tokens banned, all 40 tokens come
http POST /v1/completions '{"prompt":"The kernel","max_tokens":40,"temperature":0,"ignore_eos":true}' "${A[@]}"
expect 200 '"completion_tokens":40' '"finish_reason":"length"' '"predicted_per_second":'
http POST /v1/completions '{"prompt":"The kernel","ignore_eos":"yes"}' "${A[@]}"; expect 400 '"param":"ignore_eos"'
# log-probabilities: legacy completions (logprobs N <= 5), chat (logprobs + top_logprobs <= 20)
http POST /v1/completions '{"prompt":"The kernel","max_tokens":3,"temperature":0,"logprobs":2}' "${A[@]}"
expect 200 '"tokens":[' '"token_logprobs":[' '"top_logprobs":[{' '"text_offset":[0,'
http POST /v1/chat/completions "{$USER_MSG,\"max_tokens\":2,\"logprobs\":true,\"top_logprobs\":2}" "${A[@]}"
expect 200 '"logprobs":{"content":[{"token":' '"bytes":[' '"top_logprobs":[{"token":'
http POST /v1/completions '{"prompt":"x","logprobs":6}' "${A[@]}"; expect 400 '"param":"logprobs"'
http POST /v1/chat/completions "{$USER_MSG,\"top_logprobs\":2}" "${A[@]}"; expect 400 '"param":"top_logprobs"'
http POST /v1/chat/completions "{$USER_MSG,\"logprobs\":true,\"top_logprobs\":21}" "${A[@]}"; expect 400 '"param":"top_logprobs"'
http POST /v1/chat/completions "{$USER_MSG,\"echo\":true}" "${A[@]}"; expect 400 '"param":"echo"'

# tokenize / detokenize round trip
http POST /tokenize '{"content":"hello world"}' "${A[@]}"
expect 200 '"tokens":['
ids=$(sed 's/.*"tokens":\[\([^]]*\)\].*/\1/' "$TMP/body")
http POST /detokenize "{\"tokens\":[$ids]}" "${A[@]}"
expect 200 '"content":"hello world"'
http POST /tokenize '{"content":"hi","with_pieces":true}' "${A[@]}"
expect 200 '"piece":'

# metrics
http GET /metrics "" "${A[@]}"
expect 200 '# TYPE halo_requests_total counter' 'halo_tokens_predicted_total ' 'halo_slots_busy ' \
    'halo_kv_cache_usage_ratio ' 'halo_prompt_tokens_cached_total '

# errors
http GET /nope "" "${A[@]}"; expect 404 '"type":"not_found_error"'
http GET /v1/chat/completions "" "${A[@]}"; expect 405 '"error"'
http POST /v1/chat/completions '{"messages":' "${A[@]}"; expect 400 'not valid JSON' '"code":null'
http POST /v1/chat/completions '[1]' "${A[@]}"; expect 400 'must be a JSON object'
http POST /v1/chat/completions '{}' "${A[@]}"; expect 400 '"param":"messages"'
http POST /v1/chat/completions "{$USER_MSG,\"temperature\":\"hot\"}" "${A[@]}"; expect 400 '"param":"temperature"'
# max_tokens beyond the context: clamped to what the slot holds, not refused
http POST /v1/completions '{"prompt":"The kernel","max_tokens":100000000,"stop":[" "," the"]}' "${A[@]}"; expect 200 '"finish_reason":"'
http POST /v1/chat/completions "{$USER_MSG,\"logit_bias\":{\"999999\":1}}" "${A[@]}"; expect 400 '"param":"logit_bias"'
http POST /v1/completions '{"prompt":[1,5000000]}' "${A[@]}"; expect 400 '"param":"prompt"'
http POST /v1/completions '{"prompt":""}' "${A[@]}"; expect 400 'empty'
long=$(printf 'word %.0s' $(seq 1 1500))
http POST /v1/completions "{\"prompt\":\"$long\"}" "${A[@]}"; expect 400 'more than the' '"param":"prompt"'
http POST /tokenize '{"content":5}' "${A[@]}"; expect 400 '"param":"content"'
http POST /detokenize '{"tokens":[-1]}' "${A[@]}"; expect 400 '"param":"tokens"'
head -c 1100000 /dev/zero | tr '\0' 'a' > "$TMP/big"
http POST /v1/completions "@$TMP/big" "${A[@]}"; expect 413 'larger than'

# a client that hangs up mid-stream: its slot is freed (the cancelled counter moves)
BIAS=$(eog_bias "${A[@]}")
curl -s -N "${A[@]}" "$URL/v1/completions" \
    -d "{\"prompt\":\"The\",\"max_tokens\":1000,\"stream\":true,\"logit_bias\":$BIAS}" 2>/dev/null | head -c 300 >/dev/null
for _ in $(seq 1 100); do
    http GET /metrics "" "${A[@]}"
    has 'halo_requests_cancelled_total 1' && has 'halo_slots_busy 0' && break
    sleep 0.05
done
expect 200 'halo_requests_cancelled_total 1' 'halo_slots_busy 0'
stop_server

# IPv6: --host ::1 (skipped where this machine has no IPv6 loopback)
"$HALO" serve -m "$MODEL" --port 0 --host ::1 >"$TMP/v6.log" 2>&1 &
V6=$!
V6PORT=""
for _ in $(seq 1 200); do
    V6PORT=$(sed -n 's|.*listening on http://\[::1\]:\([0-9]*\).*|\1|p' "$TMP/v6.log")
    [ -n "$V6PORT" ] || ! kill -0 "$V6" 2>/dev/null && break
    sleep 0.05
done
if [ -n "$V6PORT" ]; then
    checks=$((checks + 1))
    curl -s -g "http://[::1]:$V6PORT/health" | grep -q '"ok"' || bad "no answer on [::1]:$V6PORT"
else
    echo "note: --host ::1 did not start here (no IPv6?): $(tail -1 "$TMP/v6.log")"
fi
kill "$V6" 2>/dev/null; wait "$V6" 2>/dev/null

# the queue bound: one slot, no waiting room; a second request while one runs is 503
start_server -np 1 -c 8192 -t 1 --queue 0 --log-disable
curl -s -N "$URL/v1/completions" -d "{\"prompt\":\"The\",\"max_tokens\":8000,\"stream\":true,\"logit_bias\":$(eog_bias)}" >/dev/null 2>&1 &
BG=$!
for _ in $(seq 1 100); do
    http GET /metrics; has 'halo_slots_busy 1' && break; sleep 0.02
done
http POST /v1/completions '{"prompt":"The","max_tokens":1}' -D "$TMP/headers"
expect 503 '"type":"unavailable_error"' 'busy'
checks=$((checks + 1))
grep -qi '^Retry-After: 1' "$TMP/headers" || bad "a 503 without Retry-After: $(cat "$TMP/headers")"
kill "$BG" 2>/dev/null; wait "$BG" 2>/dev/null
for _ in $(seq 1 100); do
    http GET /metrics; has 'halo_slots_busy 0' && break; sleep 0.05
done
http POST /v1/completions '{"prompt":"The","max_tokens":1}'
expect 200 '"completion_tokens":1'
stop_server

# reasoning with a Qwen3.5 template (the prompt opens <think>): thinking goes to
# reasoning_content, the budget forces </think> after 5 tokens, then content follows;
# enable_thinking false gives no reasoning
MODEL="$FIX/models/tiny-qwen35-f16.gguf"
start_server -t 1 --reasoning-budget 5 --log-disable \
    --chat-template-file "$FIX/templates/Qwen3.5-4B.jinja"
BIAS=$(eog_bias)
http POST /v1/chat/completions "{$USER_MSG,\"max_tokens\":30,\"logit_bias\":$BIAS}"
expect 200 '"reasoning_content":"' '"content":"'
http POST /v1/chat/completions "{$USER_MSG,\"max_tokens\":12,\"stream\":true,\"logit_bias\":$BIAS}"
expect 200 '"delta":{"reasoning_content":' '"delta":{"content":'
http POST /v1/chat/completions "{$USER_MSG,\"max_tokens\":8,\"chat_template_kwargs\":{\"enable_thinking\":false},\"logit_bias\":$BIAS}"
expect 200 '"content":"'
checks=$((checks + 1)); has '"reasoning_content"' && bad "reasoning with enable_thinking false"
stop_server
finish
