/**
 * The gateway's HTTP transport (`nodeFetch` under the `openai` client) against a raw HTTP server
 * doing what real servers and proxies do: compressed bodies, a connection dropped mid-body, a
 * server that never answers, retry-after on 429, keep-alive.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync, brotliCompressSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import OpenAI, { APIConnectionError, APIConnectionTimeoutError, APIError, APIUserAbortError } from 'openai';
import { nodeFetch } from '../../activities/inference/transport.js';
import { classifyInferenceError, EndpointFatalError, InferenceTransientError } from '../../activities/inference/errors.js';
import { checkEndpoints } from '../../activities/inference/check.js';
import { CallGroup, InferenceGateway } from '../../activities/inference/gateway.js';
import { endpointSchema } from '../../spec/endpoint.js';

const completion = (content: string) =>
  JSON.stringify({
    id: 'c1',
    object: 'chat.completion',
    created: 1,
    model: 'm',
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
    usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
  });

let server: http.Server;
let base: string;
const sockets = new Set<unknown>();
let lastBody = '';
let lastRequest: { method?: string; url?: string; headers: http.IncomingHttpHeaders; body: string } | undefined;

beforeAll(async () => {
  server = http.createServer((req, res) => {
    sockets.add(req.socket);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      lastBody = Buffer.concat(chunks).toString('utf8');
      lastRequest = { method: req.method, url: req.url, headers: req.headers, body: lastBody };
      // The mode from a header (the client's defaultHeaders) or from the path (`/m/<mode>/v1`, the gateway).
      const byPath = /^\/m\/([^/]+)\//.exec(req.url ?? '')?.[1];
      const mode = req.url?.startsWith('/moved/') ? 'redirect' : (byPath ?? String(req.headers['x-mode'] ?? 'plain'));
      if (mode === 'gzip') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
        return res.end(gzipSync(completion('zipped')));
      }
      if (mode === 'br') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'br' });
        return res.end(brotliCompressSync(completion('brotli')));
      }
      if (mode === 'drop') {
        // Promise 1,000 bytes, send a few, then cut the connection.
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
        res.write('{"id":"c1","choices":[');
        return setTimeout(() => req.socket.destroy(), 20);
      }
      if (mode === 'hang') return; // never answers
      if (mode === 'late') {
        return setTimeout(() => {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(completion('late but whole'));
        }, 700);
      }
      if (mode === 'slow-body') {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1000' });
        res.write('{"id":');
        return; // the rest never comes
      }
      if (mode === 'redirect') {
        res.writeHead(307, { location: 'https://api.example.test/v1' + (req.url ?? '').replace(/^(\/moved)?\/v1/, '') });
        return res.end();
      }
      if (mode === 'text') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        return res.end('The best response is A.');
      }
      if (mode === 'bad-json') {
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end('{"choices": [');
      }
      if (mode === '400') {
        res.writeHead(400, { 'content-type': 'application/json' });
        return res.end(JSON.stringify({ error: { message: 'bad temperature', type: 'invalid_request_error' } }));
      }
      if (mode === '503-text') {
        res.writeHead(503, { 'content-type': 'text/plain', 'retry-after': '2' });
        return res.end('upstream busy');
      }
      if (mode === '429') {
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '7' });
        return res.end(JSON.stringify({ error: { message: 'slow down', type: 'rate_limit' } }));
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(completion(`echo ${JSON.parse(lastBody).messages[0].content}`));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const ident = { name: 'ep', baseUrl: 'http://x', model: 'm' };

function client(mode: string, timeout = 5_000) {
  return new OpenAI({ baseURL: base, apiKey: 'k', maxRetries: 0, timeout, fetch: nodeFetch(), defaultHeaders: { 'x-mode': mode } });
}

const ask = (c: OpenAI, content = 'hi', signal?: AbortSignal) =>
  c.chat.completions.create({ model: 'm', messages: [{ role: 'user', content }], max_tokens: 4 }, { signal });

describe('nodeFetch under the openai client', () => {
  it('sends the JSON body, returns the parsed completion and reuses one keep-alive connection', async () => {
    const c = client('plain');
    const before = sockets.size;
    for (let i = 0; i < 5; i++) {
      const out = await ask(c, `q${i} ✓ ünïcode`);
      expect(out.choices[0]!.message.content).toBe(`echo q${i} ✓ ünïcode`);
      expect(out.usage?.completion_tokens).toBe(2);
    }
    expect(JSON.parse(lastBody).max_tokens).toBe(4);
    expect(sockets.size - before).toBe(1);
  });

  it('the idle-socket timeout closes only idle sockets: a response slower than it still arrives', async () => {
    const c = new OpenAI({
      baseURL: base,
      apiKey: 'k',
      maxRetries: 0,
      timeout: 5_000,
      fetch: nodeFetch({ idleSocketMs: 200 }),
      defaultHeaders: { 'x-mode': 'late' },
    });
    expect((await ask(c)).choices[0]!.message.content).toBe('late but whole');
    const before = sockets.size;
    await new Promise((r) => setTimeout(r, 400));
    // The idle socket was closed in between: the next call opens a new one, without an error.
    expect((await ask(c)).choices[0]!.message.content).toBe('late but whole');
    expect(sockets.size - before).toBe(1);
  });

  it('decodes gzip and brotli bodies', async () => {
    expect((await ask(client('gzip'))).choices[0]!.message.content).toBe('zipped');
    expect((await ask(client('br'))).choices[0]!.message.content).toBe('brotli');
  });

  it('a connection cut mid-body is a retryable connection error, not a truncated body', async () => {
    const err = await ask(client('drop')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIConnectionError);
    const c = classifyInferenceError(err, ident);
    expect(c).toBeInstanceOf(InferenceTransientError);
    expect((c as InferenceTransientError).kind).toBe('connection');
  });

  it('no answer within the timeout, before or during the body, is a timeout', async () => {
    for (const mode of ['hang', 'slow-body']) {
      const t0 = Date.now();
      const err = await ask(client(mode, 300)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(APIConnectionTimeoutError);
      expect(Date.now() - t0).toBeLessThan(3_000);
      expect((classifyInferenceError(err, ident) as InferenceTransientError).kind).toBe('timeout');
    }
  });

  it("the caller's abort signal stops the request", async () => {
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    const err = await ask(client('slow-body'), 'x', ac.signal).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIUserAbortError);
  });

  it('error statuses keep their headers (retry-after on a 429)', async () => {
    const err = await ask(client('429')).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).status).toBe(429);
    const c = classifyInferenceError(err, ident) as InferenceTransientError;
    expect(c.kind).toBe('rate_limited');
    expect(c.retryAfterMs).toBe(7_000);
  });

  it('a redirect stops the endpoint at once, naming where the server points (the check says so before any request)', async () => {
    const err = await ask(client('redirect')).catch((e: unknown) => e);
    const c = classifyInferenceError(err, ident);
    expect(c).toBeInstanceOf(EndpointFatalError);
    expect((c as EndpointFatalError).message).toMatch(/answered 307, redirecting to https:\/\/api\.example\.test\/v1\/chat\/completions; set base_url/);

    // The pre-flight check goes through the gateway's client and stops there.
    const endpoint = endpointSchema.parse({ base_url: base.replace(/\/v1$/, '/moved/v1'), model: 'm' });
    const failure = await checkEndpoints({ gateway: new InferenceGateway() }, { endpoints: { ep: endpoint } }).catch((e: unknown) => e);
    expect(failure).toMatchObject({ type: 'EndpointConfigError', nonRetryable: true });
    expect((failure as Error).message).toMatch(/endpoint "ep": .* answered 307, redirecting to https:\/\/api\.example\.test\/v1\/models/);
  });
});

describe("the gateway's chat completions: the client's wire, without its per-call work", () => {
  const origin = () => base.replace(/\/v1$/, '');
  const request = { messages: [{ role: 'user' as const, content: 'hi' }], params: { max_tokens: 4, temperature: 0.5, seed: 7 } };
  const complete = (gateway: InferenceGateway, mode: string, extra: Record<string, unknown> = {}) =>
    gateway.complete({
      endpointName: 'ep',
      endpoint: endpointSchema.parse({ base_url: `${origin()}/m/${mode}/v1`, model: 'm', api_key_env: 'JF_T_KEY', max_attempts: 1, ...extra }),
      key: `${mode}-${Math.random()}`,
      request,
      sampleIndex: 2,
      images: new Map(),
    });

  it('sends what the openai client sends: method, path, every header and the body', async () => {
    const sdk = new OpenAI({ baseURL: `${origin()}/m/plain/v1`, apiKey: 'sk-t', maxRetries: 0, timeout: 120_000, fetch: nodeFetch() });
    await sdk.chat.completions.create({ ...request.params, seed: 9, model: 'm', messages: request.messages });
    const bySdk = lastRequest!;
    const gateway = new InferenceGateway({ env: { JF_T_KEY: 'sk-t' } });
    const result = await complete(gateway, 'plain');
    expect(result).toMatchObject({ ok: true, output: { content: 'echo hi', promptTokens: 3, completionTokens: 2, finishReason: 'stop' } });
    const byGateway = lastRequest!;
    expect(byGateway.method).toBe('POST');
    expect(byGateway.url).toBe(bySdk.url);
    expect(byGateway.headers).toEqual(bySdk.headers);
    expect(byGateway.headers.authorization).toBe('Bearer sk-t');
    // The seed sent is seed + sample index.
    expect(JSON.parse(byGateway.body)).toEqual(JSON.parse(bySdk.body));
  });

  it('each fault ends as the client would have it end (the same error class, mapped once)', async () => {
    const gateway = new InferenceGateway({ env: { JF_T_KEY: 'sk-t' }, backoff: { baseMs: 1, maxMs: 2 } });
    const outcome = async (mode: string, extra?: Record<string, unknown>) => {
      const r = await complete(gateway, mode, extra).catch((e: unknown) => (e instanceof Error ? e : new Error(String(e))));
      if (r instanceof Error) return `${r.name}: ${r.message}`;
      return r.ok ? 'ok' : `${r.errorClass}: ${r.error}`;
    };
    expect(await outcome('gzip')).toBe('ok');
    // Nothing answered (a cut connection, no response in time): retried while the endpoint stays
    // silent, then the endpoint is declared down, naming what the last attempt met.
    expect(await outcome('drop', { down_after_s: 0.2 })).toMatch(
      /^EndpointFatalError: endpoint "ep": nothing answers .*\(connection error \(ECONNRESET\); down_after_s 0.2\)/,
    );
    expect(await outcome('hang', { timeout_s: 0.1, down_after_s: 0.2 })).toMatch(/nothing answers .*\(timeout \(no response in 0.1 s\); down_after_s 0.2\)/);
    expect(await outcome('slow-body', { timeout_s: 0.1, down_after_s: 0.2 })).toMatch(/nothing answers .*\(timeout \(no response in 0.1 s\)/);
    expect(await outcome('text')).toMatch(/^transient:malformed_response: .*malformed response: expected a chat completion object, got string/);
    expect(await outcome('bad-json')).toMatch(/^transient:malformed_response: .*malformed response body \(/);
    expect(await outcome('400')).toBe('item:bad_request: HTTP 400: bad temperature');
    expect(await outcome('503-text')).toMatch(/^transient:server_error: .*HTTP 503 after 1 attempts/);
    expect(await outcome('429', { max_retry_after_s: 0.01 })).toMatch(/^transient:rate_limited/);
    expect(await outcome('redirect')).toMatch(
      /^EndpointFatalError: endpoint "ep": .* answered 307, redirecting to https:\/\/api\.example\.test\/.*\/chat\/completions; set base_url/,
    );
    const closed = endpointSchema.parse({ base_url: 'http://127.0.0.1:1/v1', model: 'm', max_attempts: 1, down_after_s: 0.2 });
    const refused = await gateway
      .complete({ endpointName: 'ep', endpoint: closed, key: 'refused', request, sampleIndex: 0, images: new Map() })
      .catch((e: unknown) => e);
    expect(refused).toMatchObject({
      name: 'EndpointFatalError',
      message: expect.stringMatching(/nothing answers at http:\/\/127\.0\.0\.1:1\/v1 .*connection error \(ECONNREFUSED\)/),
    });
  });

  it('an aborted call stops its request and records nothing', async () => {
    const gateway = new InferenceGateway({ env: { JF_T_KEY: 'sk-t' } });
    const group = new CallGroup();
    const p = gateway.complete(
      {
        endpointName: 'ep',
        endpoint: endpointSchema.parse({ base_url: `${origin()}/m/hang/v1`, model: 'm', api_key_env: 'JF_T_KEY' }),
        key: 'abort-me',
        request,
        sampleIndex: 0,
        images: new Map(),
      },
      group,
    );
    setTimeout(() => group.abort(), 50);
    await expect(p).rejects.toMatchObject({ name: 'InferenceAbortedError' });
  });
});
