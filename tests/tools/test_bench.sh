#!/usr/bin/env bash
# `halo bench` on kdoc-moe (tiny tests, one repetition: shapes, not speed): the md
# table has llama-bench's columns (type_k / type_v only when set), test names
# ppN, tgN, ppP+tgN and "@ dD"; the cross product of lists; csv, json and jsonl
# parse (python3) with llama-bench's field names; bad flags fail with exit 2.
set -u
source "$(dirname "${BASH_SOURCE[0]}")/lib_kdoc.sh"
B=(bench -m "$M" -r 1 -t 1)

run md "${B[@]}" -p 16 -n 4
check "[ $rc -eq 0 ]" "bench exited $rc: $(tail -3 "$TMP/md.err")"
check "grep -qE '^\| model +\| +size \| +params \| backend +\| threads \| +test \| +t/s \|$' '$TMP/md.out'" \
    "md header: $(head -1 "$TMP/md.out")"
check "grep -qE '^\| -+ \| -+: \| -+: \| -+ \| -+: \| -+: \| -+: \|$' '$TMP/md.out'" "md rule line"
check "grep -qE '\| +pp16 \| +[0-9.]+ ± [0-9.]+ \|$' '$TMP/md.out'" "no pp16 row: $(cat "$TMP/md.out")"
check "grep -qE '\| +tg4 \| +[0-9.]+ ± [0-9.]+ \|$' '$TMP/md.out'" "no tg4 row"
check "grep -qE '\| +(MiB|GiB)' '$TMP/md.out' || grep -qE '[0-9.]+ MiB \|' '$TMP/md.out'" "size not in MiB"
check "grep -qE '20.51 M \|' '$TMP/md.out'" "params not 20.51 M"
check "grep -q '^build: ' '$TMP/md.out'" "no build line"

run kv "${B[@]}" -p 8 -n 0 -ctk q8_0 -d 8 -pg 8,2
check "[ $rc -eq 0 ]" "bench -ctk q8_0 exited $rc: $(tail -3 "$TMP/kv.err")"
check "head -1 '$TMP/kv.out' | grep -qE '\| type_k \| +test'" "type_k column missing: $(head -1 "$TMP/kv.out")"
check "! head -1 '$TMP/kv.out' | grep -q type_v" "type_v column shown though default"
check "grep -qE '\| +q8_0 \| +pp8 @ d8 \|' '$TMP/kv.out'" "no 'pp8 @ d8' row with q8_0"
check "grep -qE '\| +pp8\+tg2 @ d8 \|' '$TMP/kv.out'" "no 'pp8+tg2 @ d8' row"

run cross bench -m "$M" -r 1 -p 8,16 -n 0 -t 1,2
check "[ $rc -eq 0 ] && [ \$(grep -cE '\| +pp(8|16) \|' '$TMP/cross.out') -eq 4 ]" \
    "-p 8,16 -t 1,2: not 4 rows: $(cat "$TMP/cross.out")"

if command -v python3 > /dev/null; then
    FIELDS="build_commit build_number cpu_info gpu_info backends model_filename model_type model_size model_n_params n_batch n_ubatch n_threads type_k type_v n_prompt n_gen n_depth test_time avg_ns stddev_ns avg_ts stddev_ts"
    run json "${B[@]}" -p 16 -n 4 -o json
    check "[ $rc -eq 0 ]" "-o json exited $rc"
    check "python3 - '$TMP/json.out' $FIELDS <<'PY'
import json, sys
rows = json.load(open(sys.argv[1]))
assert len(rows) == 2, rows
for r in rows:
    for f in sys.argv[2:]:
        assert f in r, f
    assert r['avg_ts'] > 0 and len(r['samples_ns']) == 1 and len(r['samples_ts']) == 1
    assert r['model_n_params'] == 20508720
assert (rows[0]['n_prompt'], rows[0]['n_gen']) == (16, 0)
assert (rows[1]['n_prompt'], rows[1]['n_gen']) == (0, 4)
PY" "json output does not parse or lacks fields: $(head -c 400 "$TMP/json.out")"
    run jsonl "${B[@]}" -p 16 -n 4 -o jsonl
    check "[ $rc -eq 0 ] && python3 - '$TMP/jsonl.out' $FIELDS <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == 2
for l in lines:
    r = json.loads(l)
    for f in sys.argv[2:]:
        assert f in r, f
PY" "jsonl output does not parse"
    run csv "${B[@]}" -p 16 -n 4 -o csv
    check "[ $rc -eq 0 ] && python3 - '$TMP/csv.out' $FIELDS <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 2
for r in rows:
    for f in sys.argv[2:]:
        assert f in r, f
    assert float(r['avg_ts']) > 0
PY" "csv output does not parse"
fi

expect_error 2 fmt "${B[@]}" -o xml
expect_error 2 badp "${B[@]}" -p abc
expect_error 2 badctk "${B[@]}" -ctk q9_9
expect_error 2 badpg "${B[@]}" -pg 5
expect_error 2 nothing "${B[@]}" -p 0 -n 0
expect_error 2 unknown "${B[@]}" --frobnicate
expect_error 1 nomodel bench -m "$TMP/none.gguf" -p 8 -n 0 -r 1
run help bench --help
check "[ $rc -eq 0 ] && grep -q -- '-ctk' '$TMP/help.out'" "--help"

echo "bench cli: $checks checks, $fail failed"
[ $fail -eq 0 ]
