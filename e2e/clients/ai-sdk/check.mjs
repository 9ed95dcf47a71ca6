// The Vercel AI SDK's default OpenAI provider (the Responses API) against
// GreenThread: generateText with a tool, streamText, generateObject with a
// zod schema. Prints one JSON object of what came back; the pytest test
// judges it. Usage: node check.mjs BASE_URL API_KEY MODEL
import { createOpenAI } from "@ai-sdk/openai";
import { generateObject, generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const [baseURL, apiKey, model] = process.argv.slice(2);
const openai = createOpenAI({ baseURL, apiKey });
const out = {};

const calls = [];
const weather = tool({
  description: "Get the current weather in a city",
  inputSchema: z.object({ city: z.string().describe("City name") }),
  execute: async ({ city }) => {
    calls.push(city);
    return { city, temperature_c: 22, sky: "sunny" };
  },
});
const withTool = await generateText({
  model: openai(model),
  prompt: "What is the weather like in Paris today?",
  tools: { get_weather: weather },
  stopWhen: stepCountIs(2),
  // After the call the model must reply: the demo model (0.5B) would call again.
  prepareStep: ({ stepNumber }) => (stepNumber > 0 ? { toolChoice: "none" } : undefined),
  temperature: 0,
  maxOutputTokens: 80,
});
out.tool = { calls, steps: withTool.steps.length, text: withTool.text, finishReason: withTool.finishReason };

const streamed = streamText({ model: openai(model), prompt: "Count from 1 to 5.", temperature: 0, maxOutputTokens: 30 });
let text = "";
for await (const delta of streamed.textStream) text += delta;
out.stream = { text, usage: await streamed.usage, finishReason: await streamed.finishReason };

const object = await generateObject({
  model: openai(model),
  schema: z.object({ name: z.string(), population_millions: z.number().int() }),
  prompt: "Give the name and population in millions of the capital of France.",
  temperature: 0,
  maxOutputTokens: 80,
});
out.object = object.object;

console.log(JSON.stringify(out));
