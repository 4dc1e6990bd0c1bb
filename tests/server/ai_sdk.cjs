// The Vercel AI SDK (`ai` with `@ai-sdk/openai-compatible`) against `halo serve`: generateObject
// with a zod schema (response_format json_schema: the object parses and validates), streamText
// (the streamed text is the text; the finish reason and usage), and a forced tool call through
// generateText (toolChoice names the tool; its input follows the tool's JSON schema). Exits
// non-zero on a failure.
'use strict';
const path = require('path');
const dir = process.env.AI_SDK_MODULES;
const { generateObject, generateText, streamText, tool, jsonSchema } = require(path.join(dir, 'ai'));
const { createOpenAICompatible } = require(path.join(dir, '@ai-sdk/openai-compatible'));
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

async function main() {
  const model = halo.chatModel('kdoc');

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
    check(pet.safeParse(object).success, `generateObject (temperature ${temperature}): ${JSON.stringify(object)}`);
    check(finishReason === 'stop', 'generateObject finishReason ' + finishReason);
    check(usage.outputTokens > 0 && usage.inputTokens > 0, 'generateObject usage');
  }

  // streamText: the text streams in parts that join to the final text
  const s = streamText({
    model, prompt: 'What does the scheduler do?', maxOutputTokens: 12, temperature: 0, maxRetries: 0,
  });
  let streamed = '', parts = 0;
  for await (const t of s.textStream) { streamed += t; parts++; }
  const text = await s.text, finish = await s.finishReason, su = await s.usage;
  check(parts >= 2 && streamed.length > 0, `streamText: ${parts} parts`);
  check(streamed === text, 'streamText: the parts join to the text');
  check(finish === 'length', 'streamText finishReason ' + finish);
  check(su.outputTokens === 12, 'streamText usage ' + JSON.stringify(su));
  const g = await generateText({
    model, prompt: 'What does the scheduler do?', maxOutputTokens: 12, temperature: 0, maxRetries: 0,
  });
  check(g.text === text, `generateText '${g.text}' == streamed '${text}' (greedy)`);

  // a forced tool call (no execute: the call comes back to the caller); the schema through
  // jsonSchema here, zod above
  const r = await generateText({
    model, prompt: 'Weather in Paris?', maxOutputTokens: 100, temperature: 0, maxRetries: 0,
    tools: {
      get_weather: tool({
        description: 'Weather of a city',
        inputSchema: jsonSchema({
          type: 'object', properties: { city: { type: 'string', maxLength: 16 } },
          required: ['city'], additionalProperties: false,
        }),
      }),
    },
    toolChoice: { type: 'tool', toolName: 'get_weather' },
    providerOptions: { halo: { parallel_tool_calls: false } },
  });
  check(r.finishReason === 'tool-calls', 'tool call finishReason ' + r.finishReason);
  check(r.toolCalls.length === 1 && r.toolCalls[0].toolName === 'get_weather' &&
        typeof r.toolCalls[0].input.city === 'string', 'a get_weather call: ' + JSON.stringify(r.toolCalls));

  console.log(`${checks} checks, ${failures} failed`);
  process.exit(failures ? 1 : 0);
}
main().catch((e) => { console.log('FAIL: ' + (e && e.stack || e)); process.exit(1); });
