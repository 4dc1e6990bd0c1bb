// The official `openai` npm client against `halo serve`: models, a plain chat, a
// streamed chat with usage, a tool call round trip, structured output (json_schema strict,
// json_object), a forced tool call (and an unknown one refused), legacy completions, log-probabilities
// (chat plain and streamed, legacy), the Responses API (plain, streamed, the stream helper, a
// forced function call passed back), n choices (plain, streamed, too many), echo with
// logprobs, models.retrieve, embeddings (HALO_EMBEDDINGS set: the server has --embeddings),
// and the errors the client surfaces (400 with param, 401, 404). Exits non-zero on a failure.
'use strict';
const OpenAI = require(require("path").resolve(process.env.OPENAI_MODULE));
const base = process.env.HALO_URL + '/v1';
const client = new OpenAI({ baseURL: base, apiKey: 'sekrit', maxRetries: 0, timeout: 60000 });
let failures = 0, checks = 0;
function check(cond, what) {
  checks++;
  if (!cond) { failures++; console.log('FAIL: ' + what); }
}

const tools = [{
  type: 'function',
  function: {
    name: 'get_weather', description: 'Weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
}];

async function main() {
  const models = await client.models.list();
  const model = models.data[0].id;
  check(typeof model === 'string' && model.length > 0, 'models.list gives an id');

  // plain chat
  const r = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 6, temperature: 0,
  });
  check(r.object === 'chat.completion', 'object chat.completion');
  check(r.choices[0].message.role === 'assistant', 'assistant role');
  check(typeof r.choices[0].message.content === 'string', 'content is a string');
  check(['stop', 'length'].includes(r.choices[0].finish_reason), 'finish_reason ' + r.choices[0].finish_reason);
  check(r.usage.completion_tokens <= 6 && r.usage.prompt_tokens > 0, 'usage counts');

  // streamed chat: the text joins to what the plain call gave (greedy, same prompt)
  const stream = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 6, temperature: 0,
    stream: true, stream_options: { include_usage: true },
  });
  let text = '', finish = null, usage = null, n = 0;
  for await (const chunk of stream) {
    n++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta && c.delta.content) text += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  check(n >= 2, 'several chunks');
  check(text === r.choices[0].message.content, `streamed text '${text}' == plain '${r.choices[0].message.content}'`);
  check(finish === r.choices[0].finish_reason, 'streamed finish_reason');
  check(usage && usage.completion_tokens === r.usage.completion_tokens, 'usage chunk');
  check(usage && usage.prompt_tokens_details && usage.prompt_tokens_details.cached_tokens > 0,
        'the second identical prompt comes from the cache');

  // tool call round trip: the tools go into the prompt; the call and its result come back
  const t1 = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools, tool_choice: 'auto',
    max_tokens: 8,
  });
  check(t1.choices[0].message.role === 'assistant', 'tool request answered');
  const t2 = await client.chat.completions.create({
    model, tools, max_tokens: 8, stream: false,
    messages: [
      { role: 'user', content: 'Weather in Paris?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function',
        function: { name: 'get_weather', arguments: JSON.stringify({ city: 'Paris' }) } }] },
      { role: 'tool', tool_call_id: 'call_1', content: '18 C and sunny' },
    ],
  });
  check(typeof t2.choices[0].message.content === 'string', 'answer after the tool result');
  check(t2.usage.prompt_tokens > t1.usage.prompt_tokens, 'the tool turn is in the prompt');

  // structured output (chat): a strict json_schema reply parses and follows the schema;
  // json_object gives an object
  const schema = {
    type: 'object', additionalProperties: false, required: ['name', 'size'],
    properties: { name: { type: 'string', maxLength: 12 }, size: { type: 'integer', minimum: 0, maximum: 999 } },
  };
  const so = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Describe the page cache as JSON.' }], max_tokens: 60,
    temperature: 0, response_format: { type: 'json_schema', json_schema: { name: 'thing', schema, strict: true } },
  });
  let obj = null;
  try { obj = JSON.parse(so.choices[0].message.content); } catch (e) { obj = null; }
  check(obj && typeof obj.name === 'string' && obj.name.length <= 12 && Number.isInteger(obj.size) &&
        obj.size >= 0 && obj.size <= 999 && Object.keys(obj).length === 2,
        'json_schema reply follows the schema: ' + so.choices[0].message.content);
  const jo = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'A JSON object, please.' }], max_tokens: 40,
    temperature: 0, response_format: { type: 'json_object' },
  });
  let jv = null;
  try { jv = JSON.parse(jo.choices[0].message.content); } catch (e) { jv = null; }
  check(jv !== null && typeof jv === 'object' && !Array.isArray(jv),
        'json_object reply is an object: ' + jo.choices[0].message.content);

  // a forced tool call (chat): the named function with arguments that parse
  // (the city bounded: kdoc, a small model, need not close an unbounded string in time)
  const cityTool = [{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 } }, required: ['city'] } } }];
  const forced = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Weather in Paris?' }], tools: cityTool, max_tokens: 120,
    temperature: 0, parallel_tool_calls: false,
    tool_choice: { type: 'function', function: { name: 'get_weather' } },
  });
  const calls = forced.choices[0].message.tool_calls || [];
  let args = null;
  try { args = calls.length ? JSON.parse(calls[0].function.arguments) : null; } catch (e) { args = null; }
  check(calls.length >= 1 && calls[0].function.name === 'get_weather' && args && typeof args.city === 'string' &&
        forced.choices[0].finish_reason === 'tool_calls',
        'forced tool call: ' + JSON.stringify(forced.choices[0].message) + ' ' + forced.choices[0].finish_reason);
  let badTool = null;
  try {
    await client.chat.completions.create({
      model, messages: [{ role: 'user', content: 'x' }], tools, max_tokens: 4,
      tool_choice: { type: 'function', function: { name: 'no_such_tool' } },
    });
  } catch (e) { badTool = e; }
  check(badTool && badTool.status === 400, 'an unknown forced tool is a 400');

  // legacy completions
  const c = await client.completions.create({ model, prompt: 'The kernel', max_tokens: 4 });
  check(c.object === 'text_completion' && typeof c.choices[0].text === 'string', 'completions');

  // log-probabilities: greedy, so each token is its own top alternative; chat plain and
  // streamed (the same tokens), legacy completions with logprobs N
  const lp = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 5, temperature: 0,
    logprobs: true, top_logprobs: 3,
  });
  const lc = lp.choices[0].logprobs && lp.choices[0].logprobs.content;
  check(Array.isArray(lc) && lc.length === lp.usage.completion_tokens -
        (lp.choices[0].finish_reason === 'stop' ? 1 : 0), 'a logprob per generated token');
  check(lc && lc.every((e) => typeof e.token === 'string' && e.logprob <= 0 &&
        Array.isArray(e.bytes) && e.top_logprobs.length === 3 &&
        Math.abs(e.top_logprobs[0].logprob - e.logprob) < 1e-6 &&
        e.top_logprobs[1].logprob <= e.top_logprobs[0].logprob),
        'logprob entries: token, logprob <= 0, bytes, 3 alternatives, greedy = the top one');
  const ls = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 5, temperature: 0,
    logprobs: true, stream: true,
  });
  const streamed = [];
  for await (const chunk of ls)
    for (const ch of chunk.choices)
      if (ch.logprobs && ch.logprobs.content) streamed.push(...ch.logprobs.content);
  check(lc && streamed.length === lc.length &&
        streamed.every((e, i) => e.token === lc[i].token && Math.abs(e.logprob - lc[i].logprob) < 1e-6),
        'streamed logprobs = the plain call\'s');
  const cl = await client.completions.create({ model, prompt: 'The kernel', max_tokens: 4, temperature: 0, logprobs: 2 });
  const clp = cl.choices[0].logprobs;
  check(clp && clp.tokens.length === clp.token_logprobs.length && clp.tokens.join('') === cl.choices[0].text &&
        clp.top_logprobs.every((m) => Object.keys(m).length >= 1 && Object.keys(m).length <= 2) &&
        clp.text_offset[0] === 0, 'legacy logprobs: tokens join to the text, offsets, top 2');

  // the Responses API: plain (output_text is the SDK's join of the message text), streamed
  // (the raw events, and the SDK's stream helper that rebuilds the response from them), a
  // forced function call, and a refusal
  const rp = await client.responses.create({
    model, input: 'Say hello', instructions: 'Be brief.', max_output_tokens: 6, temperature: 0,
  });
  check(rp.object === 'response' && rp.id.startsWith('resp_'), 'responses: object response');
  check(['completed', 'incomplete'].includes(rp.status), 'responses: status ' + rp.status);
  check(typeof rp.output_text === 'string' && rp.output.some((o) => o.type === 'message'),
        'responses: output_text and a message item');
  check(rp.usage.output_tokens <= 6 && rp.usage.input_tokens > 0 &&
        rp.usage.total_tokens === rp.usage.input_tokens + rp.usage.output_tokens, 'responses: usage');
  const rs = await client.responses.create({
    model, input: 'Say hello', instructions: 'Be brief.', max_output_tokens: 6, temperature: 0,
    stream: true,
  });
  const kinds = [];
  let rtext = '', rfinal = null;
  for await (const ev of rs) {
    kinds.push(ev.type);
    if (ev.type === 'response.output_text.delta') rtext += ev.delta;
    if (ev.type === 'response.completed' || ev.type === 'response.incomplete') rfinal = ev.response;
  }
  check(kinds[0] === 'response.created' && kinds[1] === 'response.in_progress' &&
        kinds.includes('response.output_item.added') && kinds.includes('response.output_text.done') &&
        kinds.includes('response.output_item.done'), 'responses stream: event types ' + kinds.join(','));
  check(rtext === rp.output_text, `responses stream: text '${rtext}' == plain '${rp.output_text}'`);
  check(rfinal && rfinal.status === rp.status && rfinal.usage.output_tokens === rp.usage.output_tokens,
        'responses stream: the final response');
  const helper = client.responses.stream({
    model, input: 'Say hello', instructions: 'Be brief.', max_output_tokens: 6, temperature: 0,
  });
  let htext = '';
  helper.on('response.output_text.delta', (ev) => { htext += ev.delta; });
  const hfinal = await helper.finalResponse();
  check(hfinal.output_text === rp.output_text && htext === rp.output_text,
        'responses.stream helper: the rebuilt response');
  const rtools = [{
    type: 'function', name: 'get_weather', description: 'Weather of a city', strict: true,
    parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 12 } },
                  required: ['city'], additionalProperties: false },
  }];
  const rc = await client.responses.create({
    model, input: 'Weather in Paris?', tools: rtools, max_output_tokens: 120, temperature: 0,
    tool_choice: { type: 'function', name: 'get_weather' }, parallel_tool_calls: false,
  });
  const fc = rc.output.filter((o) => o.type === 'function_call');
  check(rc.status === 'completed' && fc.length === 1 && fc[0].name === 'get_weather' &&
        fc[0].call_id.startsWith('call_') && typeof JSON.parse(fc[0].arguments).city === 'string',
        'responses: a forced function call: ' + JSON.stringify(rc.output));
  const rc2 = await client.responses.create({
    model, tools: rtools, max_output_tokens: 4,
    input: [{ role: 'user', content: 'Weather in Paris?' }, fc[0],
            { type: 'function_call_output', call_id: fc[0].call_id, output: '18 C' }],
  });
  check(rc2.usage.input_tokens > rc.usage.input_tokens, 'responses: the call passed back as input');
  try {
    await client.responses.create({ model, input: 'x', previous_response_id: 'resp_1' });
    check(false, 'previous_response_id is rejected');
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError && e.param === 'previous_response_id',
          'responses: BadRequestError naming previous_response_id: ' + e);
  }

  // n choices: at temperature 0 each is the n=1 reply; with a seed, streamed chunks carry
  // each choice's index and join to the non-streamed choices; usage counts the prompt once
  const n2 = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 6, temperature: 0, n: 2,
    logprobs: true,
  });
  check(n2.choices.length === 2 && n2.choices.every((ch, i) => ch.index === i &&
        ch.message.content === r.choices[0].message.content && ch.finish_reason === r.choices[0].finish_reason),
        'n=2 at temperature 0: both choices are the n=1 reply');
  check(n2.choices.every((ch) => ch.logprobs && ch.logprobs.content.length > 0), 'n=2: logprobs per choice');
  check(n2.usage.prompt_tokens === r.usage.prompt_tokens &&
        n2.usage.completion_tokens === 2 * r.usage.completion_tokens, 'n=2 usage: the prompt once');
  const seeded = { model, messages: [{ role: 'user', content: 'Say hello' }], max_tokens: 8, temperature: 1,
                   seed: 42, n: 2 };
  const sp = await client.chat.completions.create(seeded);
  const ss = await client.chat.completions.create({ ...seeded, stream: true });
  const texts = ['', ''], finishes = [null, null];
  for await (const chunk of ss)
    for (const ch of chunk.choices) {
      if (ch.delta && ch.delta.content) texts[ch.index] += ch.delta.content;
      if (ch.finish_reason) finishes[ch.index] = ch.finish_reason;
    }
  check(texts.every((t, i) => t === sp.choices[i].message.content) &&
        finishes.every((f, i) => f === sp.choices[i].finish_reason),
        `streamed n=2 by index = the plain call's (${JSON.stringify(texts)})`);
  try {
    await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], n: 3 });
    check(false, 'n above the slots is rejected');
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError && e.param === 'n', 'n=3 on 2 slots: 400, param n: ' + e);
  }

  // echo (lm-eval's loglikelihood request): the prompt scored, the first token null
  const ec = await client.completions.create({ model, prompt: 'The kernel schedules', max_tokens: 0,
                                               echo: true, logprobs: 1, temperature: 0 });
  const el = ec.choices[0].logprobs;
  check(ec.choices[0].text === 'The kernel schedules' && ec.usage.completion_tokens === 0 &&
        el.tokens.length === ec.usage.prompt_tokens && el.tokens.join('') === ec.choices[0].text &&
        el.token_logprobs[0] === null && el.top_logprobs[0] === null &&
        el.token_logprobs.slice(1).every((x) => x <= 0), 'echo with logprobs, max_tokens 0');

  // GET /v1/models/{id}
  const m = await client.models.retrieve(model);
  check(m.id === model && m.object === 'model', 'models.retrieve');
  try {
    await client.models.retrieve('no-such-model');
    check(false, 'an unknown model id is a 404');
  } catch (e) {
    check(e instanceof OpenAI.NotFoundError && e.status === 404, 'NotFoundError: ' + e);
  }

  if (process.env.HALO_EMBEDDINGS) await embeddings(model);

  // errors
  try {
    await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], temperature: 'hot' });
    check(false, 'a bad temperature is rejected');
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError, 'BadRequestError: ' + e);
    check(e.status === 400 && e.param === 'temperature', 'status 400, param temperature');
  }
  try {
    const bad = new OpenAI({ baseURL: base, apiKey: 'wrong', maxRetries: 0 });
    await bad.models.list();
    check(false, 'a wrong key is rejected');
  } catch (e) {
    check(e instanceof OpenAI.AuthenticationError && e.status === 401, 'AuthenticationError: ' + e);
  }
  console.log(`${checks} checks, ${failures} failed`);
  process.exit(failures ? 1 : 0);
}
// embeddings (the server has --embeddings --pooling mean): the client asks for base64 unless
// told otherwise and decodes it; the same vectors as floats; a batch; a refused dimensions
async function embeddings(model) {
  const norm = (v) => Math.sqrt(v.reduce((a, x) => a + x * x, 0));
  const e = await client.embeddings.create({ model, input: 'The page cache' });
  const v = e.data[0].embedding;
  check(e.object === 'list' && e.data[0].object === 'embedding' && e.data[0].index === 0,
        'embeddings: list of embedding objects');
  check(Array.isArray(v) && v.length > 0 && Math.abs(norm(v) - 1) < 1e-5,
        'embeddings: the base64 reply decodes to a unit vector');
  check(e.usage.prompt_tokens > 0 && e.usage.total_tokens === e.usage.prompt_tokens, 'embeddings usage');
  const f = await client.embeddings.create({ model, input: 'The page cache', encoding_format: 'float' });
  check(f.data[0].embedding.length === v.length &&
        f.data[0].embedding.every((x, i) => Math.fround(x) === v[i]), 'embeddings: float = base64');
  const b = await client.embeddings.create({ model, input: ['a', 'The page cache', 'c'] });
  check(b.data.length === 3 && b.data.map((d) => d.index).join() === '0,1,2' &&
        // one batch of three sequences sums in another order than one alone: 1.3e-6 measured
        b.data[1].embedding.every((x, i) => Math.abs(x - v[i]) < 1e-5), 'embeddings: a batch of three');
  try {
    await client.embeddings.create({ model, input: 'x', dimensions: 3 });
    check(false, 'embeddings: dimensions other than the model\'s are refused');
  } catch (err) {
    check(err instanceof OpenAI.BadRequestError && err.param === 'dimensions', 'embeddings: ' + err);
  }
}

main().catch((e) => { console.log('FAIL: ' + (e && e.stack || e)); process.exit(1); });
