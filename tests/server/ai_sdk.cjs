// The Vercel AI SDK against `halo serve`, through two providers: `@ai-sdk/openai-compatible`
// (chat completions) and `@ai-sdk/openai`'s Responses model (POST /v1/responses). Each runs
// generateObject with a zod schema (json_schema: the object parses and validates), streamText
// (the streamed text is the text; the finish reason and usage), and a forced tool call through
// generateText (toolChoice names the tool; its input follows the tool's JSON schema); the
// Responses model also runs the call, and a second step reads its result (the call and its
// output go back as input items). Exits non-zero on a failure.
'use strict';
const path = require('path');
const dir = process.env.AI_SDK_MODULES;
const { generateObject, generateText, streamText, tool, jsonSchema, stepCountIs } =
  require(path.join(dir, 'ai'));
const { createOpenAICompatible } = require(path.join(dir, '@ai-sdk/openai-compatible'));
const { createOpenAI } = require(path.join(dir, '@ai-sdk/openai'));
const { z } = require(path.join(dir, 'zod'));
let failures = 0, checks = 0;
function check(cond, what) {
  checks++;
  if (!cond) { failures++; console.log('FAIL: ' + what); }
}

// 'halo' provider options pass through to the request body (parallel_tool_calls below)
const halo = createOpenAICompatible({
  name: 'halo', baseURL: process.env.HALO_URL + '/v1', apiKey: 'none',
  supportsStructuredOutputs: true, includeUsage: true,
});
const openai = createOpenAI({ baseURL: process.env.HALO_URL + '/v1', apiKey: 'none' });
globalThis.AI_SDK_LOG_WARNINGS = false;

// the same checks through one provider's model; noParallel: its provider options for
// parallel_tool_calls false (one forced call)
async function run(label, model, noParallel) {

  // generateObject: the schema goes to halo as response_format json_schema; constrained decoding
  // makes the model (which knows no JSON) answer in that shape
  const pet = z.object({
    name: z.string().max(24),
    age: z.number().int(),
    tags: z.array(z.string().max(12)).max(3),
  });
  for (const temperature of [0, 1]) {
    const { object, finishReason, usage } = await generateObject({
      model, schema: pet, schemaName: 'pet', prompt: 'Describe a pet as JSON.',
      maxOutputTokens: 300, temperature, maxRetries: 0,
    });
    check(pet.safeParse(object).success,
          `${label}: generateObject (temperature ${temperature}): ${JSON.stringify(object)}`);
    check(finishReason === 'stop', `${label}: generateObject finishReason ${finishReason}`);
    check(usage.outputTokens > 0 && usage.inputTokens > 0, `${label}: generateObject usage`);
  }

  // streamText: the text streams in parts that join to the final text
  const s = streamText({
    model, prompt: 'What does the scheduler do?', maxOutputTokens: 12, temperature: 0, maxRetries: 0,
  });
  let streamed = '', parts = 0;
  for await (const t of s.textStream) { streamed += t; parts++; }
  const text = await s.text, finish = await s.finishReason, su = await s.usage;
  check(parts >= 2 && streamed.length > 0, `${label}: streamText: ${parts} parts`);
  check(streamed === text, `${label}: streamText: the parts join to the text`);
  check(finish === 'length', `${label}: streamText finishReason ${finish}`);
  check(su.outputTokens === 12, `${label}: streamText usage ${JSON.stringify(su)}`);
  const g = await generateText({
    model, prompt: 'What does the scheduler do?', maxOutputTokens: 12, temperature: 0, maxRetries: 0,
  });
  check(g.text === text, `${label}: generateText '${g.text}' == streamed '${text}' (greedy)`);

  // a forced tool call (no execute: the call comes back to the caller); the schema through
  // jsonSchema here, zod above
  const inputSchema = jsonSchema({
    type: 'object', properties: { city: { type: 'string', maxLength: 16 } },
    required: ['city'], additionalProperties: false,
  });
  const r = await generateText({
    model, prompt: 'Weather in Paris?', maxOutputTokens: 100, temperature: 0, maxRetries: 0,
    tools: { get_weather: tool({ description: 'Weather of a city', inputSchema }) },
    toolChoice: { type: 'tool', toolName: 'get_weather' }, providerOptions: noParallel,
  });
  check(r.finishReason === 'tool-calls', `${label}: tool call finishReason ${r.finishReason}`);
  check(r.toolCalls.length === 1 && r.toolCalls[0].toolName === 'get_weather' &&
        typeof r.toolCalls[0].input.city === 'string',
        `${label}: a get_weather call: ${JSON.stringify(r.toolCalls)}`);
}

async function main() {
  await run('openai-compatible', halo.chatModel('kdoc'), { halo: { parallel_tool_calls: false } });
  await run('openai responses', openai.responses('kdoc'), { openai: { parallelToolCalls: false } });

  // the Responses model in a tool loop: step 1 calls (forced), the SDK runs the tool, step 2
  // answers from the call and its output sent back as input items
  let ran = 0;
  const loop = await generateText({
    model: openai.responses('kdoc'), prompt: 'Weather in Paris?', maxOutputTokens: 60,
    temperature: 0, maxRetries: 0, stopWhen: stepCountIs(2),
    tools: {
      get_weather: tool({
        description: 'Weather of a city', inputSchema: z.object({ city: z.string().max(16) }),
        execute: async () => { ran++; return '18 C and sunny'; },
      }),
    },
    prepareStep: ({ stepNumber }) => ({ toolChoice: stepNumber === 0 ? 'required' : 'none' }),
    providerOptions: { openai: { parallelToolCalls: false, store: false } },
  });
  check(ran === 1 && loop.steps.length === 2 && loop.steps[0].toolCalls.length === 1,
        `openai responses: a tool loop of 2 steps (${loop.steps.length}, tool ran ${ran} times)`);
  const body2 = JSON.stringify(loop.steps[1].request.body);
  check(body2.includes('"function_call_output"') && body2.includes('18 C and sunny') &&
        ['length', 'stop'].includes(loop.finishReason) && typeof loop.text === 'string',
        'openai responses: step 2 sent the call and its output, and was answered: ' +
        JSON.stringify(loop.steps.map((s) => [s.finishReason, s.text])));

  console.log(`${checks} checks, ${failures} failed`);
  process.exit(failures ? 1 : 0);
}
main().catch((e) => { console.log('FAIL: ' + (e && e.stack || e)); process.exit(1); });
