#!/usr/bin/env bash
# The prompt cache on a hybrid model (tiny Qwen3.5: DeltaNet + attention): a
# multi-turn chat, a regenerated answer and an edited last message reuse the
# cached prefix (recurrent-state checkpoints) and give, with greedy sampling,
# exactly the reply a fresh server gives to the same messages. Then the same on
# the attention-only tiny Qwen3 (KV truncation), and a prefix shared across slots.
source "$(dirname "$0")/lib.sh"

content() { sed -E 's/.*"content":("([^"\\]|\\.)*").*/\1/' "$TMP/body"; }
cached() { sed -n 's/.*"cached_tokens":\([0-9]*\).*/\1/p' "$TMP/body"; }
prompt_tokens() { sed -n 's/.*"prompt_tokens":\([0-9]*\).*/\1/p' "$TMP/body"; }
ask() { # ask MESSAGES-JSON: greedy chat; sets REPLY, CACHED, PROMPT
    http POST /v1/chat/completions "{\"messages\":$1,\"max_tokens\":8,\"temperature\":0}"
    checks=$((checks + 1))
    [ "$CODE" = 200 ] || bad "status $CODE: $(head -c 300 "$TMP/body")"
    REPLY=$(content); CACHED=$(cached); PROMPT=$(prompt_tokens)
}

# under the sanitizers (HALO_TEST_QUICK) the hybrid alone: it is the case that matters
MODELS="tiny-qwen35-f16 tiny-qwen3-f16"
BG_TOKENS=900
[ -n "${HALO_TEST_QUICK:-}" ] && MODELS="tiny-qwen35-f16" && BG_TOKENS=100
for model in $MODELS; do
    MODEL="$FIX/models/$model.gguf"
    T1='[{"role":"system","content":"You are a helpful assistant who answers in one line."},{"role":"user","content":"What is a kernel module?"}]'
    # fresh answers (a new server each: nothing cached)
    start_server -np 1 -c 2048 -t 1 --log-disable; ask "$T1"; R1=$REPLY; P1=$PROMPT; stop_server
    T2="${T1%]},{\"role\":\"assistant\",\"content\":$R1},{\"role\":\"user\",\"content\":\"And a driver?\"}]"
    T2E="${T1%]},{\"role\":\"assistant\",\"content\":$R1},{\"role\":\"user\",\"content\":\"And a device?\"}]"
    start_server -np 1 -c 2048 -t 1 --log-disable; ask "$T2"; F2=$REPLY; stop_server
    start_server -np 1 -c 2048 -t 1 --log-disable; ask "$T2E"; F2E=$REPLY; stop_server

    # one server, the conversation in turns
    start_server -np 1 -c 2048 -t 1 --checkpoint-every 16 --log-disable
    ask "$T1"
    check "$model: turn 1 differs from a fresh server" [ "$REPLY" = "$R1" ]
    ask "$T2"
    check "$model: turn 2 '$REPLY' differs from a fresh server's '$F2'" [ "$REPLY" = "$F2" ]
    check "$model: turn 2 reused $CACHED tokens, want >= $((P1 - 4))" [ "${CACHED:-0}" -ge $((P1 - 4)) ]
    ask "$T2" # regenerate: all but the last prompt token come from the cache
    check "$model: regenerated answer differs" [ "$REPLY" = "$F2" ]
    check "$model: regenerate reused $CACHED of $PROMPT" [ "${CACHED:-0}" = $((PROMPT - 1)) ]
    ask "$T2E" # edited last message: back to a checkpoint before the edit
    check "$model: edited turn differs from a fresh server" [ "$REPLY" = "$F2E" ]
    check "$model: edited turn reused $CACHED, want >= $((P1 - 4))" [ "${CACHED:-0}" -ge $((P1 - 4)) ]
    stop_server
done

# the case that makes other servers read the whole conversation again: a Qwen3.5
# template opens <think> in the generation prompt, and renders earlier assistant turns
# without their reasoning, so the next prompt diverges a few tokens before the cached
# prompt's end; the checkpoint there serves, and the reply is a fresh server's
MODEL="$FIX/models/tiny-qwen35-f16.gguf"
Q35=(--chat-template-file "$FIX/templates/Qwen3.5-4B.jinja" --reasoning-budget 4)
reasoning() { sed -n -E 's/.*"reasoning_content":("([^"\\]|\\.)*").*/\1/p' "$TMP/body"; }
start_server -np 1 -c 2048 -t 1 --log-disable "${Q35[@]}"
BIAS=$(eog_bias)
ask() {
    http POST /v1/chat/completions "{\"messages\":$1,\"max_tokens\":10,\"temperature\":0,\"logit_bias\":$BIAS}"
    checks=$((checks + 1))
    [ "$CODE" = 200 ] || bad "status $CODE: $(head -c 300 "$TMP/body")"
    REPLY="$(content) $(reasoning)"; CACHED=$(cached); PROMPT=$(prompt_tokens)
}
T1='[{"role":"user","content":"What is a kernel module?"}]'
ask "$T1"; P1=$PROMPT
A1=$(content)
check "turn 1 has reasoning" [ -n "$(reasoning)" ]
T2="${T1%]},{\"role\":\"assistant\",\"content\":$A1},{\"role\":\"user\",\"content\":\"And a driver?\"}]"
ask "$T2"; R2=$REPLY
check "qwen3.5 template: turn 2 reused $CACHED tokens of turn 1's $P1, want >= $((P1 - 4))" \
    [ "${CACHED:-0}" -ge $((P1 - 4)) ]
stop_server
start_server -np 1 -c 2048 -t 1 --log-disable "${Q35[@]}"
ask "$T2"
check "qwen3.5 template: turn 2 '$R2' differs from a fresh server's '$REPLY'" [ "$R2" = "$REPLY" ]
check "a fresh server caches nothing" [ "${CACHED:-1}" = 0 ]
stop_server
ask() { # back to the plain form
    http POST /v1/chat/completions "{\"messages\":$1,\"max_tokens\":8,\"temperature\":0}"
    checks=$((checks + 1))
    [ "$CODE" = 200 ] || bad "status $CODE: $(head -c 300 "$TMP/body")"
    REPLY=$(content); CACHED=$(cached); PROMPT=$(prompt_tokens)
}

# --cache-ram bounds the checkpoints (LRU): many checkpoints' worth of prompts, 1 MiB kept
MODEL="$FIX/models/tiny-qwen35-f16.gguf"
start_server -np 2 -c 4096 -t 1 --checkpoint-every 8 --cache-ram 1 --log-disable
for k in 1 2 3; do ask "[{\"role\":\"user\",\"content\":\"$(printf "topic$k %.0s" $(seq 1 12))\"}]"; done
http GET /metrics
bytes=$(sed -n 's/^halo_prompt_cache_checkpoint_bytes \([0-9]*\)/\1/p' "$TMP/body")
check "checkpoint bytes $bytes: want 1 .. 1048576" [ "${bytes:-0}" -gt 0 -a "${bytes:-0}" -le 1048576 ]
stop_server

# slots share a prefix: two slots, the second request borrows the first's cache
MODEL="$FIX/models/tiny-qwen3-f16.gguf"
start_server -np 2 -c 2048 -t 1 --log-disable
LONGSYS=$(printf 'rule %.0s' $(seq 1 60))
ask "[{\"role\":\"system\",\"content\":\"$LONGSYS\"},{\"role\":\"user\",\"content\":\"one\"}]"
# the same prefix again, busy for a while on slot 0 ...
curl -s -N "$URL/v1/chat/completions" -d "{\"messages\":[{\"role\":\"system\",\"content\":\"$LONGSYS\"},{\"role\":\"user\",\"content\":\"bg\"}],\"max_tokens\":$BG_TOKENS,\"stream\":true,\"logit_bias\":{\"$(
    curl -s "$URL/tokenize" -d '{"content":"<|im_end|>"}' | sed 's/.*\[\([0-9]*\).*/\1/')\":-100}}" >"$TMP/bg" &
BG=$!
for _ in $(seq 1 100); do http GET /metrics; has 'halo_slots_busy 1' && break; sleep 0.02; done
# ... so this one goes to slot 1 and borrows slot 0's prefix
ask "[{\"role\":\"system\",\"content\":\"$LONGSYS\"},{\"role\":\"user\",\"content\":\"two\"}]"
check "shared prefix: $CACHED cached tokens" [ "${CACHED:-0}" -ge 60 ]
wait "$BG"
check "the background request ran" grep -q 'data: \[DONE\]' "$TMP/bg"
stop_server
finish
