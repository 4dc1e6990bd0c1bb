#!/usr/bin/env bash
# llama-server's POST /infill (fill in the middle) on a model that has the FIM tokens: a
# small `halo synth` Qwen3 (its vocabulary carries <|fim_prefix|> .. <|file_sep|>); the
# prompt the server builds, the reply's shape, the fields' checks. The model without FIM
# tokens is test_http's (501 there).
source "$(dirname "$0")/lib.sh"
MODEL="$TMP/fim.gguf"
"$HALO" synth --preset qwen3-8b --layers 1 --vocab 2048 --ff 64 -o "$MODEL" >"$TMP/synth.log" 2>&1
check "synth a model with FIM tokens" [ $? = 0 ]
start_server -np 2 -c 2048 -t 2 --log-disable
PRE='def add(a, b):\n    '
SUF='\n    return c\n'
# [BOS] <|fim_prefix|> PREFIX PROMPT <|fim_suffix|> SUFFIX <|fim_middle|>: ids 2038 / 2040 / 2039
http POST /tokenize "{\"content\":\"<|fim_prefix|>$PRE<|fim_suffix|>$SUF<|fim_middle|>\",\"parse_special\":true}"
expect 200 '"tokens":['
want=$(sed 's/.*"tokens":\[\([^]]*\)\].*/\1/' "$TMP/body" | tr -d ' ')
http POST /infill "{\"input_prefix\":\"$PRE\",\"input_suffix\":\"$SUF\",\"n_predict\":4,\"temperature\":0}"
expect 200 '"content":"' '"tokens_predicted":4' '"stop":true'
n_want=$(echo "$want" | tr ',' '\n' | grep -c .)
check "the infill prompt is <fim_prefix> prefix <fim_suffix> suffix <fim_middle> ($n_want tokens)" \
    grep -q "\"tokens_evaluated\":$n_want" "$TMP/body"
# the other files' chunks go in front, each behind <|file_sep|> and its name
http POST /infill "{\"input_prefix\":\"x = \",\"input_extra\":[{\"filename\":\"a.py\",\"text\":\"y = 1\\n\"}],\"n_predict\":2}"
expect 200 '"content":"' '"tokens_predicted":2'
http POST /infill '{"input_prefix":"x","stream":true,"n_predict":2}'
expect 200 'data: {"index":0,"content":' '"stop":true'
http POST /infill '{"input_extra":"a.py"}'; expect 400 '"param":"input_extra"'
http POST /infill '{"input_extra":[{"text":3}]}'; expect 400 '"param":"input_extra"'
http POST /infill '{"input_prefix":7}'; expect 400 '"param":"input_prefix"'
http POST /infill '{"input_prefix":"x","bogus":1}'; expect 400 '"param":"bogus"'
http POST /completion '{"prompt":"x","input_suffix":"y"}'; expect 400 '"param":"input_suffix"'
http GET /infill; expect 405
stop_server
finish
