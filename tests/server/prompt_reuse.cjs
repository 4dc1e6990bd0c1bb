// Prompt reuse on a hybrid model, case by case:
//   node prompt_reuse.cjs CACHE_URL FRESH_URL TOKENS [returning]
//
// CACHE_URL is a server with two slots that keeps its cache; FRESH_URL answers every request
// from scratch (cache_prompt false). One conversation at a time, as clients send them, with a
// system prompt that makes the prompts about TOKENS long:
//   A1  [sys, u1]                                    (first read, nothing to reuse)
//   B1  [sys, uB]            shared system prompt:   a second conversation, on the other slot
//   A2  [sys, u1, a1, u2]    appended turn
//   A3  [sys, u1', a1, u2]   edited early message:   u1 changed
//   C1  [sys, uC]            new conversation with the same system prompt
//   T1  [sys, uT, a(<think>..</think> + tool call), tool]
//   T2  T1 + [a(answer), uT2] reasoning stripped:    the template renders the tool-calling
//                                                    turn without its reasoning this time
// and with `returning`:
//   D1, E1 under two other system prompts: they take both slots
//   A4  [sys, u1, a1, u2, a2, u3]  returning conversation: its KV comes back from host memory
// Each checked request: the cached tokens it reports (usage.prompt_tokens_details.cached_tokens)
// must be within 64 of the true divergence, and its reply at temperature 0 must be the fresh
// server's. The true divergence is the longest common token prefix of its prompt with a
// sequence the cache holds (an earlier prompt followed by its reply); the reply's tokens are
// not returned, so it lies between `lo` (the earlier prompts alone) and `hi` (an earlier prompt
// matched to its end, then as many tokens as its reply had), both reported.
// Prints one line per case and a JSON summary line; exit status 1 on a failed check.
"use strict";
const [cacheUrl, freshUrl, sizeArg, returningArg] = process.argv.slice(2);
const returning = returningArg === "returning";
const target = Number(sizeArg || 2048);
const MAX_TOKENS = 8, SLACK = 64;

async function post(url, path, body) {
    const r = await fetch(url + path, { method: "POST", body: JSON.stringify(body) });
    const text = await r.text();
    if (r.status !== 200) throw new Error(`${path}: ${r.status} ${text.slice(0, 300)}`);
    return JSON.parse(text);
}
async function tokens(messages) {
    const { prompt } = await post(cacheUrl, "/apply-template", { messages });
    return (await post(cacheUrl, "/tokenize", { content: prompt })).tokens;
}
const chat = (url, messages, cache) =>
    post(url, "/v1/chat/completions",
         { messages, max_tokens: MAX_TOKENS, temperature: 0, cache_prompt: cache });
const prefix = (a, b) => { let i = 0; while (i < a.length && i < b.length && a[i] === b[i]) i++; return i; };

async function main() {
    // a system prompt of numbered rules, as long as the target asks
    const rule = (i) => `Rule ${i}: when the driver for device ${i} loads, the kernel checks the module signature and logs the result to the ring buffer.`;
    const rules = (n) => Array.from({ length: n }, (_, i) => rule(i + 1)).join(" ");
    const per = (await post(cacheUrl, "/tokenize", { content: rules(100) })).tokens.length / 100;
    let n = Math.max(4, Math.round((target - 150) / per));
    n = Math.max(4, Math.round(n * (target - 150) / (await post(cacheUrl, "/tokenize", { content: rules(n) })).tokens.length));
    const sys = { role: "system", content: rules(n) };
    const user = (t) => ({ role: "user", content: t });
    const asst = (t) => ({ role: "assistant", content: t });
    const u1 = user("What does the kernel log when the driver for device 12 loads? Answer in one line.");
    const u1e = user("Which device loads first, and what does the kernel check then? Answer in one line.");
    const u2 = user("And for device 40?");
    const held = []; // sequences the cache may hold: {tokens, gen}
    const rows = [];
    let failed = 0;
    async function ask(name, messages, check) {
        const toks = await tokens(messages);
        let lo = 0, hi = 0;
        for (const h of held) {
            const l = prefix(toks, h.tokens);
            lo = Math.max(lo, l);
            hi = Math.max(hi, l === h.tokens.length ? l + h.gen : l);
        }
        lo = Math.min(lo, toks.length - 1); hi = Math.min(hi, toks.length - 1); // one token runs
        const r = await chat(cacheUrl, messages, true);
        const reply = r.choices[0].message.content;
        const cached = r.usage.prompt_tokens_details.cached_tokens;
        held.push({ tokens: toks, gen: r.usage.completion_tokens });
        if (r.usage.prompt_tokens !== toks.length) throw new Error(`${name}: prompt ${r.usage.prompt_tokens} tokens, /tokenize says ${toks.length}`);
        const row = { name, prompt: toks.length, cached, lo, hi };
        if (check) {
            const f = await chat(freshUrl, messages, false);
            row.same = f.choices[0].message.content === reply;
            row.ok = row.same && cached <= hi && cached + SLACK >= hi;
            if (!row.ok) failed++;
        }
        rows.push(row);
        console.log(`${name.padEnd(24)} prompt ${String(toks.length).padStart(6)}  cached ${String(cached).padStart(6)}  ` +
                    `divergence ${lo === hi ? lo : lo + ".." + hi}` +
                    (check ? `  reply ${row.same ? "same as fresh" : "DIFFERS from fresh: " + JSON.stringify(reply) + " vs " + JSON.stringify((await chat(freshUrl, messages, false)).choices[0].message.content)}${row.ok ? "" : "  FAIL"}` : ""));
        return reply;
    }
    const a1 = await ask("first read", [sys, u1], false);
    await ask("shared system prompt", [sys, user("Summarize the rules about device signatures in one line.")], true);
    const slots = await (await fetch(cacheUrl + "/slots")).json();
    const both = slots.filter((s) => s.n_tokens > 0.5 * target).length;
    if (both < 2) { failed++; console.log(`FAIL: the second conversation did not go to another slot: ${JSON.stringify(slots.map((s) => s.n_tokens))}`); }
    const a2 = await ask("appended turn", [sys, u1, asst(a1), u2], true);
    await ask("edited early message", [sys, u1e, asst(a1), u2], true);
    await ask("new conversation", [sys, user("Which rule mentions device 7?")], true);
    const uT = user("Find the rule for device 33 and tell me what it says.");
    const call = {
        role: "assistant", content: "<think>\nThe rules are long; search them for device 33.\n</think>\n\n",
        tool_calls: [{ type: "function", function: { name: "search_rules", arguments: { device: 33 } } }],
    };
    const tool = { role: "tool", content: rule(33) };
    const aT = await ask("tool call (setup)", [sys, uT, call, tool], false);
    await ask("reasoning stripped", [sys, uT, call, tool, asst(aT), user("Thanks. And device 34?")], true);
    if (returning) {
        // two conversations under other system prompts take both slots; the first conversation
        // then comes back from host memory, where its slot's copy went
        await ask("other conversation (setup)", [{ role: "system", content: "Answer about block devices. " + sys.content }, user("Which rule is first?")], false);
        await ask("other conversation (setup)", [{ role: "system", content: "Answer about network devices. " + sys.content }, user("Which rule is last?")], false);
        await ask("returning conversation", [sys, u1, asst(a1), u2, asst(a2), user("And device 41?")], true);
    }
    console.log(JSON.stringify({ target, rows, failed }));
    process.exit(failed ? 1 : 0);
}
main().catch((e) => { console.log("FAIL: " + e.message); process.exit(1); });
