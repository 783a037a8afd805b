// Real Node clients against a running pixgate: the official `openai` SDK and the Vercel AI SDK
// (`ai` with `@ai-sdk/openai` and `@ai-sdk/openai-compatible`).
//
// Run by tests/clients/test_node_clients.py with PIXGATE_BASE_URL (the gateway's /v1),
// PIXGATE_CHECKS (comma-separated names below) and PIXGATE_CAPTURE (a file). Prints one JSON
// line per check: {"check", "ok", "error"?, ...facts}; the Python test asserts on the facts.
// Every HTTP exchange the clients make is written to PIXGATE_CAPTURE (one JSON line each:
// method, url, status, content type, body text) so the test can validate what the clients
// received against OpenAI's published schemas.

import { writeFileSync } from 'node:fs';
import OpenAI, { toFile } from 'openai';
import { generateImage, generateText, streamText } from 'ai';
import { createOpenAI } from '@ai-sdk/openai';
import { createOpenAICompatible } from '@ai-sdk/openai-compatible';

const baseURL = process.env.PIXGATE_BASE_URL;
const model = process.env.PIXGATE_MODEL ?? 'demo';
const apiKey = 'pixgate-test';
const PNG = '89504e470d0a1a0a';

const exchanges = [];
async function capturingFetch(input, init) {
  const response = await fetch(input, init);
  const url = typeof input === 'string' ? input : input.url ?? String(input);
  if (!url.startsWith('http')) return response; // the openai SDK probes fetch with `data:,`
  exchanges.push(
    response
      .clone()
      .text()
      .then((body) => ({
        method: init?.method ?? 'GET',
        url,
        status: response.status,
        content_type: response.headers.get('content-type') ?? '',
        body,
      })),
  );
  return response;
}

const sdk = new OpenAI({ baseURL, apiKey, fetch: capturingFetch, maxRetries: 0, timeout: 60_000 });
const aiOpenAI = createOpenAI({ baseURL, apiKey, fetch: capturingFetch });
const aiCompatible = createOpenAICompatible({
  name: 'pixgate',
  baseURL,
  apiKey,
  fetch: capturingFetch,
});

function magic(b64) {
  return Buffer.from(b64, 'base64').subarray(0, 8).toString('hex');
}

function bytesMagic(bytes) {
  return Buffer.from(bytes).subarray(0, 8).toString('hex');
}

const checks = {
  // --- the official openai SDK -------------------------------------------------------------
  async 'openai.images.generate.b64_json'() {
    const r = await sdk.images.generate({
      model,
      prompt: 'a red fox',
      size: '256x256',
      response_format: 'b64_json',
    });
    return { count: r.data.length, png: magic(r.data[0].b64_json) === PNG };
  },
  async 'openai.images.generate.url'() {
    const r = await sdk.images.generate({ model, prompt: 'a red fox', size: '256x256' });
    const image = await fetch(r.data[0].url);
    return {
      url: r.data[0].url,
      png: bytesMagic(new Uint8Array(await image.arrayBuffer())) === PNG,
    };
  },
  async 'openai.images.edit'() {
    const source = await sdk.images.generate({
      model,
      prompt: 'a plain square',
      size: '256x256',
      response_format: 'b64_json',
    });
    const file = await toFile(Buffer.from(source.data[0].b64_json, 'base64'), 'in.png', {
      type: 'image/png',
    });
    const r = await sdk.images.edit({
      model,
      image: file,
      prompt: 'add a hat',
      response_format: 'b64_json',
    });
    return { count: r.data.length, png: magic(r.data[0].b64_json) === PNG };
  },
  async 'openai.images.generate.stream'() {
    const stream = await sdk.images.generate({
      model,
      prompt: 'a red fox',
      size: '1024x1024', // the spec's stream events allow only OpenAI's sizes
      stream: true,
      partial_images: 1,
    });
    const types = [];
    let last;
    for await (const event of stream) {
      types.push(event.type);
      last = event;
    }
    return { types, png: magic(last.b64_json) === PNG };
  },
  async 'openai.images.generate.gptImage'() {
    // OpenAI's own example: a GPT image model answers base64 without being asked.
    const r = await sdk.images.generate({ model: 'gpt-image-1', prompt: 'a red fox' });
    return { url: r.data[0].url ?? null, png: magic(r.data[0].b64_json) === PNG };
  },
  async 'openai.models.retrieve'() {
    const m = await sdk.models.retrieve(model);
    return { id: m.id, object: m.object };
  },
  async 'openai.models.list'() {
    const ids = [];
    for await (const m of sdk.models.list()) ids.push(m.id);
    return { ids };
  },
  async 'openai.chat.completions'() {
    const r = await sdk.chat.completions.create({
      model,
      messages: [{ role: 'user', content: 'a lighthouse at dusk' }],
    });
    return { content: r.choices[0].message.content, finish: r.choices[0].finish_reason };
  },
  async 'openai.responses.create'() {
    const r = await sdk.responses.create({
      model,
      input: 'a lighthouse at dusk',
      tools: [{ type: 'image_generation', size: '1024x1024' }],
    });
    const item = r.output[0];
    return { status: r.status, type: item.type, png: magic(item.result) === PNG };
  },
  async 'openai.responses.stream'() {
    const stream = await sdk.responses.create({
      model,
      input: [
        {
          role: 'user',
          content: [{ type: 'input_text', text: 'a lighthouse at dusk' }],
        },
      ],
      tools: [{ type: 'image_generation', size: '1024x1024', partial_images: 2 }],
      stream: true,
    });
    const types = [];
    let done;
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === 'response.completed') done = event.response;
    }
    return { types, png: magic(done.output[0].result) === PNG };
  },
  async 'openai.errors.not_found'() {
    try {
      await sdk.images.generate({ model: 'no-such-model', prompt: 'x' });
      return { raised: false };
    } catch (e) {
      return {
        raised: true,
        notFound: e instanceof OpenAI.NotFoundError,
        status: e.status,
        code: e.code,
      };
    }
  },

  // --- the Vercel AI SDK -------------------------------------------------------------------
  async 'ai.generateImage.createOpenAI'() {
    const r = await generateImage({
      model: aiOpenAI.image(model),
      prompt: 'a red fox',
      size: '256x256',
      maxRetries: 0,
    });
    return {
      count: r.images.length,
      mediaType: r.images[0].mediaType,
      png: bytesMagic(r.images[0].uint8Array) === PNG,
    };
  },
  async 'ai.generateImage.gptImage'() {
    // For gpt-image ids the AI SDK sends no response_format and reads b64_json only.
    const r = await generateImage({
      model: aiOpenAI.image('gpt-image-1'),
      prompt: 'a red fox',
      size: '1024x1024',
      maxRetries: 0,
    });
    return { count: r.images.length, png: bytesMagic(r.images[0].uint8Array) === PNG };
  },
  async 'ai.generateImage.createOpenAICompatible'() {
    const r = await generateImage({
      model: aiCompatible.imageModel(model),
      prompt: 'a red fox',
      size: '256x256',
      n: 2,
      maxRetries: 0,
    });
    return {
      count: r.images.length,
      mediaType: r.images[0].mediaType,
      png: r.images.every((image) => bytesMagic(image.uint8Array) === PNG),
    };
  },
  async 'ai.responses.generateText'() {
    // openai('model') is the Responses API in the AI SDK; the image tool makes the image.
    const r = await generateText({
      model: aiOpenAI(model),
      prompt: 'a lighthouse at dusk',
      tools: { image_generation: aiOpenAI.tools.imageGeneration({ size: '1024x1024' }) },
      maxRetries: 0,
    });
    const result = r.toolResults.find((t) => t.toolName === 'image_generation');
    return {
      parts: r.content.map((c) => c.type),
      finishReason: r.finishReason,
      png: magic(result.output.result) === PNG,
    };
  },
  async 'ai.responses.streamText'() {
    const r = streamText({
      model: aiOpenAI.responses(model),
      prompt: 'a lighthouse at dusk',
      tools: {
        image_generation: aiOpenAI.tools.imageGeneration({
          size: '1024x1024',
          partialImages: 2,
        }),
      },
      maxRetries: 0,
    });
    // Each preview arrives as a tool-result (this AI SDK version does not mark them
    // preliminary in fullStream), the finished image as the last one.
    const types = [];
    const results = [];
    for await (const part of r.fullStream) {
      if (part.type === 'error') throw part.error;
      types.push(part.type);
      if (part.type === 'tool-result') results.push(part.output.result);
    }
    const final = results.at(-1);
    return { types: [...new Set(types)], toolResults: results.length, png: magic(final) === PNG };
  },
};

const wanted = (process.env.PIXGATE_CHECKS ?? Object.keys(checks).join(',')).split(',');
for (const name of wanted) {
  const check = checks[name];
  if (check === undefined) {
    console.log(JSON.stringify({ check: name, ok: false, error: 'no such check' }));
    continue;
  }
  try {
    const facts = await check();
    console.log(JSON.stringify({ check: name, ok: true, ...facts }));
  } catch (e) {
    console.log(JSON.stringify({ check: name, ok: false, error: String(e?.stack ?? e) }));
  }
}
const captured = await Promise.all(exchanges);
if (process.env.PIXGATE_CAPTURE) {
  writeFileSync(process.env.PIXGATE_CAPTURE, captured.map((x) => JSON.stringify(x)).join('\n'));
}
