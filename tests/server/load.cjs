// A bounded load test: CLIENTS concurrent clients for SECONDS, each looping over a
// mix of valid (plain and streamed), invalid (bad JSON, wrong types, unknown path)
// and cancelled (hung up mid-stream) requests. Every answer must be the expected
// kind; nothing may hang (each request has a deadline). Prints counts; exit 1 on
// a failure.
'use strict';
const http = require('http');
const url = new URL(process.env.HALO_URL);
const CLIENTS = +(process.env.CLIENTS || 64), SECONDS = +(process.env.LOAD_SECONDS || 10);
const agent = new http.Agent({ keepAlive: true, maxSockets: CLIENTS });
const counts = {}, failures = [];
const bump = (k) => { counts[k] = (counts[k] || 0) + 1; };
const fail = (m) => { if (failures.length < 20) failures.push(m); };

function request(path, body, { abortAfterFirstByte = false, deadline = 60000 } = {}) {
  return new Promise((resolve) => {
    const req = http.request({ host: url.hostname, port: url.port, path, method: body === undefined ? 'GET' : 'POST',
      agent: abortAfterFirstByte ? false : agent, headers: { 'Content-Type': 'application/json' } }, (res) => {
      let data = '';
      res.setEncoding('utf8');
      res.on('data', (d) => {
        data += d;
        if (abortAfterFirstByte) { req.destroy(); resolve({ status: res.statusCode, data, aborted: true }); }
      });
      res.on('end', () => resolve({ status: res.statusCode, data }));
      res.on('error', () => resolve({ status: res.statusCode, data, aborted: true }));
    });
    req.setTimeout(deadline, () => { req.destroy(); resolve({ status: 0, data: '', timeout: true }); });
    req.on('error', (e) => resolve({ status: -1, data: String(e) }));
    if (body !== undefined) req.write(body);
    req.end();
  });
}

const chat = (extra) => JSON.stringify(Object.assign({
  messages: [{ role: 'user', content: 'Tell me about the kernel' }], max_tokens: 8 }, extra));

async function client(id, end) {
  let i = id;
  while (Date.now() < end) {
    const kind = i++ % 6;
    if (kind === 0 || kind === 1) {
      const stream = kind === 1;
      const r = await request('/v1/chat/completions', chat({ stream, temperature: 0.8, seed: i }));
      if (r.timeout) { fail('timeout on a valid request'); bump('timeout'); continue; }
      if (r.status === 503) { bump('busy'); continue; }
      if (r.status !== 200) { fail(`valid: ${r.status} ${r.data.slice(0, 200)}`); continue; }
      if (stream ? !r.data.endsWith('data: [DONE]\n\n') : !JSON.parse(r.data).choices) fail('bad valid reply');
      bump(stream ? 'stream' : 'plain');
    } else if (kind === 2) {
      const r = await request('/v1/chat/completions', '{"messages": [');
      r.status === 400 ? bump('bad_json') : fail(`bad json: ${r.status}`);
    } else if (kind === 3) {
      const r = await request('/v1/chat/completions', chat({ top_p: 'x' }));
      r.status === 400 ? bump('bad_type') : fail(`bad type: ${r.status}`);
    } else if (kind === 4) {
      const r = await request('/v1/chat/completions', chat({ stream: true, max_tokens: 200 }), { abortAfterFirstByte: true });
      r.status === 200 || r.status === 503 ? bump('cancelled') : fail(`cancel: ${r.status}`);
    } else {
      const r = await request('/v1/nothing', '{}');
      r.status === 404 ? bump('not_found') : fail(`404: ${r.status}`);
    }
  }
}

async function main() {
  const end = Date.now() + SECONDS * 1000;
  const t0 = Date.now();
  await Promise.all(Array.from({ length: CLIENTS }, (_, k) => client(k, end)));
  // afterwards: the server answers at once, every slot comes free, nothing waits
  let idle = false;
  for (let k = 0; k < 200 && !idle; k++) {
    const m = await request('/metrics', undefined, { deadline: 5000 });
    idle = m.status === 200 && /halo_slots_busy 0\n/.test(m.data) && /halo_requests_queued 0\n/.test(m.data);
    if (!idle) await new Promise((r) => setTimeout(r, 50));
  }
  if (!idle) fail('slots still busy after the load');
  const h = await request('/health', undefined, { deadline: 5000 });
  if (h.status !== 200) fail('health after the load: ' + h.status);
  console.log(`${CLIENTS} clients, ${((Date.now() - t0) / 1000).toFixed(1)} s:`, JSON.stringify(counts));
  for (const f of failures) console.log('FAIL: ' + f);
  agent.destroy();
  process.exit(failures.length || !(counts.plain || counts.stream) ? 1 : 0);
}
main();
