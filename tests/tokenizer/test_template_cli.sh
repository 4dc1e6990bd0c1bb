#!/usr/bin/env bash
# `halo template`: exact output (no newline added) for fixture cases from --file and
# from the shipped model's tokenizer.chat_template (-m, bos/eos from the vocabulary),
# errors with line:column and exit codes, --help.
set -u
HALO=${HALO:?HALO must point at the halo binary}
FIX=${HALO_FIXTURES:-${HALO_FIXTURES_DEFAULT:-}}
SRC=${HALO_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
if [ -z "$FIX" ] || [ ! -f "$FIX/templates/expected.json" ]; then
    echo "SKIPPED: fixtures absent (set HALO_FIXTURES)"
    exit 77
fi
TPL=$FIX/templates
MODEL=$SRC/models/kdoc-moe-bf16.gguf
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
checks=0

fail() { fails=$((fails + 1)); echo "FAIL $*"; }
expect_rc() { # name, expected rc, command...
    local name=$1 want=$2
    shift 2
    checks=$((checks + 1))
    "$@" >"$TMP/out" 2>"$TMP/err"
    local rc=$?
    [ "$rc" = "$want" ] || fail "$name: exit code $rc, want $want ($(head -c 300 "$TMP/err"))"
}
# same bytes, compared as files (command substitution would drop final newlines)
expect_file() { # name, want file, got file
    checks=$((checks + 1))
    cmp -s "$2" "$3" || fail "$1: output differs: $(cmp "$2" "$3" 2>&1 | head -1)"
}

# ---- help and usage
expect_rc "--help" 0 "$HALO" template --help
grep -q "usage: halo template" "$TMP/out" || fail "--help text"
expect_rc "unknown option" 2 "$HALO" template --file "$TPL/Qwen3.5-4B.jinja" --bogus
expect_rc "both -m and --file" 2 "$HALO" template -m "$MODEL" --file "$TPL/Qwen3.5-4B.jinja"
expect_rc "--context without value" 2 "$HALO" template --file "$TPL/Qwen3.5-4B.jinja" --context
expect_rc "missing template" 1 "$HALO" template --file "$TMP/none.jinja"
expect_rc "missing context" 1 "$HALO" template --file "$TPL/Qwen3.5-4B.jinja" --context "$TMP/none.json"
printf '{"messages": [' >"$TMP/bad.json"
expect_rc "bad JSON" 1 "$HALO" template --file "$TPL/Qwen3.5-4B.jinja" --context "$TMP/bad.json"
grep -q "not valid JSON" "$TMP/err" || fail "bad JSON message: $(cat "$TMP/err")"
printf '[1]' >"$TMP/arr.json"
expect_rc "context not an object" 1 "$HALO" template --file "$TPL/Qwen3.5-4B.jinja" --context "$TMP/arr.json"

# ---- fixture cases through the command: every template, two cases each
# (expected.json is split into files with the JSON tools the system has: python3 or jq)
split_cases() {
    if command -v python3 >/dev/null; then
        python3 - "$TPL/expected.json" "$TMP" <<'PY'
import json, sys
for i, e in enumerate(json.load(open(sys.argv[1], encoding="utf-8"))):
    if e["case"] not in ("tools", "system_multi") or e.get("error"):
        continue
    d = sys.argv[2]
    json.dump(e["context"], open(f"{d}/ctx{i}.json", "w", encoding="utf-8"), ensure_ascii=False)
    open(f"{d}/want{i}.txt", "w", encoding="utf-8", newline="").write(e["expected"])
    open(f"{d}/tpl{i}", "w").write(e["template"])
PY
    else
        return 1
    fi
}
if split_cases; then
    n=0
    for ctx in "$TMP"/ctx*.json; do
        i=${ctx##*/ctx}
        i=${i%.json}
        expect_rc "case $i" 0 "$HALO" template --file "$TPL/$(cat "$TMP/tpl$i")" --context "$ctx"
        expect_file "case $i ($(cat "$TMP/tpl$i"))" "$TMP/want$i.txt" "$TMP/out"
        n=$((n + 1))
    done
    [ "$n" -ge 16 ] || fail "only $n fixture cases found"
    # the context from standard input
    first=$(ls "$TMP"/ctx*.json | head -1)
    i=${first##*/ctx}
    i=${i%.json}
    checks=$((checks + 1))
    "$HALO" template --file "$TPL/$(cat "$TMP/tpl$i")" --context - <"$first" >"$TMP/stdin.out" || fail "--context -"
    expect_file "--context -" "$TMP/want$i.txt" "$TMP/stdin.out"
else
    echo "note: python3 absent, fixture cases through the command skipped (test_template_fixtures covers them)"
fi

# ---- no newline added, nothing but the render on stdout
printf 'x{{ a }}' >"$TMP/t.jinja"
printf '{"a": "y\\n"}' >"$TMP/c.json"
expect_rc "tiny" 0 "$HALO" template --file "$TMP/t.jinja" --context "$TMP/c.json"
printf 'xy\n' >"$TMP/want"
expect_file "tiny output" "$TMP/want" "$TMP/out"
printf 'x' >"$TMP/t2.jinja"
expect_rc "no context" 0 "$HALO" template --file "$TMP/t2.jinja"
printf 'x' >"$TMP/want"
expect_file "no context output" "$TMP/want" "$TMP/out"
printf '{{ strftime_now("%%Y-%%m-%%d") }}' >"$TMP/t3.jinja"
expect_rc "--now" 0 "$HALO" template --file "$TMP/t3.jinja" --now 1795348800
printf '2026-11-22' >"$TMP/want"
expect_file "--now output" "$TMP/want" "$TMP/out"

# ---- errors: one line with line:column, exit 1
printf 'ok\n{{ x | nofilter }}' >"$TMP/e.jinja"
expect_rc "unknown filter" 1 "$HALO" template --file "$TMP/e.jinja"
grep -q "template:2:8: unknown filter 'nofilter'" "$TMP/err" || fail "unknown filter message: $(cat "$TMP/err")"
[ "$(wc -l <"$TMP/err")" = 1 ] || fail "error is not one line"
[ -s "$TMP/out" ] && fail "output on error"
printf '{%% if true %%}' >"$TMP/e2.jinja"
expect_rc "unclosed if" 1 "$HALO" template --file "$TMP/e2.jinja"
grep -q "never closed" "$TMP/err" || fail "unclosed message: $(cat "$TMP/err")"
printf '{{ raise_exception("No messages.") }}' >"$TMP/e3.jinja"
expect_rc "raise_exception" 1 "$HALO" template --file "$TMP/e3.jinja"
grep -q "template:1:4: No messages." "$TMP/err" || fail "raise_exception message: $(cat "$TMP/err")"

# ---- the shipped model: its template (Qwen3's), bos/eos from the vocabulary;
# expected texts are jinja2's renders of the model's template
if [ -f "$MODEL" ]; then
    printf '{"messages": [{"role": "user", "content": "Hi"}], "add_generation_prompt": true}' >"$TMP/m.json"
    expect_rc "-m model" 0 "$HALO" template -m "$MODEL" --context "$TMP/m.json"
    printf '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n' >"$TMP/want"
    expect_file "-m model output" "$TMP/want" "$TMP/out"
    printf '{"messages": [{"role": "user", "content": "Hi"}], "enable_thinking": false, "add_generation_prompt": true}' >"$TMP/m2.json"
    expect_rc "-m model, thinking off" 0 "$HALO" template -m "$MODEL" --context "$TMP/m2.json"
    printf '<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n' >"$TMP/want"
    expect_file "-m model, thinking off output" "$TMP/want" "$TMP/out"
    # no messages: jinja2 fails too ("list object has no element 0")
    printf '{"messages": []}' >"$TMP/none.json"
    expect_rc "no messages" 1 "$HALO" template -m "$MODEL" --context "$TMP/none.json"
    grep -q "template:13:.*index out of range" "$TMP/err" || fail "no messages: $(cat "$TMP/err")"
else
    echo "note: $MODEL absent, -m checks skipped"
fi

# ---- bos_token / eos_token from the vocabulary: a one-layer Llama 3.1 written by
# halo synth (its template starts with {{ bos_token }}); the context can override
if "$HALO" synth --preset llama-8b --layers 1 --vocab 1024 --ff 64 --type q4_0 -t 2 \
    -o "$TMP/llama.gguf" >/dev/null 2>&1; then
    printf '{"messages": [{"role": "user", "content": "Hi"}], "add_generation_prompt": true}' >"$TMP/l.json"
    expect_rc "-m llama" 0 "$HALO" template -m "$TMP/llama.gguf" --context "$TMP/l.json"
    # jinja2's render of the same template with bos_token <|begin_of_text|>
    printf '<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n' >"$TMP/want"
    expect_file "-m llama: bos_token from the vocabulary" "$TMP/want" "$TMP/out"
    printf '{"messages": [{"role": "user", "content": "Hi"}], "bos_token": "[B]"}' >"$TMP/l2.json"
    expect_rc "-m llama, bos_token given" 0 "$HALO" template -m "$TMP/llama.gguf" --context "$TMP/l2.json"
    checks=$((checks + 1))
    [ "$(head -c 3 "$TMP/out")" = "[B]" ] || fail "the context's bos_token wins: $(head -c 40 "$TMP/out")"
else
    fail "halo synth of a small llama failed"
fi

echo "tokenizer/template_cli: $checks checks, $fails failed"
[ "$fails" = 0 ]
