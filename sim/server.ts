/**
 * The OpenAI-compatible simulator over plain `node:http` (keep-alive, no framework).
 *
 * Endpoints: `POST /v1/chat/completions`, `GET /v1/models`, `GET /v1/models/:id`,
 * `GET /sim/stats`, `POST /sim/reset`. See sim/README.md for the contract; in short, every output
 * (content, choices, latency, faults) is a pure function of the config seed, the canonical
 * request body and — for faults and latency — how many times that exact body has been seen.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseSimConfig, type LatencySpec, type SimConfig, type SimConfigInput } from './config.js';
import { generate, readMessages, type ResolvedFaults, type ServedModel } from './behaviours.js';
import { canonicalJson, Rng, sha256Hex } from './rng.js';
import { loadAnswerIndex } from './answers.js';
import { loadTruthIndex, TruthFileError } from './truth.js';

export interface SimStats {
  /** Chat-completions requests received, whatever became of them (errors and faults included). */
  requests: number;
  /** Chat-completions requests answered (any status). requests − completed − inFlight = aborted. */
  completed: number;
  /** Most chat-completions requests handled at once since start or reset. */
  maxInFlight: number;
  /** Chat-completions requests being handled now (reading, waiting on latency, hanging). */
  inFlight: number;
  /** Requests per requested model id (unknown ids included). */
  byModel: Record<string, number>;
  /** Responses per HTTP status ("200", "429"…). */
  byStatus: Record<string, number>;
  /** Injected faults per kind: 429, 500, hang, malformed, truncated, empty. */
  faults: Record<string, number>;
  /** Requests whose client went away before the answer. */
  aborted: number;
  /** Image parts received and their decoded bytes (data URLs). */
  images: number;
  imageBytes: number;
  /** Judge/reasoner requests whose options were found in the truth file, ranked by `(q=…)` markers, or neither. */
  truthHits: number;
  qualityMatches: number;
  truthMisses: number;
  /** Estimated tokens (chars/4) over answered 200s. */
  promptTokens: number;
  completionTokens: number;
}

export interface SimHandle {
  /** Base URL for an OpenAI client, e.g. http://127.0.0.1:8100/v1 */
  url: string;
  port: number;
  stats(): SimStats;
  /** Zeroes the counters and forgets how often each body was seen (faults start over). */
  reset(): void;
  /** Stops listening, clears hang/latency timers and destroys open sockets. */
  close(): Promise<void>;
}

type FaultKind = '429' | '500' | 'hang' | 'malformed' | 'truncated' | 'empty';
const FAULT_KINDS: FaultKind[] = ['429', '500', 'hang', 'malformed', 'truncated', 'empty'];

const MAX_BODY_BYTES = 64 * 1024 * 1024;
/** Bodies remembered for attempt counting before the memory is wiped (a long-running demo). */
const MAX_TRACKED_BODIES = 2_000_000;
const CREATED_AT_START = Math.floor(Date.now() / 1000);

function emptyStats(): SimStats {
  return {
    requests: 0,
    completed: 0,
    maxInFlight: 0,
    inFlight: 0,
    byModel: {},
    byStatus: {},
    faults: Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])),
    aborted: 0,
    images: 0,
    imageBytes: 0,
    truthHits: 0,
    qualityMatches: 0,
    truthMisses: 0,
    promptTokens: 0,
    completionTokens: 0,
  };
}

function errorJson(message: string, type: string, code: string | null, param: string | null = null): string {
  return JSON.stringify({ error: { message, type, param, code } });
}

function resolveModels(cfg: SimConfig): Map<string, ServedModel> {
  const models = new Map<string, ServedModel>();
  for (const [name, spec] of Object.entries(cfg.models)) {
    const f = { ...cfg.faults, ...spec.faults };
    const faults: ResolvedFaults = {
      rate_429: f.rate_429 ?? 0,
      retry_after_s: f.retry_after_s ?? 1,
      rate_500: f.rate_500 ?? 0,
      rate_hang: f.rate_hang ?? 0,
      hang_ms: f.hang_ms ?? 600_000,
      rate_malformed: f.rate_malformed ?? 0,
      rate_truncated: f.rate_truncated ?? 0,
      rate_empty: f.rate_empty ?? 0,
      max_faults_per_body: f.max_faults_per_body,
    };
    let truth;
    if (spec.behaviour === 'judge' || spec.behaviour === 'reasoner') {
      const paths = spec.truth ?? cfg.truth;
      if (paths !== undefined) {
        try {
          truth = loadTruthIndex(Array.isArray(paths) ? paths : [paths]);
        } catch (err) {
          const field = spec.truth === undefined ? 'truth' : `models.${name}.truth`;
          if (err instanceof TruthFileError) throw new TruthFileError(`${field}: ${err.message}`, { cause: err });
          throw err;
        }
      }
    }
    let answers;
    if (spec.behaviour === 'policy' && spec.answers !== undefined) {
      try {
        answers = loadAnswerIndex(spec.answers);
      } catch (err) {
        if (err instanceof TruthFileError) throw new TruthFileError(`models.${name}.answers: ${err.message}`, { cause: err });
        throw err;
      }
    }
    models.set(name, {
      name,
      spec,
      answers,
      latency: spec.latency ?? cfg.latency,
      faults,
      maxContextTokens: spec.max_context_tokens ?? cfg.max_context_tokens,
      truth,
    });
  }
  return models;
}

function hasFaults(f: ResolvedFaults): boolean {
  return f.rate_429 + f.rate_500 + f.rate_hang + f.rate_malformed + f.rate_truncated + f.rate_empty > 0;
}

function drawLatency(spec: LatencySpec, rng: Rng): number {
  switch (spec.kind) {
    case 'fixed':
      return spec.ms;
    case 'uniform':
      return spec.min_ms + rng.next() * (spec.max_ms - spec.min_ms);
    case 'lognormal': {
      const v = spec.median_ms * Math.exp(spec.sigma * rng.normal());
      return spec.max_ms === undefined ? v : Math.min(v, spec.max_ms);
    }
  }
}

function pickFault(f: ResolvedFaults, u: number): FaultKind | undefined {
  const rates: [FaultKind, number][] = [
    ['429', f.rate_429],
    ['500', f.rate_500],
    ['hang', f.rate_hang],
    ['malformed', f.rate_malformed],
    ['truncated', f.rate_truncated],
    ['empty', f.rate_empty],
  ];
  let acc = 0;
  for (const [kind, rate] of rates) {
    acc += rate;
    if (u < acc) return kind;
  }
  return undefined;
}

const est = (chars: number) => Math.ceil(chars / 4);

interface ChatParams {
  model: string;
  n: number;
  maxTokens: number | undefined;
  stops: string[];
  temperature: number;
}

function readParams(body: Record<string, unknown>): ChatParams | { message: string; param: string } {
  const model = body.model;
  if (typeof model !== 'string' || !model) return { message: '`model` must be a non-empty string', param: 'model' };
  const n = body.n ?? 1;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 128) return { message: '`n` must be an integer in 1..128', param: 'n' };
  const mt = body.max_completion_tokens ?? body.max_tokens;
  if (mt !== undefined && mt !== null && (typeof mt !== 'number' || !Number.isInteger(mt) || mt < 1)) {
    return { message: '`max_tokens` must be a positive integer', param: 'max_tokens' };
  }
  const t = body.temperature ?? 1;
  if (typeof t !== 'number' || t < 0 || t > 2) return { message: '`temperature` must be a number in 0..2', param: 'temperature' };
  const stop = body.stop ?? [];
  const stops = typeof stop === 'string' ? [stop] : stop;
  if (!Array.isArray(stops) || !stops.every((s) => typeof s === 'string')) {
    return { message: '`stop` must be a string or an array of strings', param: 'stop' };
  }
  return { model, n, maxTokens: typeof mt === 'number' ? mt : undefined, stops: stops.filter((s) => s.length > 0), temperature: t };
}

function applyLimits(content: string, stops: string[], maxTokens: number | undefined): { content: string; finish: 'stop' | 'length' } {
  let cut = content.length;
  for (const s of stops) {
    const i = content.indexOf(s);
    if (i >= 0 && i < cut) cut = i;
  }
  if (maxTokens !== undefined && maxTokens * 4 < cut) return { content: content.slice(0, maxTokens * 4), finish: 'length' };
  return { content: content.slice(0, cut), finish: 'stop' };
}

/** Starts the simulator. `opts.port` defaults to 0 (any free port), `opts.host` to 127.0.0.1. */
export async function startSimulator(config: SimConfigInput, opts: { port?: number; host?: string } = {}): Promise<SimHandle> {
  const cfg = parseSimConfig(config);
  const models = resolveModels(cfg);
  const seed = String(cfg.seed);
  const modelList = JSON.stringify({
    object: 'list',
    data: [...models.keys()].map((id) => ({ id, object: 'model', created: CREATED_AT_START, owned_by: 'judgeflow-sim' })),
  });

  let stats = emptyStats();
  let seen = new Map<string, { attempts: number; faults: number }>();
  const timers = new Set<NodeJS.Timeout>();

  const authorized = (req: IncomingMessage) => !cfg.api_key || req.headers.authorization === `Bearer ${cfg.api_key}`;

  const sendRaw = (res: ServerResponse, status: number, body: string, headers: Record<string, string | number> = {}) => {
    if (res.destroyed || res.writableEnded) return;
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
    res.end(body);
  };

  const later = (ms: number, res: ServerResponse, fn: () => void) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
    res.once('close', () => {
      clearTimeout(t);
      timers.delete(t);
    });
  };

  const handleChat = (req: IncomingMessage, res: ServerResponse) => {
    stats.requests++;
    stats.inFlight++;
    if (stats.inFlight > stats.maxInFlight) stats.maxInFlight = stats.inFlight;
    let done = false;
    const finish = () => {
      if (done) return false;
      done = true;
      stats.inFlight--;
      return true;
    };
    res.once('close', () => {
      if (finish()) stats.aborted++;
    });
    const reply = (status: number, body: string, headers?: Record<string, string | number>) => {
      if (!finish()) return;
      stats.completed++;
      stats.byStatus[status] = (stats.byStatus[status] ?? 0) + 1;
      sendRaw(res, status, body, headers);
    };

    const chunks: Buffer[] = [];
    let size = 0;
    let tooLarge = false;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY_BYTES) tooLarge = true;
      else chunks.push(c);
    });
    req.on('end', () => {
      if (tooLarge) return reply(413, errorJson(`request body over ${MAX_BODY_BYTES} bytes`, 'invalid_request_error', 'request_too_large'));
      if (!authorized(req)) {
        return reply(401, errorJson('Incorrect API key provided (simulator).', 'invalid_request_error', 'invalid_api_key'));
      }
      let body: unknown;
      try {
        body = JSON.parse((chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks)).toString('utf8'));
      } catch (err) {
        return reply(400, errorJson(`request body is not valid JSON: ${(err as Error).message}`, 'invalid_request_error', 'invalid_json'));
      }
      if (!body || typeof body !== 'object' || Array.isArray(body)) {
        return reply(400, errorJson('request body must be a JSON object', 'invalid_request_error', 'invalid_body'));
      }
      handleBody(body as Record<string, unknown>, reply, res);
    });
  };

  const handleBody = (
    body: Record<string, unknown>,
    reply: (status: number, body: string, headers?: Record<string, string | number>) => void,
    res: ServerResponse,
  ) => {
    const params = readParams(body);
    if (typeof body.model === 'string') stats.byModel[body.model] = (stats.byModel[body.model] ?? 0) + 1;
    if ('message' in params) return reply(400, errorJson(params.message, 'invalid_request_error', 'invalid_value', params.param));
    const model = models.get(params.model);
    if (!model) {
      return reply(
        404,
        errorJson(
          `The model \`${params.model}\` does not exist (served: ${[...models.keys()].join(', ')}).`,
          'invalid_request_error',
          'model_not_found',
          'model',
        ),
      );
    }
    if (body.stream === true) {
      return reply(400, errorJson('streaming is not supported by judgeflow-sim', 'invalid_request_error', 'unsupported_value', 'stream'));
    }
    const read = readMessages(body.messages);
    if (!read.ok) return reply(400, errorJson(read.message, 'invalid_request_error', 'invalid_value', 'messages'));
    const prompt = read.prompt;
    stats.images += prompt.images;
    stats.imageBytes += prompt.imageBytes;
    const messagesJson = canonicalJson(body.messages);
    if (messagesJson.includes('SIM_BAD_REQUEST')) {
      return reply(400, errorJson('the request contains SIM_BAD_REQUEST', 'invalid_request_error', 'sim_bad_request', 'messages'));
    }
    const promptTokens = est(prompt.chars);
    if (promptTokens > model.maxContextTokens) {
      return reply(
        400,
        errorJson(
          `This model's maximum context length is ${model.maxContextTokens} tokens. However, your messages resulted in ${promptTokens} tokens.`,
          'invalid_request_error',
          'context_length_exceeded',
          'messages',
        ),
      );
    }

    const messagesHash = sha256Hex(messagesJson);
    const rest: Record<string, unknown> = { ...body, messages: messagesHash };
    const bodyHash = sha256Hex(seed, canonicalJson(rest));
    let attempt = 1;
    let fault: FaultKind | undefined;
    if (hasFaults(model.faults)) {
      if (seen.size >= MAX_TRACKED_BODIES) seen = new Map();
      let entry = seen.get(bodyHash);
      if (!entry) seen.set(bodyHash, (entry = { attempts: 0, faults: 0 }));
      attempt = ++entry.attempts;
      const cap = model.faults.max_faults_per_body;
      if (cap === undefined || entry.faults < cap) {
        fault = pickFault(model.faults, Rng.from(seed, bodyHash, 'fault', String(attempt)).next());
        if (fault) entry.faults++;
      }
    }
    const headers: Record<string, string | number> = { 'x-sim-attempt': attempt };
    if (fault) {
      stats.faults[fault] = (stats.faults[fault] ?? 0) + 1;
      headers['x-sim-fault'] = fault;
    }
    if (fault === '429') {
      const s = model.faults.retry_after_s;
      return reply(429, errorJson('Rate limit reached (simulated).', 'rate_limit_error', 'rate_limit_exceeded'), {
        ...headers,
        'retry-after': String(Math.ceil(s)),
        'retry-after-ms': String(Math.round(s * 1000)),
      });
    }

    const answer = () => {
      if (fault === '500') return reply(500, errorJson('The server had an error (simulated).', 'server_error', 'internal_error'), headers);
      // Greedy decoding ignores the seed: at temperature 0 only the messages matter.
      const contentKey = sha256Hex(
        seed,
        params.model,
        messagesHash,
        params.temperature === 0 ? 'greedy' : `t=${params.temperature}|seed=${canonicalJson(body.seed ?? null)}`,
      );
      const gen = generate({ model, prompt, contentKey, n: params.n, greedy: params.temperature === 0 });
      if (gen.choices) {
        if (gen.choices.source === 'truth') stats.truthHits++;
        else if (gen.choices.source === 'quality') stats.qualityMatches++;
        else stats.truthMisses++;
      }
      const asField = model.spec.behaviour === 'reasoner' && model.spec.reasoning_field;
      const choices = gen.contents.map((generated, index) => {
        // A reasoning model served by vLLM/SGLang: the thinking travels in `reasoning_content`.
        const think = asField ? /^<think>\n?([\s\S]*?)\n?<\/think>\n?/.exec(generated) : null;
        const text = think ? generated.slice(think[0].length) : generated;
        let { content, finish } = applyLimits(text, params.stops, params.maxTokens);
        if (fault === 'truncated') {
          content = content.slice(0, Math.floor(content.length / 2));
          finish = 'length';
        } else if (fault === 'empty') {
          content = '';
        }
        const message = think ? { role: 'assistant', content, reasoning_content: think[1]!, refusal: null } : { role: 'assistant', content, refusal: null };
        return { index, message, logprobs: null, finish_reason: finish };
      });
      const completionTokens = choices.reduce((s, c) => s + est(c.message.content.length + (c.message.reasoning_content?.length ?? 0)), 0);
      const json = JSON.stringify({
        id: `chatcmpl-sim-${bodyHash.slice(0, 20)}-${attempt}`,
        object: 'chat.completion',
        created: Math.floor(Date.now() / 1000),
        model: params.model,
        system_fingerprint: 'judgeflow-sim',
        choices,
        usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
      });
      stats.promptTokens += promptTokens;
      stats.completionTokens += completionTokens;
      reply(200, fault === 'malformed' ? json.slice(0, Math.floor(json.length / 2)) : json, headers);
    };

    const delay = fault === 'hang' ? model.faults.hang_ms : drawLatency(model.latency, Rng.from(seed, bodyHash, 'latency', String(attempt)));
    if (delay > 0) later(delay, res, answer);
    else answer();
  };

  const server = createServer({ keepAlive: true, noDelay: true, requestTimeout: 0 }, (req, res) => {
    const q = req.url?.indexOf('?') ?? -1;
    const path = q >= 0 ? req.url!.slice(0, q) : (req.url ?? '/');
    if (path === '/v1/chat/completions' || path === '/v1/chat/completions/') {
      if (req.method === 'POST') return handleChat(req, res);
      return sendRaw(res, 405, errorJson('use POST', 'invalid_request_error', 'method_not_allowed'), { allow: 'POST' });
    }
    req.resume();
    if (path === '/v1/models' && req.method === 'GET') {
      if (!authorized(req)) return sendRaw(res, 401, errorJson('Incorrect API key provided (simulator).', 'invalid_request_error', 'invalid_api_key'));
      return sendRaw(res, 200, modelList);
    }
    if (path.startsWith('/v1/models/') && req.method === 'GET') {
      if (!authorized(req)) return sendRaw(res, 401, errorJson('Incorrect API key provided (simulator).', 'invalid_request_error', 'invalid_api_key'));
      const id = decodeURIComponent(path.slice('/v1/models/'.length));
      if (!models.has(id)) return sendRaw(res, 404, errorJson(`The model \`${id}\` does not exist.`, 'invalid_request_error', 'model_not_found', 'model'));
      return sendRaw(res, 200, JSON.stringify({ id, object: 'model', created: CREATED_AT_START, owned_by: 'judgeflow-sim' }));
    }
    if (path === '/sim/stats' && req.method === 'GET') return sendRaw(res, 200, JSON.stringify(stats));
    if (path === '/sim/reset' && req.method === 'POST') {
      reset();
      return sendRaw(res, 200, JSON.stringify({ ok: true }));
    }
    return sendRaw(res, 404, errorJson(`no route ${req.method} ${path}`, 'invalid_request_error', 'not_found'));
  });
  server.keepAliveTimeout = 10_000;

  const reset = () => {
    const inFlight = stats.inFlight;
    stats = emptyStats();
    stats.inFlight = inFlight;
    stats.maxInFlight = inFlight;
    seen = new Map();
  };

  const host = opts.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const urlHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;

  let closing: Promise<void> | undefined;
  return {
    url: `http://${urlHost}:${port}/v1`,
    port,
    stats: () => structuredClone(stats),
    reset,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
