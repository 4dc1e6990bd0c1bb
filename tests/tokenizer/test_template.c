/*
 * Unit tests of the chat-template engine: small templates over the features real
 * templates use (expressions, filters, tests, string methods, slicing, loops,
 * macros, whitespace control), each expected output rendered by Python's jinja2
 * 3.1 with the Hugging Face settings (ImmutableSandboxedEnvironment, trim_blocks,
 * lstrip_blocks, loopcontrols, tojson with ensure_ascii off, raise_exception,
 * strftime_now fixed to "22 Nov 2026"); error cases (jinja2 fails on each of them
 * too) give a one-line message containing the expected words; limits end renders
 * with clear errors.
 */
#include "harness.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>

typedef struct tcase {
    const char *tmpl, *context, *expected;
} tcase;

static const tcase cases[] = {
    {"{{ 1 + 2 * 3 }}|{{ (1 + 2) * 3 }}|{{ 7 // 2 }}|{{ -7 // 2 }}|{{ 7 % 3 }}|{{ -7 % 3 }}|{{ 2 ** 10 }}|{{ 7 / 2 }}",
     "{}",
     "7|9|3|-4|1|2|1024|3.5"},
    {"{{ 1.0 }}|{{ 0.1 + 0.2 }}|{{ 1e20 }}|{{ 1e16 }}|{{ 1.5e-5 }}|{{ 123456.789 }}|{{ f * 2 }}|{{ 10 / 4 }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "1.0|0.30000000000000004|1e+20|1e+16|1.5e-05|123456.789|5.0|2.5"},
    {"{{ 'a' ~ 1 ~ none ~ true }}|{{ 'ab' * 3 }}|{{ [1] * 2 }}|{{ [1, 2] + [3] }}|{{ 'x' + 'y' }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "a1NoneTrue|ababab|[1, 1]|[1, 2, 3]|xy"},
    {"{{ none }}|{{ true }}|{{ false }}|{{ undefined_thing }}|{{ [1, 'a', none, true, 2.5] }}|{{ {'k': 'v', 'n': [1]} }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "None|True|False||[1, 'a', None, True, 2.5]|{'k': 'v', 'n': [1]}"},
    {"{{ (1, 2) }}|{{ (1,) }}|{{ () }}|{{ \"it's\" }}|{{ ['it\\'s', \"q\\\"\"] }}|{{ 'a\\nb' }}|{{ 'tab\\there' }}",
     "{}",
     "(1, 2)|(1,)|()|it's|[\"it's\", 'q\"']|a\nb|tab\there"},
    {"{{ 'a' 'b' }}|{{ '\\u00e9\\x41' }}|{{ \"\\\\n\" }}",
     "{}",
     "ab|\303\251A|\\n"},
    {"{{ 1 < 2 < 3 }}|{{ 1 < 3 < 2 }}|{{ 'a' < 'b' }}|{{ [1, 2] < [1, 3] }}|{{ 1 == 1.0 }}|{{ true == 1 }}|{{ 'a' != 'a' }}",
     "{}",
     "True|False|True|True|True|True|False"},
    {"{{ 0 or 'x' }}|{{ 'y' and 0 }}|{{ not none }}|{{ none or [] or 'z' }}|{{ 1 if t else 2 }}|{{ 1 if none else 2 }}|{{ 'q' if none }}|",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "x|0|True|z|1|2||"},
    {"{{ 'ell' in s }}|{{ 2 in lst }}|{{ 'a' in d }}|{{ 'z' not in d }}|{{ 'x' in missing }}|{{ not 1 in lst }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "True|True|True|True|False|False"},
    {"{{ n is defined }}|{{ zz is defined }}|{{ zz is undefined }}|{{ none is none }}|{{ n is number }}|{{ f is float }}|{{ n is integer }}|{{ s is string }}|{{ d is mapping }}|{{ lst is iterable }}|{{ s is iterable }}|{{ n is iterable }}|{{ lst is sequence }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "True|False|True|True|True|True|True|True|True|True|True|False|True"},
    {"{{ t is true }}|{{ t is false }}|{{ t is boolean }}|{{ n is odd }}|{{ n is even }}|{{ 9 is divisibleby 3 }}|{{ 9 is divisibleby(4) }}|{{ 'a' is eq 'a' }}|{{ 3 is gt 2 }}|{{ 3 is le 2 }}|{{ 'abc' is lower }}|{{ 'AB' is upper }}|{{ 2 is in [1, 2] }}|{{ n is not none }}|{{ n is sameas 7 }}|{{ d is callable }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "True|False|True|True|False|True|False|True|True|False|True|True|True|True|True|False"},
    {"{{ s|trim }}|{{ s|upper }}|{{ s|lower }}|{{ 'hello world'|title }}|{{ 'hELLO'|capitalize }}|{{ s|length }}|{{ lst|length }}|{{ d|length }}|{{ 'h\303\251llo'|length }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "Hello, World|  HELLO, WORLD  |  hello, world  |Hello World|Hello|16|3|3|5"},
    {"{{ lst|join(', ') }}|{{ lst|join }}|{{ people|join('/', attribute='name') }}|{{ lst|first }}|{{ lst|last }}|{{ lst|list }}|{{ 'abc'|list }}|{{ lst|reverse|list }}|{{ 'abc'|reverse }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "3, 1, 2|312|ann/bob/cy|3|2|[3, 1, 2]|['a', 'b', 'c']|[2, 1, 3]|cba"},
    {"{{ lst|sort }}|{{ lst|sort(reverse=true) }}|{{ words|sort }}|{{ words|sort(case_sensitive=true) }}|{{ people|sort(attribute='age')|map(attribute='name')|join(',') }}|{{ d|dictsort }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "[1, 2, 3]|[3, 2, 1]|['A', 'b', 'c']|['A', 'b', 'c']|bob,ann,cy|[('a', 1), ('b', 2), ('c', [1, 2, {'x': '\303\251'}])]"},
    {"{{ people|selectattr('age', 'equalto', 30)|map(attribute='name')|list }}|{{ people|rejectattr('age', 'eq', 30)|map(attribute='name')|list }}|{{ people|selectattr('tags')|list|length }}|{{ people|selectattr('tags', 'defined')|map(attribute='name')|first }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "['ann', 'cy']|['bob']|1|ann"},
    {"{{ lst|select('odd')|list }}|{{ lst|reject('odd')|list }}|{{ [0, 1, '', 'a', none]|select|list }}|{{ words|map('upper')|list }}|{{ people|map(attribute='zz', default='-')|list }}|{{ lst|min }}|{{ lst|max }}|{{ lst|sum }}|{{ [1, 1, 2, 1]|unique|list }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "[3, 1]|[2]|[1, 'a']|['B', 'A', 'C']|['-', '-', '-']|1|3|6|[1, 2]"},
    {"{{ zz|default('dflt') }}|{{ none|default('dflt') }}|{{ ''|default('e', true) }}|{{ n|d(3) }}|{{ '42'|int + 1 }}|{{ '4.5'|float }}|{{ 'x'|int }}|{{ 3.9|int }}|{{ n|float }}|{{ n|string ~ 'x' }}|{{ -3|abs }}|{{ 2.567|round(2) }}|{{ 2.5|round }}|{{ 'a b  c'|wordcount }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "dflt|None|e|7|43|4.5|0|3|7.0|7x|3|2.57|2.0|3"},
    {"{{ s|replace('l', 'L') }}|{{ s|replace('l', 'L', 2) }}|{{ d|items|list }}|{{ '<&>'|e }}|{{ 'x'|safe }}|{{ d|attr('b') }}|{{ 'a\\nb'|indent(2) }}|{{ 'a\\nb'|indent(2, true) }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "  HeLLo, WorLd  |  HeLLo, World  |[('b', 2), ('a', 1), ('c', [1, 2, {'x': '\303\251'}])]|&lt;&amp;&gt;|x||a\n  b|  a\n  b"},
    {"{{ d|tojson }}|{{ d|tojson(indent=2) }}|{{ d|tojson(sort_keys=true) }}|{{ '\303\251\"\\n'|tojson }}|{{ '\303\251'|tojson(ensure_ascii=true) }}|{{ [1.5, none, true, 'a']|tojson }}|{{ {}|tojson }}|{{ []|tojson(indent=2) }}|{{ d|tojson(separators=(',', ':')) }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "{\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}|{\n  \"b\": 2,\n  \"a\": 1,\n  \"c\": [\n    1,\n    2,\n    {\n      \"x\": \"\303\251\"\n    }\n  ]\n}|{\"a\": 1, \"b\": 2, \"c\": [1, 2, {\"x\": \"\303\251\"}]}|\"\303\251\\\"\\n\"|\"\\u00e9\"|[1.5, null, true, \"a\"]|{}|[]|{\"b\":2,\"a\":1,\"c\":[1,2,{\"x\":\"\303\251\"}]}"},
    {"{{ {'a': {'b': [1, {'c': []}]}}|tojson(indent=4) }}",
     "{}",
     "{\n    \"a\": {\n        \"b\": [\n            1,\n            {\n                \"c\": []\n            }\n        ]\n    }\n}"},
    {"{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ 'xxhixx'.strip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a,b,c'.split(',', 1) }}|{{ 'a,b,c'.rsplit(',', 1) }}|{{ 'a b c'.split(none, 1) }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "Hello, World|Hello, World  |  Hello, World|hi|['a', 'b', '', 'c']|['a', 'b']|['a', 'b,c']|['a,b', 'c']|['a', 'b c']"},
    {"{{ s.startswith('  He') }}|{{ 'abc'.endswith('bc') }}|{{ 'abc'.startswith(('x', 'a')) }}|{{ 'abc'.upper() }}|{{ 'ABC'.lower() }}|{{ 'abcabc'.replace('b', 'X') }}|{{ 'abc'.find('c') }}|{{ 'abc'.find('z') }}|{{ 'abab'.count('ab') }}|{{ '-'.join(['a', 'b']) }}|{{ 'l1\\nl2'.splitlines() }}|{{ 'a1'.isalnum() }}|{{ '12'.isdigit() }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "True|True|True|ABC|abc|aXcaXc|2|-1|2|a-b|['l1', 'l2']|True|True"},
    {"{{ '\303\251 \303\274'.upper() }}|{{ 'hello world'.title() }}|{{ 'x'.capitalize() }}|{{ 'a</think>b</think>c'.split('</think>')[-1] }}|{{ '\\n\\nx'.lstrip('\\n') }}",
     "{}",
     "\303\211 \303\234|Hello World|X|c|x"},
    {"{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{{ d.keys()|list }}|{{ d.values()|list }}|{{ d.get('a') }}|{{ d.get('z') }}|{{ d.get('z', 9) }}|{{ d['c'][2]['x'] }}|{{ d.c[2].x }}|{{ d.c.0 }}|{{ d.zz }}|{{ d['zz'] }}|{{ lst[5] }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "b=2;a=1;c=[1, 2, {'x': '\303\251'}];|['b', 'a', 'c']|[2, 1, [1, 2, {'x': '\303\251'}]]|1|None|9|\303\251|\303\251|1|||"},
    {"{{ lst[1:] }}|{{ lst[:-1] }}|{{ lst[::-1] }}|{{ lst[::2] }}|{{ lst[-1] }}|{{ lst[-2:] }}|{{ 'h\303\251llo'[1:3] }}|{{ 'hello'[::-1] }}|{{ 'h\303\251llo'[-1] }}|{{ lst[5:] }}|{{ lst[2:0:-1] }}|{{ 'abcdef'[-4:-1:2] }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "[1, 2]|[3, 1]|[2, 1, 3]|[3, 2]|2|[1, 2]|\303\251l|olleh|o|[]|[2, 1]|ce"},
    {"{% for x in lst %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }},{% endfor %}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "1032TrueFalse3,2121FalseFalse3,3210FalseTrue3,"},
    {"{% for x in lst %}[{{ loop.previtem }}|{{ loop.nextitem }}]{% endfor %}|{% for x in lst %}{{ loop.cycle('a', 'b') }}{% endfor %}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "[|1][3|2][1|]|aba"},
    {"{% for x in [1, 1, 2, 1] %}{% if loop.changed(x) %}{{ x }}{% endif %}{% endfor %}|{% for p in people %}{{ loop.changed(p.age) }}{% endfor %}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "121|TrueTrueTrue"},
    {"{% for x in [] %}x{% else %}empty{% endfor %}|{% for x in lst if x > 1 %}{{ x }}:{{ loop.length }}{% endfor %}|{% for a, b in [[1, 2], [3, 4]] %}{{ a + b }}{% endfor %}|{% for c in 'h\303\251' %}<{{ c }}>{% endfor %}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "empty|3:22:2|37|<h><\303\251>"},
    {"{% for x in lst %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 2 %}{% break %}{% endif %}{{ x }}{% endfor %}|{% for k in d %}{{ k }}{% endfor %}|{% for x in zz %}no{% endfor %}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "3|bac|"},
    {"{% for p in people %}{% for t in p.tags|default([]) %}{{ loop.index }}{{ t }}{% endfor %}{{ loop.index }}{% endfor %}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "1a123"},
    {"{% for item in tree recursive %}{{ item.n }}{% if item.c %}({{ loop(item.c) }}){% endif %}{{ loop.depth }}{% endfor %}",
     "{\"tree\": [{\"n\": \"a\", \"c\": [{\"n\": \"b\", \"c\": [{\"n\": \"c\"}]}]}, {\"n\": \"d\"}]}",
     "a(b(c3)2)1d1"},
    {"{% set x = 1 %}{% for i in lst %}{% set x = i %}{% endfor %}{{ x }}|{% set ns = namespace(v=0) %}{% for i in lst %}{% set ns.v = ns.v + i %}{% endfor %}{{ ns.v }}|{% set a, b = 1, 2 %}{{ a }}{{ b }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "1|6|12"},
    {"{% if true %}{% set y = 5 %}{% endif %}{{ y }}|{% set blk %}in {{ n }}{% endset %}{{ blk }}|{% set up | upper %}abc{% endset %}{{ up }}|{% set ns = namespace(d=none) %}{{ ns.d is none }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "5|in 7|ABC|True"},
    {"{% for i in [1, 2] %}{% if loop.first %}{% set z = 'first' %}{% endif %}{{ z }};{% endfor %}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "first;;"},
    {"{% set messages = msgs[1:] %}{{ messages|length }}{{ messages[0].role }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "1assistant"},
    {"{% for x in [1] %}{{ a }}{% endfor %}{% set a = 2 %}|{{ a }}",
     "{\"a\": \"A\"}",
     "|2"},
    {"{{ a }}{% for x in [1] %}{{ a }}{% endfor %}{% set a = 2 %}|{{ a }}",
     "{\"a\": \"A\"}",
     "AA|2"},
    {"{% if true %}{{ a }}{% endif %}{% set a = 2 %}|{{ a }}",
     "{\"a\": \"A\"}",
     "A|2"},
    {"{% macro m() %}{{ a }}{% endmacro %}{{ m() }}{% set a = 2 %}{{ m() }}",
     "{\"a\": \"A\"}",
     "2"},
    {"{% macro m() %}{{ a }}{% endmacro %}{{ m() }}{% if false %}{% set a = 2 %}{% endif %}",
     "{\"a\": \"A\"}",
     "A"},
    {"{% for x in [1] %}{{ a }}{% set a = 3 %}{{ a }}{% endfor %}|{{ a }}",
     "{\"a\": \"A\"}",
     "A3|A"},
    {"{% with %}{{ a }}{% endwith %}{% set a = 2 %}",
     "{\"a\": \"A\"}",
     ""},
    {"{% for x in [1] %}{{ a }}{% endfor %}{% set a = a ~ 2 %}|{{ a }}",
     "{\"a\": \"A\"}",
     "A|A2"},
    {"{% set b = 1 %}{% for x in [1] %}{{ b }}{% endfor %}",
     "{}",
     "1"},
    {"{% for x in [1] %}{{ q }}{% endfor %}{% set q = 2 %}",
     "{}",
     ""},
    {"{% macro m() %}{{ a }}{% endmacro %}{% set a = 2 %}{{ m() }}",
     "{\"a\": \"A\"}",
     "2"},
    {"{% for x in [1, 2] %}{% set b %}{{ x }}{% if x == 1 %}{% continue %}{% endif %}{% endset %}[{{ b }}]{% endfor %}|{% set blk %}{% set inner = 1 %}{% endset %}{{ inner is defined }}|{% filter upper %}{% set f = 1 %}x{% endfilter %}{{ f is defined }}",
     "{}",
     "[2]|False|XFalse"},
    {"{% macro m() %}{{ a }}{% endmacro %}{% if a %}{% set a = 'B' %}{% else %}{% set a = 'C' %}{% endif %}{{ m() }}|{% macro k() %}{{ q }}{% endmacro %}{{ k() }}{% if true %}{% set q = 1 %}{% else %}{% set q = 2 %}{% endif %}{{ k() }}",
     "{\"a\": \"A\", \"q\": \"Q\"}",
     "B|Q1"},
    {"{% macro k() %}{{ q }}{% endmacro %}{{ k() }}{% if x == 1 %}{% set q = 1 %}{% elif x == 2 %}{% set q = 2 %}{% elif x == 3 %}{% set q = 4 %}{% else %}{% set q = 3 %}{% endif %}{{ k() }}|{% macro j() %}{{ r }}{% endmacro %}{{ j() }}{% if x == 1 %}{% set r = 1 %}{% elif x == 2 %}{% else %}{% set r = 3 %}{% endif %}{{ j() }}",
     "{\"q\": \"Q\", \"r\": \"R\", \"x\": 5}",
     "Q3|R3"},
    {"{% macro m(a, b='B', c=none) %}{{ a }}-{{ b }}-{{ c }}{% endmacro %}{{ m(1) }}|{{ m(1, 2) }}|{{ m(1, c=3) }}|{{ m('x') ~ '!' }}",
     "{}",
     "1-B-None|1-2-None|1-B-3|x-B-None!"},
    {"{% macro r(k) %}{% if k > 0 %}{{ k }}{{ r(k - 1) }}{% endif %}{% endmacro %}{{ r(3) }}|{% macro w() %}<{{ caller() }}>{% endmacro %}{% call w() %}inside {{ n }}{% endcall %}|{% macro w2() %}{{ caller(5) }}{% endmacro %}{% call(v) w2() %}v={{ v }}{% endcall %}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "321|<inside 7>|v=5"},
    {"{% macro g() %}{{ n }}{{ later }}{% endmacro %}{% set later = 'L' %}{{ g() }}|{% macro v() %}{{ varargs }}{{ kwargs }}{% endmacro %}{{ v(1, 2, k=3) }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "7L|(1, 2){'k': 3}"},
    {"a\n  {% if true %}\n    b\n  {% endif %}\nc\n",
     "{}",
     "a\n    b\nc"},
    {"a  {%- if true -%}  b  {%- endif -%}  c",
     "{}",
     "abc"},
    {"<{{- ' x ' -}}>  {{ 'y' }}  \n{{ 'z' }}\n",
     "{}",
     "< x >  y  \nz"},
    {"  {% if true %}x{% endif %}  \n  {# comment #}\ny{#- c2 -#}  z\n  {%+ if true %}k{% endif %}",
     "{}",
     "x  \nyz\n  k"},
    {"{% raw %}{{ not evaluated }}{% endraw %}|{%- raw -%}  {% x %}  {%- endraw %}|",
     "{}",
     "{{ not evaluated }}|{% x %}|"},
    {"line1\n{% for x in [1, 2] %}\n  item {{ x }}\n{% endfor %}\nend",
     "{}",
     "line1\n  item 1\n  item 2\nend"},
    {"a\r\nb {{ 'c' }}\r\n",
     "{}",
     "a\nb c"},
    {"a\302\240\342\200\203{%- if true -%}\343\200\200b{% endif %}|x\n\302\240 {% if true %}y{% endif %}|\342\200\250{{- 1 }}",
     "{}",
     "ab|x\ny|1"},
    {"{% filter upper %}abc {{ n }}{% endfilter %}|{% with q = 3, r = 4 %}{{ q * r }}{% endwith %}{{ q }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "ABC 7|12"},
    {"{{ range(3)|list }}|{{ range(1, 7, 2)|list }}|{{ range(3, 0, -1)|list }}|{{ dict(a=1)|tojson }}|{{ strftime_now('%d %b %Y') }}",
     "{}",
     "[0, 1, 2]|[1, 3, 5]|[3, 2, 1]|{\"a\": 1}|22 Nov 2026"},
    {"{% if []|select %}T{% endif %}|{{ [1, 2]|map('string')|first }}|{% for x in [1, 2]|select %}{{ loop.length }}{% endfor %}|{{ 3 in [3]|select }}|{{ ([1]|select)[0] }}|{{ [3, 1]|select|sort }}|{{ lst|batch(2)|list }}|{{ lst|batch(2, 0)|list }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "T|1|22|True||[1, 3]|[[3, 1], [2]]|[[3, 1], [2, 0]]"},
    {"{{ ['b', 'a']|title }}|{{ 'a-b c(d'|title }}|{{ 'x y'.title() }}|{{ {}|safe ~ 1 }}|{{ 3|round }}|{{ 2.5 is odd }}|{{ 3.0 is odd }}|{{ zz is sequence }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "['b', 'a']|A-B C(D|X Y|{}1|3|False|True|True"},
    {"{{ '%s-%d' % ('a', 3) }}|{{ '%5.2f|%-4d|%04d|%x|%X|%o|%e' % (3.14159, 7, 42, 255, 255, 8, 12345.678) }}|{{ '%(a)s=%(b)r' % {'a': 1, 'b': 'x'} }}|{{ '%s' % [1, 2] }}|{{ '%%|%c|%c' % (65, 'z') }}|{{ '%+d|% d|%.3s|%10s|%-6s|' % (5, 5, 'abcdef', 'r', 'l') }}|{{ 'abc' % [] }}|{{ '%.1f%%' % 12.34 }}|{{ '%i' % 3.9 }}|{{ '%x' % -31 }}|{{ '%g' % 0.0001 }}",
     "{}",
     "a-3| 3.14|7   |0042|ff|FF|10|1.234568e+04|1='x'|[1, 2]|%|A|z|+5| 5|abc|         r|l     ||abc|12.3%|3|-1f|0.0001"},
    {"{{ '{} and {}'.format('a', 1) }}|{{ '{1}{0}'.format('x', 'y') }}|{{ '{n}!'.format(n=5) }}|{{ '{{}}'.format() }}|{{ '{:>5}|{:<5}|{:^5}|{:*^7}'.format('a', 'b', 'c', 'd') }}|{{ '{:.2f}|{:5d}|{:05d}|{:x}|{:+d}'.format(3.14159, 42, 42, 255, 3) }}|{{ '{!r}'.format('q') }}|{{ '{:.3}'.format('abcdef') }}|{{ '{}'.format([1, 'a']) }}|{{ '{:.1%}'.format(0.25) }}|{{ '{}'.format(2.0) }}|{{ '{:.2}'.format(3.14159) }}",
     "{}",
     "a and 1|yx|5!|{}|    a|b    |  c  |***d***|3.14|   42|00042|ff|+3|'q'|abc|[1, 'a']|25.0%|2.0|3.1"},
    {"{{ '%-5d|%05.1f|%+05d' % (-3, -2.5, 7) }}|{{ '{:=+6d}|{:<05}|{:^6.1f}'.format(-3, 7, 2.25) }}|{{ '%s' % none }}|{{ 'x=%s' % d }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}]}",
     "-3   |-02.5|+0007|-    3|70000| 2.2  |None|x={'b': 2, 'a': 1, 'c': [1, 2, {'x': '\303\251'}]}"},
    {"{% for m in msgs %}<|{{ m['role'] }}|>{{ m.content }}{% if not loop.last %}\n{% endif %}{% endfor %}{{ eos_token }}",
     "{\"msgs\": [{\"role\": \"user\", \"content\": \"Hi\"}, {\"role\": \"assistant\", \"content\": \"Yo\"}], \"d\": {\"b\": 2, \"a\": 1, \"c\": [1, 2, {\"x\": \"\303\251\"}]}, \"s\": \"  Hello, World  \", \"n\": 7, \"f\": 2.5, \"lst\": [3, 1, 2], \"words\": [\"b\", \"A\", \"c\"], \"none\": null, \"t\": true, \"people\": [{\"name\": \"ann\", \"age\": 30, \"tags\": [\"a\"]}, {\"name\": \"bob\", \"age\": 25}, {\"name\": \"cy\", \"age\": 30}], \"eos_token\": \"</s>\"}",
     "<|user|>Hi<|assistant|>Yo</s>"},
};

typedef struct ecase {
    const char *tmpl, *context, *message;
} ecase;

static const ecase errors[] = {
    {"{{ raise_exception('boom ' ~ 1) }}", "{}", "boom 1"}, /* jinja2: Exception: boom 1 */
    {"{{ x|nosuchfilter }}", "{}", "unknown filter 'nosuchfilter'"}, /* jinja2: TemplateAssertionError: No filter named 'nosuchfilter'. */
    {"{{ x is nosuchtest }}", "{}", "unknown test 'nosuchtest'"}, /* jinja2: TemplateAssertionError: No test named 'nosuchtest'. */
    {"{% include 'x' %}", "{}", "unsupported tag 'include'"}, /* jinja2: TypeError: no loader for this environment specified */
    {"{% break %}", "{}", "'break' outside a loop"}, /* jinja2: SyntaxError: 'break' outside loop (<template>, line 11) */
    {"{% for x in [1] %}{% macro m() %}{% continue %}{% endmacro %}{% endfor %}", "{}", "'continue' outside a loop"}, /* jinja2: SyntaxError: 'continue' not properly in loop (<template>, line 18) */
    {"{% extends 'x' %}", "{}", "unsupported tag 'extends'"}, /* jinja2: TypeError: no loader for this environment specified */
    {"{% if true %}open", "{}", "never closed"}, /* jinja2: TemplateSyntaxError: Unexpected end of template. Jinja was looking for the following tags: 'elif' or */
    {"{% endif %}", "{}", "unexpected 'endif'"}, /* jinja2: TemplateSyntaxError: Encountered unknown tag 'endif'. */
    {"{{ 1 +  }}", "{}", "unexpected '}}'"}, /* jinja2: TemplateSyntaxError: unexpected 'end of print statement' */
    {"{{ 'abc }}", "{}", "unterminated string"}, /* jinja2: TemplateSyntaxError: unexpected char "'" at 3 */
    {"{{ x.y }}", "{}", "'x' is undefined"}, /* jinja2: UndefinedError: 'x' is undefined */
    {"{{ x + 1 }}", "{}", "'x' is undefined"}, /* jinja2: UndefinedError: 'x' is undefined */
    {"{{ 1 + 'a' }}", "{}", "unsupported operand type(s) for +: 'int' and 'str'"}, /* jinja2: TypeError: unsupported operand type(s) for +: 'int' and 'str' */
    {"{{ 1 // 0 }}", "{}", "division or modulo by zero"}, /* jinja2: ZeroDivisionError: integer division or modulo by zero */
    {"{{ [1].append(2) }}", "{}", "unsafe"}, /* jinja2: SecurityError: access to attribute 'append' of 'list' object is unsafe. */
    {"{% set a, b = [1] %}", "{}", "not enough values to unpack"}, /* jinja2: ValueError: not enough values to unpack (expected 2, got 1) */
    {"{% set x.y = 1 %}", "{\"x\": {}}", "namespace"}, /* jinja2: TemplateRuntimeError: cannot assign attribute on non-namespace object */
    {"{{ none|length }}", "{}", "has no len()"}, /* jinja2: TypeError: object of type 'NoneType' has no len() */
    {"{{ nofunc() }}", "{}", "'nofunc' is undefined"}, /* jinja2: UndefinedError: 'nofunc' is undefined */
    {"{{ 1 < 'a' }}", "{}", "'<' not supported"}, /* jinja2: TypeError: '<' not supported between instances of 'int' and 'str' */
    {"{% for x in 5 %}{% endfor %}", "{}", "not iterable"}, /* jinja2: TypeError: 'int' object is not iterable */
    {"{{ x|tojson }}", "{}", "not JSON serializable"}, /* jinja2: TypeError: Object of type Undefined is not JSON serializable */
    {"{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", "{}", "nested more than"}, /* jinja2: RecursionError: maximum recursion depth exceeded */
    {"{{ 'a' * 100000000000 }}", "{}", "memory exceeds"}, /* jinja2: MemoryError:  */
    {"{{ 'ab' % 1 }}", "{}", "not all arguments converted"}, /* jinja2: TypeError: not all arguments converted during string formatting */
    {"{{ '%s %s' % (1,) }}", "{}", "not enough arguments"}, /* jinja2: TypeError: not enough arguments for format string */
    {"{{ '%d' % 'x' }}", "{}", "a real number is required"}, /* jinja2: TypeError: %d format: a real number is required, not str */
    {"{{ '{} {}'.format(1) }}", "{}", "Replacement index 1 out of range"}, /* jinja2: IndexError: tuple index out of range */
    {"{{ '{x}'.format(y=1) }}", "{}", "'x'"}, /* jinja2: KeyError: 'x' */
    {"{{ '{6x}'.format(1) }}", "{}", "bad replacement field"}, /* jinja2: KeyError: '6x' */
    {"{{ '%99999999999999999999d' % 1 }}", "{}", "too big"}, /* jinja2: ValueError: width too big */
    {"{{ '{:99999999999999999999}'.format(1) }}", "{}", "too big"}, /* jinja2: ValueError: Too many decimal digits in format string */
    {"{{ [1]|select|length }}", "{}", "object of type 'generator' has no len()"}, /* jinja2: TypeError: object of type 'generator' has no len() */
    {"{{ [1]|select|last }}", "{}", "not reversible"}, /* jinja2: TypeError: 'generator' object is not reversible */
    {"{{ [1]|select|tojson }}", "{}", "Object of type generator is not JSON serializable"}, /* jinja2: TypeError: Object of type generator is not JSON serializable */
    {"{{ n[1:] }}", "{\"n\": 5}", "'int' object is not subscriptable"}, /* jinja2: TypeError: 'int' object is not subscriptable */
    {"{{ {'a': 1 }", "{}", "missing '}}'"}, /* jinja2: TemplateSyntaxError: unexpected end of template, expected 'end of print statement'. */
    {"x\n  {{ foo(1,, 2) }}", "{}", "template:2:"}, /* jinja2: TemplateSyntaxError: unexpected ',' */
};

/* 0 and *out on success; -1 and err otherwise */
static int render(const char *tmpl, const char *context, const halo_template_options *opts, char **out,
                  size_t *len, halo_error *err) {
    halo_template *t = NULL;
    *out = NULL;
    halo_error_clear(err);
    if (halo_template_compile(tmpl, strlen(tmpl), &t, err)) return -1;
    cJSON *ctx = context ? cJSON_Parse(context) : NULL;
    int rc = halo_template_render(t, ctx, opts, out, len, err);
    cJSON_Delete(ctx);
    halo_template_free(t);
    return rc ? -1 : 0;
}

static void test_cases(void) {
    /* 2026-11-22 08:00 UTC: the same date in any time zone from UTC-8 to UTC+15 */
    halo_template_options opts = {.now = 1795348800};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *out;
        size_t len;
        halo_error err = {0};
        int rc = render(cases[i].tmpl, cases[i].context, &opts, &out, &len, &err);
        bool ok = rc == 0 && len == strlen(cases[i].expected) && !memcmp(out, cases[i].expected, len);
        CHECK_MSG(ok, "case %zu: %s\n  template: %s\n  want: %s\n  got:  %s", i, rc ? err.msg : "differs",
                  cases[i].tmpl, cases[i].expected, out ? out : "(none)");
        free(out);
    }
}

static void test_errors(void) {
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++) {
        char *out;
        size_t len;
        halo_error err = {0};
        int rc = render(errors[i].tmpl, errors[i].context, NULL, &out, &len, &err);
        CHECK_MSG(rc != 0 && strstr(err.msg, errors[i].message) && !strchr(err.msg, '\n'),
                  "error case %zu: %s: want '%s', got rc %d '%s'", i, errors[i].tmpl, errors[i].message, rc,
                  err.msg);
        CHECK(rc == 0 || (out == NULL && !strncmp(err.msg, "template", 8)));
        free(out);
    }
}

static void expect_error(const char *tmpl, const halo_template_options *opts, const char *msg, int status) {
    char *out;
    size_t len;
    halo_error err = {0};
    int rc = render(tmpl, "{}", opts, &out, &len, &err);
    CHECK_MSG(rc != 0 && strstr(err.msg, msg) && err.status == status, "%s: want '%s' (%d), got '%s' (%d)", tmpl,
              msg, status, err.msg, err.status);
    free(out);
}

static void test_limits(void) {
    halo_template_options o = {.max_output = 1000};
    expect_error("{% for i in range(2000) %}x{% endfor %}", &o, "output exceeds 1000 bytes", HALO_ERR_RANGE);
    expect_error("{% macro m() %}{% for i in range(2000) %}x{% endfor %}{% endmacro %}{{ m() }}", &o,
                 "output exceeds 1000 bytes", HALO_ERR_RANGE);
    halo_template_options s = {.max_steps = 10000};
    expect_error("{% for i in range(100000) %}{% endfor %}", &s, "more than 10000 evaluation steps", HALO_ERR_RANGE);
    /* nested loops that would run 10^9 times end at the step limit */
    halo_template_options s2 = {.max_steps = 1000000};
    expect_error("{% set r = range(1000) %}{% for a in r %}{% for b in r %}{% for c in r %}{% set x = a ~ b %}"
                 "{% endfor %}{% endfor %}{% endfor %}",
                 &s2, "more than 1000000 evaluation steps", HALO_ERR_RANGE);
    halo_template_options d = {.max_depth = 5};
    expect_error("{% macro r(k) %}{{ r(k + 1) }}{% endmacro %}{{ r(0) }}", &d, "nested more than 5 deep",
                 HALO_ERR_RANGE);
    halo_template_options m = {.max_memory = 1 << 20};
    expect_error("{% set ns = namespace(s='x') %}{% for i in range(100) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
                 &m, "memory exceeds", HALO_ERR_RANGE);
    expect_error("{{ range(10000000)|list }}", NULL, "range() of more than", HALO_ERR_RANGE);
    /* values nested without bound: comparisons and output end with an error or an
     * answer, never a stack overflow */
#define DEEP "{% set ns = namespace(x=1, y=1) %}{% for i in range(20000) %}{% set ns.x = [ns.x] %}" \
             "{% set ns.y = [ns.y] %}{% endfor %}"
    expect_error(DEEP "{{ ns.x < ns.y }}", NULL, "nested too deeply to compare", HALO_ERR_RANGE);
    expect_error(DEEP "{{ ns.x|tojson }}", NULL, "nested too deeply", HALO_ERR_FORMAT);
    {
        char *out;
        size_t len;
        halo_error err = {0};
        CHECK(render(DEEP "{{ ns.x == ns.y }}|{{ ns.x == ns.x }}|{{ ns.x in [ns.y] }}|{{ ns.x|string|length }}", "{}",
                     NULL, &out, &len, &err) == 0);
        CHECK_MSG(out && !strcmp(out, "False|True|False|205"), "%s", out ? out : err.msg);
        free(out);
    }
#undef DEEP
    /* deep nesting is refused at parse time, not by overflowing the stack */
    char deep[4096];
    size_t n = 0;
    n += (size_t)snprintf(deep + n, sizeof deep - n, "{{ ");
    for (int k = 0; k < 1000; k++) deep[n++] = '(';
    deep[n++] = '1';
    for (int k = 0; k < 1000; k++) deep[n++] = ')';
    snprintf(deep + n, sizeof deep - n, " }}");
    expect_error(deep, NULL, "nested too deeply", HALO_ERR_FORMAT);
    n = 0;
    for (int k = 0; k < 300; k++) n += (size_t)snprintf(deep + n, sizeof deep - n, "{%% if 1 %%}");
    expect_error(deep, NULL, "nested too deeply", HALO_ERR_UNSUPPORTED);
}

static void test_api(void) {
    halo_error err = {0};
    halo_template *t = NULL;
    /* one compile, many renders, different contexts; NULL context = no variables */
    CHECK(halo_template_compile("{{ a|default('none') }}", 23, &t, &err) == 0);
    const char *ctxs[] = {"{\"a\": 1}", "{\"a\": \"x\"}", NULL};
    const char *want[] = {"1", "x", "none"};
    for (int k = 0; k < 3; k++) {
        cJSON *c = ctxs[k] ? cJSON_Parse(ctxs[k]) : NULL;
        char *out = NULL;
        size_t len = 99;
        CHECK(halo_template_render(t, c, NULL, &out, &len, &err) == 0);
        CHECK(out && len == strlen(want[k]) && !strcmp(out, want[k]));
        free(out);
        cJSON_Delete(c);
    }
    /* a context that is not an object */
    cJSON *arr = cJSON_Parse("[1]");
    char *out = NULL;
    CHECK(halo_template_render(t, arr, NULL, &out, NULL, &err) == HALO_ERR_ARG && out == NULL);
    CHECK(strstr(err.msg, "JSON object") != NULL);
    cJSON_Delete(arr);
    halo_template_free(t);
    /* empty template, empty output (a valid, empty string) */
    halo_error_clear(&err);
    CHECK(halo_template_compile("", 0, &t, &err) == 0);
    size_t len = 99;
    CHECK(halo_template_render(t, NULL, NULL, &out, &len, &err) == 0 && out && len == 0 && out[0] == '\0');
    free(out);
    halo_template_free(t);
    /* template text with NUL bytes and invalid UTF-8 is data like any other */
    static const char odd[] = "a\0b\xff{{ 'c' }}";
    halo_error_clear(&err);
    CHECK(halo_template_compile(odd, sizeof odd - 1, &t, &err) == 0);
    CHECK(halo_template_render(t, NULL, NULL, &out, &len, &err) == 0 && len == 5 && !memcmp(out, "a\0b\xff" "c", 5));
    free(out);
    halo_template_free(t);
    /* the position in errors: line and column of the offending token */
    halo_error_clear(&err);
    CHECK(halo_template_compile("ab\n  {{ x | nofilter }}", 23, &t, &err) == 0);
    CHECK(halo_template_render(t, NULL, NULL, &out, NULL, &err) != 0);
    CHECK_MSG(!strcmp(err.msg, "template:2:10: unknown filter 'nofilter'"), "%s", err.msg);
    halo_template_free(t);
    halo_error_clear(&err);
    CHECK(halo_template_compile("{% for %}", 9, &t, &err) != 0 && t == NULL);
    CHECK_MSG(!strcmp(err.msg, "template:1:8: expected a variable name, got '%}'"), "%s", err.msg);
}

int main(void) {
    test_cases();
    test_errors();
    test_limits();
    test_api();
    return halo_test_finish("tokenizer/template");
}
