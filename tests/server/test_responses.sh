#!/usr/bin/env bash
# POST /v1/responses (OpenAI's Responses API) on the shipped model (kdoc-moe): a plain reply's
# shape; a streamed one's events (types, order, sequence numbers, ids) holding the same text;
# a forced function call, plain and streamed; text.format json_schema output that parses and
# follows the schema; a function call and its output passed back as input; reasoning items with
# a template that thinks; and the refusals (unknown fields, previous_response_id, bad input).
source "$(dirname "$0")/lib.sh"
if ! command -v node >/dev/null; then echo "SKIPPED: node is needed to check the replies"; exit 77; fi
MODEL="${HALO_SOURCE_DIR:-$(dirname "$0")/../..}/models/kdoc-moe-bf16.gguf"
[ -f "$MODEL" ] || { echo "SKIPPED: $MODEL not found"; exit 77; }

# check_reply KIND [ARG]: node checks $TMP/body (a Response object, or an SSE stream of events)
check_reply() {
    checks=$((checks + 1))
    node - "$1" "$TMP/body" "${2:-}" <<'EOF' || bad "$1 reply: $(head -c 600 "$TMP/body")"
const [kind, file, arg] = process.argv.slice(2);
const raw = require('fs').readFileSync(file, 'utf8');
const fail = (m) => { console.error(kind + ': ' + m); process.exit(1); };
const texts = (r) => r.output.filter((o) => o.type === 'message')
  .flatMap((o) => o.content).filter((c) => c.type === 'output_text').map((c) => c.text).join('');
// a Response object's shape
const response = (r, status) => {
  if (r.object !== 'response' || !/^resp_/.test(r.id)) fail('object/id');
  if (!Number.isInteger(r.created_at) || typeof r.model !== 'string') fail('created_at/model');
  if (status && r.status !== status) fail(`status ${r.status}, want ${status}`);
  if (r.status === 'incomplete' && r.incomplete_details?.reason !== 'max_output_tokens') fail('incomplete_details');
  if (r.status === 'completed' && r.incomplete_details !== null) fail('incomplete_details not null');
  if (r.error !== null || !Array.isArray(r.tools) || r.tool_choice === undefined ||
      typeof r.parallel_tool_calls !== 'boolean' || r.store !== false) fail('the settings');
  if (!Array.isArray(r.output)) fail('output');
  for (const o of r.output) {
    if (typeof o.id !== 'string' || !o.status) fail('item id/status');
    if (o.type === 'message') {
      if (o.role !== 'assistant' || !/^msg_/.test(o.id)) fail('message role/id');
      for (const c of o.content)
        if (c.type !== 'output_text' || typeof c.text !== 'string' || !Array.isArray(c.annotations)) fail('output_text');
    } else if (o.type === 'function_call') {
      if (!/^fc_/.test(o.id) || !/^call_/.test(o.call_id) || typeof o.name !== 'string' ||
          typeof o.arguments !== 'string') fail('function_call fields');
    } else if (o.type === 'reasoning') {
      if (!/^rs_/.test(o.id) || !Array.isArray(o.summary) || o.summary.length ||
          o.content.length !== 1 || o.content[0].type !== 'reasoning_text') fail('reasoning item');
    } else fail('item type ' + o.type);
  }
  const u = r.usage;
  if (status !== 'in_progress') {
    if (!u || !(u.input_tokens > 0) || u.total_tokens !== u.input_tokens + u.output_tokens ||
        !Number.isInteger(u.input_tokens_details?.cached_tokens) ||
        !Number.isInteger(u.output_tokens_details?.reasoning_tokens)) fail('usage');
  }
  return r;
};
// an SSE stream: `event:` lines name the data's type; sequence numbers 0, 1, ...; the events of
// each item in order; the deltas join to the final response's text
const stream = () => {
  const events = raw.split('\n\n').filter((b) => b.trim()).map((b) => {
    const ev = /^event: (.*)$/m.exec(b), data = /^data: (.*)$/m.exec(b);
    if (!ev || !data) fail('an event without event: or data: lines: ' + b);
    const d = JSON.parse(data[1]);
    if (d.type !== ev[1]) fail(`event: ${ev[1]} but type ${d.type}`);
    return d;
  });
  events.forEach((e, i) => { if (e.sequence_number !== i) fail(`sequence_number ${e.sequence_number} at ${i}`); });
  const types = events.map((e) => e.type);
  if (types[0] !== 'response.created' || types[1] !== 'response.in_progress') fail('start: ' + types.slice(0, 2));
  response(events[0].response, 'in_progress');
  const last = events[events.length - 1];
  if (!['response.completed', 'response.incomplete'].includes(last.type)) fail('end: ' + last.type);
  const final = response(last.response, last.type === 'response.completed' ? 'completed' : 'incomplete');
  // walk the items: added, (part added, deltas, done, part done | arguments delta, done), item done
  let i = 2, index = 0;
  const deltas = { message: '', reasoning: '' };
  while (i < events.length - 1) {
    const a = events[i++];
    if (a.type !== 'response.output_item.added' || a.output_index !== index) fail(`item ${index}: ${a.type}`);
    const item = a.item, id = item.id;
    const at = (e, t) => { if (e.type !== t || e.output_index !== index || (e.item_id !== undefined && e.item_id !== id)) fail(`item ${index}: ${e.type}, want ${t}`); };
    if (item.type === 'function_call') {
      at(events[i++], 'response.function_call_arguments.delta');
      const done = events[i++];
      at(done, 'response.function_call_arguments.done');
      if (done.name !== item.name || done.arguments !== events[i - 2].delta) fail('arguments done');
    } else {
      const r = item.type === 'reasoning';
      const part = events[i++];
      at(part, 'response.content_part.added');
      if (part.content_index !== 0 || part.part.type !== (r ? 'reasoning_text' : 'output_text')) fail('part added');
      let text = '';
      while (events[i].type === (r ? 'response.reasoning_text.delta' : 'response.output_text.delta')) {
        at(events[i], events[i].type);
        text += events[i++].delta;
      }
      const td = events[i++];
      at(td, r ? 'response.reasoning_text.done' : 'response.output_text.done');
      if (td.text !== text) fail('text done != deltas');
      const pd = events[i++];
      at(pd, 'response.content_part.done');
      if (pd.part.text !== text) fail('part done text');
      deltas[item.type] += text;
    }
    const d = events[i++];
    at(d, 'response.output_item.done');
    if (JSON.stringify(d.item) !== JSON.stringify(final.output[index])) fail(`item ${index} done != final output`);
    index++;
  }
  if (index !== final.output.length) fail('items in the stream != final output');
  if (deltas.message !== texts(final)) fail('deltas != final text');
  return { final, types };
};
if (kind === 'plain') {
  const r = response(JSON.parse(raw), arg || undefined);
  if (r.output.length !== 1 || r.output[0].type !== 'message') fail('one message');
  if (!(r.usage.output_tokens > 0)) fail('output_tokens');
  require('fs').writeFileSync(file + '.text', texts(r));
} else if (kind === 'stream') {
  const { final } = stream();
  if (arg !== undefined && arg !== '' && texts(final) !== require('fs').readFileSync(arg, 'utf8')) fail('streamed text != plain text');
} else if (kind === 'tool' || kind === 'tool_stream') {
  const r = kind === 'tool' ? response(JSON.parse(raw), 'completed') : stream().final;
  const calls = r.output.filter((o) => o.type === 'function_call');
  if (calls.length !== 1 || calls[0].name !== 'get_weather' || calls[0].status !== 'completed') fail('one get_weather call');
  const a = JSON.parse(calls[0].arguments);
  if (typeof a.city !== 'string') fail('arguments');
} else if (kind === 'schema') {
  const r = response(JSON.parse(raw), 'completed');
  const p = JSON.parse(texts(r));
  if (typeof p !== 'object' || p === null || Array.isArray(p)) fail('not an object');
  if (Object.keys(p).some((k) => !['name', 'age'].includes(k))) fail('extra key');
  if (typeof p.name !== 'string' || p.name.length > 24 || !Number.isInteger(p.age)) fail('fields');
} else if (kind === 'reasoning') {
  const r = response(JSON.parse(raw));
  if (r.output[0]?.type !== 'reasoning' || !r.output[0].content[0].text) fail('a reasoning item first');
  if (!r.output.some((o) => o.type === 'message')) fail('then a message');
  if (!(r.usage.output_tokens_details.reasoning_tokens > 0)) fail('reasoning_tokens');
} else if (kind === 'reasoning_stream') {
  const { types } = stream();
  const rd = types.indexOf('response.reasoning_text.delta'), od = types.indexOf('response.output_text.delta');
  if (rd < 0 || od < rd) fail('reasoning deltas, then text deltas');
} else if (kind === 'tokens') {
  const r = response(JSON.parse(raw));
  require('fs').writeFileSync(file + '.tokens', String(r.usage.input_tokens));
}
EOF
}

start_server -np 2 -c 4096 -t 1
TOOLS='"tools":[{"type":"function","name":"get_weather","description":"Weather of a city","parameters":{"type":"object","properties":{"city":{"type":"string","maxLength":20},"unit":{"enum":["c","f"]}},"required":["city"]},"strict":true}]'

# plain: one message, incomplete at max_output_tokens; then the same request streamed
http POST /v1/responses '{"model":"kdoc","input":"What does the scheduler do?","max_output_tokens":8,"temperature":0}'
expect 200 '"object":"response"' '"status":"incomplete"'
check_reply plain incomplete
cp "$TMP/body.text" "$TMP/plain.text"
http POST /v1/responses '{"input":"What does the scheduler do?","max_output_tokens":8,"temperature":0,"stream":true}'
expect 200 'event: response.created' 'event: response.output_text.delta' 'event: response.incomplete'
check_reply stream "$TMP/plain.text"
# the input as items, with instructions; the /responses alias
http POST /responses '{"instructions":"Answer briefly.","input":[{"role":"developer","content":"Kernel docs only."},{"type":"message","role":"user","content":[{"type":"input_text","text":"What is a "},{"type":"input_text","text":"spinlock?"}]}],"max_output_tokens":4,"metadata":{"run":"test"},"store":true,"user":"u1"}'
expect 200 '"metadata":{"run":"test"}' '"instructions":"Answer briefly."' '"user":"u1"' '"store":false'
check_reply plain

# a forced function call (one: parallel_tool_calls false), plain and streamed
http POST /v1/responses "{\"input\":\"Weather in Paris?\",$TOOLS,\"tool_choice\":{\"type\":\"function\",\"name\":\"get_weather\"},\"parallel_tool_calls\":false,\"max_output_tokens\":100,\"temperature\":1,\"seed\":1}"
expect 400 '"param":"seed"' # Responses has no seed: named, not ignored
http POST /v1/responses "{\"input\":\"Weather in Paris?\",$TOOLS,\"tool_choice\":{\"type\":\"function\",\"name\":\"get_weather\"},\"parallel_tool_calls\":false,\"max_output_tokens\":100,\"temperature\":0}"
expect 200 '"type":"function_call"' '"name":"get_weather"'
check_reply tool
http POST /v1/responses "{\"input\":\"Weather in Paris?\",$TOOLS,\"tool_choice\":\"required\",\"parallel_tool_calls\":false,\"max_output_tokens\":100,\"temperature\":0,\"stream\":true}"
expect 200 'event: response.function_call_arguments.delta' 'event: response.function_call_arguments.done' 'event: response.completed'
check_reply tool_stream
# the call and its output passed back: a longer prompt, and an answer
http POST /v1/responses "{\"input\":\"Weather in Paris?\",$TOOLS,\"max_output_tokens\":2}"
expect 200; check_reply tokens; n1=$(cat "$TMP/body.tokens")
http POST /v1/responses "{\"input\":[{\"role\":\"user\",\"content\":\"Weather in Paris?\"},{\"type\":\"function_call\",\"call_id\":\"call_1\",\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"},{\"type\":\"function_call_output\",\"call_id\":\"call_1\",\"output\":\"18 C and sunny\"}],$TOOLS,\"max_output_tokens\":2}"
expect 200; check_reply tokens; n2=$(cat "$TMP/body.tokens")
check "the call and its output are in the prompt ($n1 < $n2 tokens)" [ "$n1" -lt "$n2" ]

# text.format json_schema: the text parses and follows the schema, at several seeds' worth of
# sampling (temperature 1 through the schema's grammar)
SCHEMA='{"type":"object","properties":{"name":{"type":"string","maxLength":24},"age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false}'
for t in 0 1 1; do
    http POST /v1/responses "{\"input\":\"Describe a pet as JSON.\",\"max_output_tokens\":300,\"temperature\":$t,\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"pet\",\"strict\":true,\"schema\":$SCHEMA}}}"
    expect 200 '"format":{"type":"json_schema"'
    check_reply schema
done

# refusals: a 400 naming the field
http POST /v1/responses '{"input":"x","bogus":1}'; expect 400 '"param":"bogus"' '"type":"invalid_request_error"'
http POST /v1/responses '{"input":"x","previous_response_id":"resp_abc"}'; expect 400 '"param":"previous_response_id"'
http POST /v1/responses '{"input":"x","messages":[]}'; expect 400 '"param":"messages"'
http POST /v1/responses '{"model":"m"}'; expect 400 '"param":"input"'
http POST /v1/responses '{"input":42}'; expect 400 '"param":"input"'
http POST /v1/responses '{"input":[{"role":"user","content":[{"type":"input_image","image_url":"http://x"}]}]}'; expect 400 '"param":"input[0].content"'
http POST /v1/responses '{"input":[{"type":"item_reference","id":"msg_1"}]}'; expect 400 '"param":"input[0]"'
http POST /v1/responses '{"input":[{"role":"tool","content":"x"}]}'; expect 400 '"param":"input[0]"'
http POST /v1/responses '{"input":"x","tools":[{"type":"web_search"}]}'; expect 400 '"param":"tools"'
http POST /v1/responses '{"input":"x","max_output_tokens":"many"}'; expect 400 '"param":"max_output_tokens"'
http POST /v1/responses '{"input":"x","text":{"format":{"type":"json_schema","name":"n","schema":{"type":"string","pattern":"a+"}}}}'; expect 400 '"param":"text.format"' 'pattern'
http POST /v1/responses '{"input":"x","tool_choice":{"type":"function","name":"nope"},"tools":[{"type":"function","name":"f"}]}'; expect 400 '"param":"tool_choice"'
http POST /v1/responses 'not json'; expect 400 'not valid JSON'
http GET /v1/responses; expect 405
stop_server

# a template that thinks (Qwen3.5's opens <think>; the budget closes it after 4 tokens): a
# reasoning item, then the message; streamed, reasoning deltas come first; effort none: no
# reasoning item
start_server -np 1 -c 2048 -t 1 --reasoning-budget 4 --chat-template-file "$FIX/templates/Qwen3.5-4B.jinja"
http POST /v1/responses '{"input":"What is RCU?","max_output_tokens":12,"temperature":0}'
expect 200 '"type":"reasoning"' '"type":"reasoning_text"'
check_reply reasoning
http POST /v1/responses '{"input":"What is RCU?","max_output_tokens":12,"temperature":0,"stream":true}'
expect 200 'event: response.reasoning_text.delta' 'event: response.reasoning_text.done'
check_reply reasoning_stream
# the reasoning passed back with the answer: accepted (the template renders it or drops it)
http POST /v1/responses '{"input":[{"role":"user","content":"What is RCU?"},{"type":"reasoning","id":"rs_1","summary":[],"content":[{"type":"reasoning_text","text":"It is a lock."}]},{"role":"assistant","content":[{"type":"output_text","text":"Read-copy update."}]},{"role":"user","content":"More?"}],"max_output_tokens":4,"reasoning":{"effort":"none"}}'
expect 200 '"effort":"none"'
checks=$((checks + 1)); has '"type":"reasoning"' && bad "a reasoning item with effort none"
stop_server
finish
