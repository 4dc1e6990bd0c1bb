#!/usr/bin/env bash
# `halo run` on kdoc-moe: greedy generation is deterministic, -n is respected, a
# fixed seed repeats its sampled text, the prompt is echoed unless
# --no-display-prompt, speeds go to stderr; bad flags fail with exit 2.
set -u
source "$(dirname "${BASH_SOURCE[0]}")/lib_kdoc.sh"
P="The device driver model"

run g1 run -m "$M" -p "$P" -n 24 --temp 0 -t 2
check "[ $rc -eq 0 ]" "greedy run exited $rc: $(tail -3 "$TMP/g1.err")"
run g2 run -m "$M" -p "$P" -n 24 --temp 0 -t 1 --ignore-eos
check "[ $rc -eq 0 ] && cmp -s '$TMP/g1.out' '$TMP/g2.out'" "greedy runs differ"
check "[ \"\$(head -c ${#P} '$TMP/g1.out')\" = '$P' ]" "the prompt is not echoed first"
check "[ \$(wc -c < '$TMP/g1.out') -gt $(( ${#P} + 24 )) ]" "too little text generated: $(cat "$TMP/g1.out")"
check "grep -qE 'generation *= .*/ +24 tokens' '$TMP/g1.err'" "-n 24 not respected: $(grep generation "$TMP/g1.err")"
check "grep -q 'prompt eval' '$TMP/g1.err' && grep -q 'load time' '$TMP/g1.err'" "no timings on stderr"
check "grep -q 'tokens per second' '$TMP/g1.err'" "no speed on stderr"
# kdoc-moe writes English: mostly letters and spaces
check "[ \$(tr -cd 'a-zA-Z ' < '$TMP/g1.out' | wc -c) -gt \$(( \$(wc -c < '$TMP/g1.out') * 7 / 10 )) ]" \
    "not plausible text: $(cat "$TMP/g1.out")"

run n0 run -m "$M" -p "$P" -n 0 --no-display-prompt
check "[ $rc -eq 0 ] && [ ! -s '$TMP/n0.out' ]" "-n 0 --no-display-prompt printed something"
run nd run -m "$M" -p "$P" -n 8 --temp 0 --no-display-prompt
check "[ $rc -eq 0 ] && [ \"\$(cat '$TMP/nd.out')\" = \"\$(tail -c +$(( ${#P} + 1 )) '$TMP/g1.out' | head -c \$(wc -c < '$TMP/nd.out'))\" ]" \
    "--no-display-prompt: not the same continuation"

run s1 run -m "$M" -p "$P" -n 24 -s 42 --temp 1.0 --top-k 0 --top-p 1 --min-p 0
run s2 run -m "$M" -p "$P" -n 24 -s 42 --temp 1.0 --top-k 0 --top-p 1 --min-p 0
check "[ $rc -eq 0 ] && cmp -s '$TMP/s1.out' '$TMP/s2.out'" "seed 42 twice gave different text"
check "grep -q 'seed 42' '$TMP/s1.err'" "the seed is not reported"
run pr run -m "$M" -p "$P" -n 8 --sampling-preset qwen-thinking -s 7 --repeat-last-n -1
check "[ $rc -eq 0 ]" "preset run exited $rc: $(tail -2 "$TMP/pr.err")"
printf '%s' "$P" > "$TMP/prompt.txt"
run f1 run -m "$M" -f "$TMP/prompt.txt" -n 24 --temp 0
check "[ $rc -eq 0 ] && cmp -s '$TMP/g1.out' '$TMP/f1.out'" "-f FILE differs from -p"

expect_error 2 temp run -m "$M" -p x --temp -1
expect_error 2 topp run -m "$M" -p x --top-p 1.5
expect_error 2 topk run -m "$M" -p x --top-k -3
expect_error 2 preset run -m "$M" -p x --sampling-preset fastest
expect_error 2 bias run -m "$M" -p x --logit-bias 12
expect_error 2 unknown run -m "$M" -p x --frobnicate
expect_error 2 noprompt run -m "$M"
expect_error 2 twoprompts run -m "$M" -p x -f y
expect_error 2 badn run -m "$M" -p x -n lots
expect_error 1 nomodel run -m "$TMP/none.gguf" -p x
expect_error 1 nofile run -m "$M" -f "$TMP/none.txt"
head -c 20000 "$FIX/text/test.txt" > "$TMP/long.txt"
expect_error 1 toolong run -m "$M" -f "$TMP/long.txt" -c 64
# the GPU flags: a partial offload is refused (not supported yet) with a message; bad values
# are usage errors; -ngl 99 runs where a GPU is visible, else says why it cannot
expect_error 1 nglpart run -m "$M" -p x -n 2 -ngl 3
check "grep -q 'not supported yet' '$TMP/nglpart.err'" "-ngl 3: $(cat "$TMP/nglpart.err")"
expect_error 2 nglbad run -m "$M" -p x -ngl lots
expect_error 2 devbad run -m "$M" -p x -dev Metal0
# (where no CUDA device is visible but a Vulkan one is, -ngl 99 runs on Vulkan)
run ngl run -m "$M" -p "The page cache" -n 4 --temp 0 -ngl 99
check "[ $rc -eq 0 ] || grep -q -e 'no CUDA GPU is visible' -e 'built without the CUDA backend' '$TMP/ngl.err'" \
    "-ngl 99: exit $rc: $(cat "$TMP/ngl.err")"
# experts kept on the CPU with the model on the GPU: placed before the upload (so the
# messages come with or without a GPU), bad rules refused with a reason
run ncm run -m "$M" -p "The page cache" -n 4 --temp 0 -ngl 99 --n-cpu-moe 2
check "grep -q 'routed experts of 2 of 8 layers stay in host memory' '$TMP/ncm.err'" \
    "--n-cpu-moe 2: $(head -c 300 "$TMP/ncm.err")"
check "[ $rc -eq 0 ] || grep -q -e 'no CUDA GPU is visible' -e 'built without the CUDA backend' '$TMP/ncm.err'" \
    "--n-cpu-moe 2: exit $rc: $(tail -2 "$TMP/ncm.err")"
run otx run -m "$M" -p x -n 1 -ngl 99 -ot '\.ffn_(up|gate)_exps\.=CPU,ffn_down=CUDA0'
check "grep -q 'routed experts of 8 of 8 layers' '$TMP/otx.err'" "-ot exps=CPU: $(head -c 300 "$TMP/otx.err")"
expect_error 1 otdev run -m "$M" -p x -ngl 99 -ot 'exps=GPU'
check "grep -q 'unknown device GPU' '$TMP/otdev.err'" "-ot =GPU: $(head -c 300 "$TMP/otdev.err")"
expect_error 1 otattn run -m "$M" -p x -ngl 99 -ot 'attn_q=CPU'
check "grep -q 'only routed-expert tensors' '$TMP/otattn.err'" "-ot attn=CPU: $(head -c 300 "$TMP/otattn.err")"
expect_error 1 otre run -m "$M" -p x -ngl 99 -ot '(=CPU'
expect_error 2 otnone run -m "$M" -p x -ngl 99 -ot
# llama-cli / llama-server flags with no meaning for halo: accepted with a note each
run compat run -m "$M" -p "$P" -n 2 --temp 0 --no-context-shift --cache-reuse 256 --jinja -fa on \
    --no-warmup --threads-http 4 --timeout 600
check "[ $rc -eq 0 ] && [ \$(grep -c '^note: .* is accepted and ignored' '$TMP/compat.err') -eq 7 ]" \
    "compat flags: exit $rc: $(grep -v '^ ' "$TMP/compat.err" | head -c 400)"
expect_error 2 compatmiss run -m "$M" -p x --cache-reuse
# constrained decoding: a GBNF grammar and a JSON schema shape the output; a bad one is an
# error before the model loads
run gram run -m "$M" -p "Is it" -n 40 -s 1 --no-display-prompt --grammar 'root ::= (" yes" | " no")+ "."'
check "[ $rc -eq 0 ] && grep -qxE '( yes| no)+\\.' '$TMP/gram.out' && grep -q 'end of generation' '$TMP/gram.err'" \
    "--grammar: exit $rc: $(cat "$TMP/gram.out")"
run js run -m "$M" -p "$P" -n 200 -s 2 --no-display-prompt \
    -j '{"type":"object","properties":{"n":{"type":"integer"},"s":{"type":"string","maxLength":9}},"required":["n","s"]}'
check "[ $rc -eq 0 ] && grep -q 'end of generation' '$TMP/js.err' && tr -d ' \\n\\t' < '$TMP/js.out' | grep -qE '^\\{\"n\":-?[0-9]+,\"s\":\"'" \
    "--json-schema: exit $rc: $(cat "$TMP/js.out")"
expect_error 1 grambad run -m "$M" -p x --grammar 'root ::= ['
check "grep -q 'unterminated character class' '$TMP/grambad.err'" "bad --grammar: $(cat "$TMP/grambad.err")"
expect_error 2 gramtwo run -m "$M" -p x --grammar 'root ::= "a"' -j '{}'
run help run --help
check "[ $rc -eq 0 ] && grep -q -- '--top-p' '$TMP/help.out'" "--help"

echo "run cli: $checks checks, $fail failed"
[ $fail -eq 0 ]
