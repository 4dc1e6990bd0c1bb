// Server figures (run by hand, not a test): aggregate generated tokens/s and time
// to first token with 1, 4 and 8 parallel clients, then a multi-turn chat with and
// without the prompt cache. Start the server first, e.g.
//   build/halo serve -np 8 -c 16384 -t 2 --log-disable &
//   HALO_URL=http://127.0.0.1:8080 node tests/server/bench.cjs
'use strict';
const http = require('http');
const url = new URL(process.env.HALO_URL || 'http://127.0.0.1:8080');
const GEN = +(process.env.GEN || 64), TURNS = +(process.env.TURNS || 6);

function post(path, body, onChunk) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, path, method: 'POST',
      headers: { 'Content-Type': 'application/json' } }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { data += d; if (onChunk) onChunk(d); });
      res.on('end', () => resolve({ status: res.statusCode, data }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

let bias = {};
async function eogBias() {
  for (const t of ['<|im_end|>', '<|endoftext|>']) {
    const r = JSON.parse((await post('/tokenize', { content: t })).data);
    if (r.tokens.length === 1) bias[r.tokens[0]] = -100;
  }
}

// One streamed chat: time to the first generated text, tokens, the final usage.
async function chat(messages, maxTokens, cache) {
  const t0 = performance.now();
  let ttft = null, content = '', usage = null, buf = '';
  await post('/v1/chat/completions', { messages, max_tokens: maxTokens, stream: true, temperature: 0.7,
    stream_options: { include_usage: true }, logit_bias: bias, cache_prompt: cache }, (d) => {
    buf += d;
    let k;
    while ((k = buf.indexOf('\n\n')) >= 0) {
      const line = buf.slice(0, k); buf = buf.slice(k + 2);
      if (!line.startsWith('data: ') || line === 'data: [DONE]') continue;
      const c = JSON.parse(line.slice(6));
      if (c.usage) usage = c.usage;
      const delta = c.choices[0] && c.choices[0].delta || {};
      const text = (delta.content || '') + (delta.reasoning_content || '');
      if (text && ttft === null) ttft = performance.now() - t0;
      content += delta.content || '';
    }
  });
  return { ttft, content, usage, ms: performance.now() - t0 };
}

const words = 'the kernel schedules tasks across processors while drivers register devices and ' +
  'memory management maps pages into each process address space under locks';
const text = (n, seed) => Array.from({ length: n }, (_, i) => words.split(' ')[(i * 7 + seed) % 20]).join(' ');

async function parallel(n) {
  const t0 = performance.now();
  const runs = await Promise.all(Array.from({ length: n }, (_, c) =>
    chat([{ role: 'user', content: `Client ${c}: ${text(40, c)}` }], GEN, false)));
  const wall = (performance.now() - t0) / 1000;
  const tokens = runs.reduce((a, r) => a + r.usage.completion_tokens, 0);
  const ttft = runs.map((r) => r.ttft).sort((a, b) => a - b);
  console.log(`| ${n} | ${tokens} | ${wall.toFixed(2)} | ${(tokens / wall).toFixed(1)} | ` +
    `${ttft[0].toFixed(0)} / ${ttft[ttft.length >> 1].toFixed(0)} / ${ttft[ttft.length - 1].toFixed(0)} |`);
}

async function conversation(cache) {
  const messages = [{ role: 'system', content: 'You document the Linux kernel. ' + text(120, cache ? 5 : 3) }];
  let totalPromptMs = 0;
  const rows = [];
  for (let t = 0; t < TURNS; t++) {
    messages.push({ role: 'user', content: `Question ${t}: ${text(60, t)}` });
    const r = await chat(messages, 48, cache);
    messages.push({ role: 'assistant', content: r.content });
    totalPromptMs += r.ttft;
    rows.push(`${r.usage.prompt_tokens}/${r.usage.prompt_tokens_details.cached_tokens}/${r.ttft.toFixed(0)}`);
  }
  console.log(`| ${cache ? 'on' : 'off'} | ${rows.join(' | ')} | ${totalPromptMs.toFixed(0)} |`);
}

async function main() {
  await eogBias();
  await chat([{ role: 'user', content: 'warm up' }], 8, false);
  console.log(`generation: ${GEN} tokens per request, streamed, end-of-turn banned`);
  console.log('| clients | tokens | wall s | tokens/s | TTFT ms min / median / max |');
  console.log('| --- | --- | --- | --- | --- |');
  for (const n of [1, 4, 8]) await parallel(n);
  console.log(`\nmulti-turn chat, ${TURNS} turns of ~60-word questions and 48-token answers; ` +
    'each cell: prompt tokens / cached / TTFT ms');
  console.log('| cache | ' + Array.from({ length: TURNS }, (_, i) => `turn ${i + 1}`).join(' | ') + ' | sum TTFT ms |');
  console.log('| --- |' + ' --- |'.repeat(TURNS + 1));
  await conversation(false);
  await conversation(true);
}
main().catch((e) => { console.error(e); process.exit(1); });
