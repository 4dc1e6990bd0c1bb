#!/usr/bin/env bash
# `halo tokenize`: output formats (llama-tokenize's), exit codes, flags, and every
# public vector (qwen2 and llama-spm) through the command line, compared with the
# expected ids of the .out files.
set -u
HALO=${HALO:?HALO must point at the halo binary}
FIX=${HALO_FIXTURES:-${HALO_FIXTURES_DEFAULT:-}}
if [ -z "$FIX" ] || [ ! -d "$FIX/models" ]; then
    echo "SKIPPED: fixtures absent (set HALO_FIXTURES)"
    exit 77
fi
QWEN=$FIX/models/qwen3-vocab.gguf
SPM=$FIX/models/llama-spm-vocab.gguf
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
checks=0

expect() { # name, expected, actual
    checks=$((checks + 1))
    if [ "$2" != "$3" ]; then
        fails=$((fails + 1))
        printf 'FAIL %s\n  want: %q\n  got:  %q\n' "$1" "$2" "$3"
    fi
}
expect_rc() { # name, expected rc, command...
    local name=$1 want=$2
    shift 2
    "$@" >"$TMP/out" 2>"$TMP/err"
    expect "$name (exit code)" "$want" "$?"
}

# ---- help and usage errors
expect_rc "--help" 0 "$HALO" tokenize --help
grep -q "usage: halo tokenize" "$TMP/out" || { fails=$((fails + 1)); echo "FAIL --help text"; }
expect_rc "no text" 2 "$HALO" tokenize -m "$QWEN"
expect_rc "two texts" 2 "$HALO" tokenize -m "$QWEN" -p a -f /dev/null
expect_rc "unknown option" 2 "$HALO" tokenize -m "$QWEN" -p a --bogus
expect_rc "-p without value" 2 "$HALO" tokenize -m "$QWEN" -p
expect_rc "missing model" 1 "$HALO" tokenize -m "$TMP/none.gguf" -p a
expect_rc "missing file" 1 "$HALO" tokenize -m "$QWEN" -f "$TMP/none.txt"
printf 'not a gguf' >"$TMP/bad.gguf"
expect_rc "not a model" 1 "$HALO" tokenize -m "$TMP/bad.gguf" -p a

# ---- formats
expect "--ids-list" "[9707, 1879]" "$("$HALO" tokenize -m "$QWEN" -p "Hello world" --ids-list)"
expect "--ids" "9707 1879" "$("$HALO" tokenize -m "$QWEN" -p "Hello world" --ids)"
expect "pieces" "$(printf '  9707 -> '"'"'Hello'"'"'\n  1879 -> '"'"' world'"'"'')" \
    "$("$HALO" tokenize -m "$QWEN" -p "Hello world")"
expect "--show-count" "$(printf '9707 1879\nTotal number of tokens: 2')" \
    "$("$HALO" tokenize -m "$QWEN" -p "Hello world" --ids --show-count)"

# ---- empty text: no tokens at all (not even BOS), success
expect "empty -p" "" "$("$HALO" tokenize -m "$QWEN" -p "" --ids)"
expect_rc "empty -p rc" 0 "$HALO" tokenize -m "$QWEN" -p ""
expect "empty -p, no output" "" "$(cat "$TMP/out")"
: >"$TMP/empty.txt"
expect "empty -f" "" "$("$HALO" tokenize -m "$QWEN" -f "$TMP/empty.txt" --ids)"
expect "empty, SPM" "" "$("$HALO" tokenize -m "$SPM" -p "" --ids)"
expect "empty, SPM --no-bos" "" "$("$HALO" tokenize -m "$SPM" -p "" --ids --no-bos)"
expect "default model" "" "$("$HALO" tokenize -p "" --ids)"

# ---- BOS and special tokens
expect "SPM BOS" "1 15043 3186" "$("$HALO" tokenize -m "$SPM" -p "Hello world" --ids)"
expect "SPM --no-bos" "15043 3186" "$("$HALO" tokenize -m "$SPM" -p "Hello world" --ids --no-bos)"
expect "specials parsed" "1 1 6324 2" "$("$HALO" tokenize -m "$SPM" -p "<s>Hi</s>" --ids)"
expect "specials as text" "1 529 29879 29958 18567 829 29879 29958" \
    "$("$HALO" tokenize -m "$SPM" -p "<s>Hi</s>" --ids --no-parse-special)"
expect "control piece" "151644 -> '<|im_start|>'" "$("$HALO" tokenize -m "$QWEN" -p "<|im_start|>")"
n_plain=$("$HALO" tokenize -m "$QWEN" -p "<|im_start|>" --ids --no-parse-special)
expect "control not parsed" "27 91 318 4906 91 29" "$n_plain"
# user-defined tokens (<think>) are recognised even without parse-special
expect "user-defined" "151667 6023 151668" "$("$HALO" tokenize -m "$QWEN" -p "<think>hi</think>" --ids --no-parse-special)"

# Qwen3's GGUF types "</s>" as a normal token; like llama-tokenize, halo treats
# it as the control (end-of-generation) token it looks like
expect "control-looking" "128247" "$("$HALO" tokenize -m "$QWEN" -p "</s>" --ids)"
expect "control-looking, not parsed" "522 82 29" "$("$HALO" tokenize -m "$QWEN" -p "</s>" --ids --no-parse-special)"

# ---- escapes: processed by default, as llama-tokenize does
expect "escape \\n" "64 198 65" "$("$HALO" tokenize -m "$QWEN" -p 'a\nb' --ids)"
expect "--no-escape" "64 1699 65" "$("$HALO" tokenize -m "$QWEN" -p 'a\nb' --ids --no-escape)"
expect "escape \\x" "25411" "$("$HALO" tokenize -m "$QWEN" -p 'A\x42C' --ids)"
expect "--stdin" "87 379" "$(printf 'x y' | "$HALO" tokenize -m "$QWEN" --stdin --ids)"
printf 'Hello\n' >"$TMP/h.txt"
expect "-f keeps the final newline" "9707 198" "$("$HALO" tokenize -m "$QWEN" -f "$TMP/h.txt" --ids)"

# ---- every public vector through the command line
run_vectors() { # model, inp, out, label
    local model=$1 inp=$2 out=$3 label=$4 n=0 pass=0 limit=100000 need=40
    # under the sanitizers (HALO_TEST_QUICK=1) the first 8: tests/tokenizer/test_vectors
    # runs all of them in-process there; this loop is about the command line
    if [ "${HALO_TEST_QUICK:-0}" = 1 ]; then limit=8; need=8; fi
    rm -rf "$TMP/v" && mkdir "$TMP/v"
    # split the .inp into one file per text (each text ends with the separator line)
    awk -v dir="$TMP/v" 'BEGIN { RS = "\n__ggml_vocab_test__\n"; ORS = "" } { printf "%s", $0 > (dir "/" NR) ; close(dir "/" NR) }' "$inp"
    while IFS= read -r line || [ -n "$line" ]; do
        [ "$n" -ge "$limit" ] && break
        n=$((n + 1))
        want=$(echo $line)
        [ -f "$TMP/v/$n" ] || : >"$TMP/v/$n"
        got=$("$HALO" tokenize -m "$model" -f "$TMP/v/$n" --ids --no-bos --no-parse-special --no-escape)
        if [ "$got" = "$want" ]; then pass=$((pass + 1)); else expect "$label vector $n" "$want" "$got"; fi
    done <"$out"
    echo "$label: $pass/$n vectors through halo tokenize"
    checks=$((checks + 1))
    [ "$pass" = "$n" ] && [ "$n" -ge "$need" ] || fails=$((fails + 1))
}
run_vectors "$QWEN" "$FIX/tokenizer/qwen2.inp" "$FIX/tokenizer/qwen2.out" qwen2
run_vectors "$SPM" "$FIX/tokenizer/llama-spm.inp" "$FIX/tokenizer/llama-spm.out" llama-spm

echo "tokenizer/tokenize_cli: $checks checks, $fails failed"
[ "$fails" = 0 ]
