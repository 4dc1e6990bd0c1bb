#!/usr/bin/env bash
# Several choices per request (`n`) and legacy completions' `echo`, on the shipped model
# (kdoc-moe: a hybrid, so the choices share the prompt's KV pages and copy its recurrent
# state), a dense hybrid (tiny-qwen35) and an attention-only model (tiny-qwen3):
# - at temperature 0 every choice is the n=1 reply, choice 0 byte for byte;
# - with a seed, choices differ from each other and the request reproduces; usage counts
#   the prompt once; streamed chunks carry each choice's index and finish_reason;
# - n beyond the slots or 16 is a 400 naming n; a request for n slots waits for them;
# - echo returns the prompt before the text and, with logprobs, the prompt tokens'
#   log-probabilities (the first null) in the legacy shape, as lm-eval's loglikelihood
#   requests ask (max_tokens 0 or 1); each equals the log-probability the model gives that
#   token when it is generated after the tokens before it.
source "$(dirname "$0")/lib.sh"
if ! command -v node >/dev/null; then echo "SKIPPED: node is needed to check the replies"; exit 77; fi
KDOC="${HALO_SOURCE_DIR:-$(dirname "$0")/../..}/models/kdoc-moe-bf16.gguf"
[ -f "$KDOC" ] || { echo "SKIPPED: $KDOC not found"; exit 77; }

# js EXPR: EXPR evaluated with r = the JSON reply in $TMP/body (null for a stream) and
# ev = its SSE events (parsed), printed (strings as they are, the rest as JSON)
js() {
    node -e '
const t = require("fs").readFileSync(process.argv[1], "utf8");
let r = null; try { r = JSON.parse(t); } catch (e) {}
const ev = t.split("\n").filter((l) => l.startsWith("data: {")).map((l) => JSON.parse(l.slice(6)));
const v = eval(process.argv[2]);
console.log(typeof v === "string" ? v : JSON.stringify(v));' "$TMP/body" "$1"
}
# jcheck DESCRIPTION EXPR: EXPR must be true
jcheck() {
    checks=$((checks + 1))
    [ "$(js "$2" 2>&1)" = true ] || bad "$1: $(head -c 400 "$TMP/body")"
}

# choices_match_n1 ENDPOINT BODY FIELD: at temperature 0, n=3 gives the n=1 reply three times
choices_match_n1() {
    local ep=$1 body=$2 field=$3
    http POST "$ep" "{$body,\"temperature\":0}"; expect 200
    local one; one=$(js "JSON.stringify(r.choices[0].$field)")
    local used; used=$(js 'r.usage.completion_tokens')
    http POST "$ep" "{$body,\"temperature\":0,\"n\":3}"; expect 200
    jcheck "$ep n=3: three choices, indices 0..2" 'r.choices.map((c) => c.index).join() === "0,1,2"'
    jcheck "$ep n=3 at temperature 0: each choice is the n=1 reply" \
        "r.choices.every((c) => JSON.stringify(c.$field) === JSON.stringify($one))"
    jcheck "$ep n=3: usage counts the prompt once, the choices' tokens all" \
        "r.usage.completion_tokens === 3 * $used && r.usage.total_tokens === r.usage.prompt_tokens + r.usage.completion_tokens"
}

CHAT='"messages":[{"role":"user","content":"What does the scheduler do?"}],"max_tokens":24'
# the hybrids (recurrent state copied with the pages) and a plain transformer; under the
# sanitizers (HALO_TEST_QUICK) the small hybrid only
CHOICE_MODELS=("$KDOC" "$FIX/models/tiny-qwen35-f16.gguf" "$FIX/models/tiny-qwen3-f16.gguf")
[ -n "${HALO_TEST_QUICK:-}" ] && CHOICE_MODELS=("$FIX/models/tiny-qwen35-f16.gguf")
for model in "${CHOICE_MODELS[@]}"; do
    MODEL=$model
    start_server -np 3 -c 3072 -t 1
    choices_match_n1 /v1/chat/completions "$CHAT" message.content
    choices_match_n1 /v1/completions '"prompt":"The page cache","max_tokens":20' text
    stop_server
done

MODEL=$KDOC
start_server -np 3 -c 3072 -t 1
# a seed: choices differ, the request reproduces, choice 0 is the n=1 reply of that seed
P='"prompt":"The page cache","max_tokens":16,"temperature":1,"seed":11'
http POST /v1/completions "{$P}"; expect 200
one=$(js 'JSON.stringify(r.choices[0].text)')
http POST /v1/completions "{$P,\"n\":3}"; expect 200
cp "$TMP/body" "$TMP/first"
jcheck "seeded n=3: the choices differ" 'new Set(r.choices.map((c) => c.text)).size >= 2'
jcheck "seeded n=3: choice 0 is the n=1 reply" "r.choices[0].text === $one"
http POST /v1/completions "{$P,\"n\":3}"; expect 200
checks=$((checks + 1))
[ "$(js 'r.choices.map((c) => c.text)')" = "$(cp "$TMP/first" "$TMP/body"; js 'r.choices.map((c) => c.text)')" ] ||
    bad "seeded n=3 does not reproduce"

# streamed: each choice's chunks carry its index; joined, the non-streamed reply
cp "$TMP/first" "$TMP/body"
want=$(js 'r.choices.map((c) => c.text)')
used=$(js 'r.usage.completion_tokens')
http POST /v1/completions "{$P,\"n\":3,\"stream\":true,\"stream_options\":{\"include_usage\":true}}"
expect 200 'data: [DONE]'
jcheck "streamed n=3: the texts by index are the non-streamed ones" \
    "JSON.stringify([0,1,2].map((i) => ev.flatMap((e) => e.choices.filter((c) => c.index === i).map((c) => c.text)).join(''))) === JSON.stringify($want)"
jcheck "streamed n=3: one finish_reason per choice" \
    '[0,1,2].every((i) => ev.flatMap((e) => e.choices).filter((c) => c.index === i && c.finish_reason).length === 1)'
jcheck "streamed n=3: one usage chunk, the prompt once" \
    "ev.filter((e) => e.usage).length === 1 && ev.find((e) => e.usage).usage.completion_tokens === $used"
http POST /v1/chat/completions "{$CHAT,\"n\":2,\"seed\":5,\"stream\":true,\"logprobs\":true}"
expect 200 'data: [DONE]'
jcheck "streamed chat n=2: a role delta, content and a finish per index" \
    '[0,1].every((i) => { const c = ev.flatMap((e) => e.choices).filter((c) => c.index === i);
       return c[0].delta.role === "assistant" && c.some((x) => x.delta.content) &&
              c.filter((x) => x.finish_reason).length === 1 && c.some((x) => x.logprobs); })'
http POST /v1/chat/completions "{$CHAT,\"n\":2,\"logprobs\":true,\"top_logprobs\":2}"; expect 200
jcheck "chat n=2 logprobs: per choice" \
    'r.choices.every((c) => c.logprobs.content.length > 0 && c.logprobs.content[0].top_logprobs.length === 2)'

# limits: more choices than slots, more than 16, n on the native endpoints, id_slot
http POST /v1/completions '{"prompt":"x","n":4}'; expect 400 '"param":"n"' "3 slots"
http POST /v1/chat/completions "{$CHAT,\"n\":17}"; expect 400 '"param":"n"'
http POST /v1/completions '{"prompt":"x","n":0}'; expect 400 '"param":"n"'
http POST /completion '{"prompt":"x","n":2}'; expect 400 '"param":"n"'
http POST /v1/completions '{"prompt":"x","n":2,"id_slot":1}'; expect 400 '"param":"id_slot"'
# n=3 while a slot is busy: it waits for three free slots, then runs
curl -s -o "$TMP/busy" "$URL/v1/completions" -d '{"prompt":"The","max_tokens":60,"ignore_eos":true}' &
bg=$!
sleep 0.2
http POST /v1/completions '{"prompt":"The page cache","max_tokens":4,"n":3,"temperature":0}'
expect 200 '"index":2'
wait $bg
checks=$((checks + 1))
grep -q '"completion_tokens":60' "$TMP/busy" || bad "the busy request: $(head -c 300 "$TMP/busy")"

# max_tokens 0: nothing generated
http POST /v1/completions '{"prompt":"The page cache","max_tokens":0}'
expect 200 '"text":""' '"completion_tokens":0' '"finish_reason":"length"'

# echo: lm-eval's loglikelihood request (token ids, max_tokens 0 and 1, logprobs 1)
http POST /tokenize '{"content":"The page cache is used to"}'; expect 200
ids=$(js 'r.tokens.join()')
n_ids=$(js 'r.tokens.length')
http POST /v1/completions "{\"prompt\":[$ids],\"max_tokens\":0,\"echo\":true,\"logprobs\":1,\"temperature\":0}"
expect 200
cp "$TMP/body" "$TMP/echo0"
jcheck "echo, max_tokens 0: the prompt's text, nothing generated" \
    'r.choices[0].text === "The page cache is used to" && r.usage.completion_tokens === 0'
jcheck "echo logprobs: a token per prompt token, the first one null, the others <= 0" \
    "const l = r.choices[0].logprobs; l.tokens.length === $n_ids && l.token_logprobs.length === $n_ids &&
     l.token_logprobs[0] === null && l.top_logprobs[0] === null &&
     l.token_logprobs.slice(1).every((x) => typeof x === 'number' && x <= 0) &&
     l.tokens.join('') === r.choices[0].text &&
     l.text_offset.every((o, i) => o === l.tokens.slice(0, i).join('').length)"
jcheck "echo logprobs: top_logprobs 1 alternative, never below the token's own" \
    'const l = r.choices[0].logprobs; l.top_logprobs.slice(1).every((m, i) =>
       Object.keys(m).length === 1 && Object.values(m)[0] >= l.token_logprobs[i + 1] - 1e-6)'
# each prompt token's log-probability is what the model gives it after the tokens before
# it: the prompt cut there, with that token as the only one allowed (logit_bias keeps the
# others out of the sample, not out of the reported distribution)
for k in 1 3 $((n_ids - 1)); do
    cp "$TMP/echo0" "$TMP/body"
    want=$(js "r.choices[0].logprobs.token_logprobs[$k]")
    head=$(js "JSON.stringify([$ids].slice(0, $k))")
    tok=$(js "[$ids][$k]")
    text=$(js "JSON.stringify(r.choices[0].logprobs.tokens[$k])")
    http POST /v1/completions "{\"prompt\":$head,\"max_tokens\":1,\"temperature\":0,\"logprobs\":1,\"logit_bias\":{\"$tok\":100}}"
    expect 200
    jcheck "echo's logprob of prompt token $k == the logprob of generating it" \
        "r.choices[0].logprobs.tokens[0] === $text &&
         Math.abs(r.choices[0].logprobs.token_logprobs[0] - $want) < 1e-4"
done
# max_tokens 1 (what lm-eval sends): the prompt's entries, then the generated token's
cp "$TMP/echo0" "$TMP/body"
lps=$(js 'r.choices[0].logprobs.token_logprobs')
http POST /v1/completions "{\"prompt\":[$ids],\"max_tokens\":1,\"echo\":true,\"logprobs\":1,\"temperature\":0}"
expect 200
jcheck "echo, max_tokens 1: the prompt's entries (as with max_tokens 0), then one more" \
    "const l = r.choices[0].logprobs; l.tokens.length === $n_ids + 1 && r.usage.completion_tokens === 1 &&
     r.choices[0].text.startsWith('The page cache is used to') &&
     JSON.stringify(l.token_logprobs.slice(0, $n_ids)) === JSON.stringify($lps)"
# lm-eval's exact form: the prompt as a list of one token list; the generated token an
# end of text (forced here), which keeps its entry after the prompt's
http POST /tokenize '{"content":"<|endoftext|>"}'; expect 200
eot=$(js 'r.tokens[0]')
http POST /v1/completions "{\"prompt\":[[$ids]],\"max_tokens\":1,\"echo\":true,\"logprobs\":1,\"temperature\":0,\"seed\":1234,\"logit_bias\":{\"$eot\":100}}"
expect 200 '"finish_reason":"stop"'
jcheck "echo [[ids]] ending at once: the prompt's entries and the end token's" \
    "const l = r.choices[0].logprobs; l.tokens.length === $n_ids + 1 && l.tokens[$n_ids] === '' &&
     typeof l.token_logprobs[$n_ids] === 'number' && r.choices[0].text === 'The page cache is used to' &&
     JSON.stringify(l.token_logprobs.slice(0, $n_ids)) === JSON.stringify($lps)"
# a text prompt; echo without logprobs; echo with n=2; streamed
http POST /v1/completions '{"prompt":"The page cache","max_tokens":3,"echo":true,"temperature":0}'
expect 200 '"text":"The page cache ' '"logprobs":null'
http POST /v1/completions '{"prompt":"The page cache","max_tokens":3,"echo":true,"logprobs":0,"n":2}'
expect 200
jcheck "echo n=2: both choices start with the prompt and score it" \
    'r.choices.length === 2 && r.choices.every((c) => c.text.startsWith("The page cache") &&
       c.logprobs.token_logprobs[0] === null && c.logprobs.tokens.length >= 3 && c.logprobs.tokens.length <= 6)'
http POST /v1/completions '{"prompt":"The page cache","max_tokens":2,"echo":true,"logprobs":1,"stream":true}'
expect 200 'data: [DONE]'
jcheck "streamed echo: the first text chunk is the prompt with its log-probabilities" \
    'const c = ev.flatMap((e) => e.choices).filter((c) => c.text); c[0].text === "The page cache" &&
     c[0].logprobs.token_logprobs[0] === null && c[0].logprobs.tokens.length === 3'
# long prompt in chunks (-b 64 below): every position scored
stop_server
start_server -np 1 -c 2048 -b 64 -ub 64 -t 1
long=$(printf 'The page cache holds pages of files. %.0s' $(seq 1 30))
http POST /v1/completions "{\"prompt\":\"$long\",\"max_tokens\":0,\"echo\":true,\"logprobs\":1}"
expect 200
jcheck "echo over a prompt read in chunks: every token after the first scored" \
    'const l = r.choices[0].logprobs; l.tokens.length === r.usage.prompt_tokens && l.tokens.length > 200 &&
     l.token_logprobs.slice(1).every((x) => typeof x === "number" && x <= 0)'
stop_server
finish
