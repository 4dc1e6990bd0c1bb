// The official `openai` npm client against `halo serve`: models, a plain chat, a
// streamed chat with usage, a tool call round trip, legacy completions, log-probabilities
// (chat plain and streamed, legacy), and the
// errors the client surfaces (400 with param, 401). Exits non-zero on a failure.
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
main().catch((e) => { console.log('FAIL: ' + (e && e.stack || e)); process.exit(1); });
