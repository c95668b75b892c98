/**
 * Training-set exports of `sft-set` and `rl-set` artifacts, in the formats trainers load:
 *
 * - `llamafactory` (sft-set): a sharegpt-style JSON array `{messages: [{role, content}], images:
 *   [path]}` whose user turn holds one `<image>` tag per image, plus this dataset's entry in
 *   `dataset_info.json` beside it (merged into an existing one);
 * - `trl` (sft-set: `messages` with typed content parts + `images`; rl-set: `prompt` + `images` +
 *   `answer`): JSONL (image paths), or parquet when `--out` ends in `.parquet` (image bytes and
 *   path, typed as a list of `datasets` Image features);
 * - `verl` (rl-set): parquet with `data_source`, `prompt` (chat list, `<image>` in the text),
 *   `images` ({bytes, path}), `ability`, `reward_model: {style: rule, ground_truth}`,
 *   `extra_info: {split, index, item_key}`;
 * - `openai` (sft-set): chat fine-tuning JSONL, images inline as data URLs.
 *
 * Images are written once per content hash to `<out>.images/<sha256>.<ext>` (paths relative to the
 * output's folder). Same artifact → byte-identical files: rows in `idx` order, keys in a fixed
 * order, no timestamps. Every export writes `<out>.sha256` (`sha256sum -c` format, one line per
 * file it wrote) and returns the sha256 of that listing as the export's hash.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import type { Db } from '../../db/client.js';
import { loadBlobs } from '../inference/store.js';

/** Export formats of training sets and the artifact kinds each writes. */
export const TRAINING_FORMATS = {
  llamafactory: ['sft-set'],
  trl: ['sft-set', 'rl-set'],
  verl: ['rl-set'],
  openai: ['sft-set'],
} as const satisfies Record<string, readonly string[]>;
export type TrainingFormat = keyof typeof TRAINING_FORMATS;

export class TrainingExportError extends Error {
  override readonly name = 'TrainingExportError';
}

export interface TrainingExportResult {
  rows: number;
  images: number;
  /** Files written, relative to the output's folder (the sidecar `.sha256` excluded). */
  files: string[];
  /** sha256 of the `.sha256` listing: one hash for the whole export. */
  sha256: string;
}

const EXT: Record<string, string> = { 'image/png': 'png', 'image/jpeg': 'jpg', 'image/gif': 'gif', 'image/webp': 'webp' };
/** The verl `data_source` of judge items (a custom reward function dispatches on it). */
export const VERL_DATA_SOURCE = 'judgeflow/mc-judge';

interface SftRow {
  idx: number;
  item_key: string;
  image_hash: string | null;
  prompt: string;
  response: string;
  answer: string;
  split: string;
  /** The caption distill read in place of the row's image (with `captions`). */
  caption?: string | null;
}
interface RlRow {
  idx: number;
  item_key: string;
  image_hash: string | null;
  prompt: string;
  answer: string;
  split: string;
}

const sha = (b: string | Uint8Array) => createHash('sha256').update(b).digest('hex');

// Every field is OPTIONAL and list elements are named `item`, as `datasets` writes them: its
// loader keeps the features recorded in the file's metadata only where the Arrow field matches
// exactly (nullability and list child name included).
const OPT = 'OPTIONAL' as const;
const STR = (name: string) => ({ name, type: 'BYTE_ARRAY' as const, converted_type: 'UTF8' as const, repetition_type: OPT });
const LIST = (name: string) => [
  { name, repetition_type: OPT, converted_type: 'LIST' as const, num_children: 1 },
  { name: 'list', repetition_type: 'REPEATED' as const, num_children: 1 },
];
const STRUCT = (name: string, children: number) => ({ name, repetition_type: OPT, num_children: children });
/** `images`: list of {bytes, path}, the parquet layout of a list of `datasets` Image features. */
const IMAGES_SCHEMA = [...LIST('images'), STRUCT('item', 2), { name: 'bytes', type: 'BYTE_ARRAY' as const, repetition_type: OPT }, STR('path')];

/**
 * Writes a training-set artifact in `format` to `out`; with `split`, only that split's rows
 * (default: every row; verl and the RL columns carry the split either way). With `captions` (trl
 * JSONL of an sft-set), each row also carries `captions`: the caption distill's reasoner read in
 * place of each image, which a text model trains on instead of the image (trainers/sft.py).
 */
export async function exportTrainingSet(
  db: Db,
  artifactId: number,
  opts: { format: TrainingFormat; out: string; split?: 'train' | 'validation'; captions?: boolean },
): Promise<TrainingExportResult> {
  const art = (
    await db.$client.query<{ kind: string; sealed: boolean; name: string }>('select kind, name, sealed_at is not null as sealed from artifacts where id = $1', [
      artifactId,
    ])
  ).rows[0];
  if (!art) throw new TrainingExportError(`no artifact ${artifactId}`);
  if (!art.sealed) throw new TrainingExportError(`artifact ${artifactId} is not sealed yet (its stage has not finished)`);
  const kinds: readonly string[] = TRAINING_FORMATS[opts.format];
  if (!kinds.includes(art.kind)) {
    const fits = Object.entries(TRAINING_FORMATS)
      .filter(([, k]) => (k as readonly string[]).includes(art.kind))
      .map(([f]) => f);
    throw new TrainingExportError(
      `format ${opts.format} writes ${kinds.join(' or ')}; artifact ${artifactId} is ${art.kind}${fits.length ? ` (use --format ${fits.join(' | ')})` : ''}`,
    );
  }
  const parquet = opts.format === 'verl' || (opts.format === 'trl' && opts.out.endsWith('.parquet'));
  if (opts.format === 'verl' && !parquet) throw new TrainingExportError(`verl reads parquet: --out must end in .parquet (got ${opts.out})`);
  if (opts.format === 'llamafactory' && !opts.out.endsWith('.json'))
    throw new TrainingExportError(`llamafactory reads a .json file: --out must end in .json (got ${opts.out})`);
  if ((opts.format === 'openai' || (opts.format === 'trl' && !parquet)) && !opts.out.endsWith('.jsonl')) {
    throw new TrainingExportError(`${opts.format} writes JSONL: --out must end in .jsonl${opts.format === 'trl' ? ' (or .parquet)' : ''} (got ${opts.out})`);
  }

  const dir = dirname(opts.out);
  await mkdir(dir, { recursive: true });
  const rows =
    art.kind === 'sft-set'
      ? (
          await db.$client.query<SftRow>(
            `select s.idx, s.item_key, s.image_hash, s.prompt, s.response, s.answer, s.split${
              opts.captions
                ? `, (select c.content from artifacts a
                      join distill_attempts d on d.run_id = a.run_id and d.stage_id = a.stage_id and d.item_key = s.item_key and d.attempt = s.attempt
                      join inference_requests q on q.id = (d.requests->>'caption')::bigint
                      join inference_cache c on c.key = q.cache_key
                    where a.id = s.artifact_id) as caption`
                : ''
            }
             from sft_rows s where s.artifact_id = $1 and ($2::text is null or s.split = $2) order by s.idx`,
            [artifactId, opts.split ?? null],
          )
        ).rows
      : (
          await db.$client.query<RlRow>(
            'select idx, item_key, image_hash, prompt, answer, split from rl_rows where artifact_id = $1 and ($2::text is null or split = $2) order by idx',
            [artifactId, opts.split ?? null],
          )
        ).rows;
  const hashes = [...new Set(rows.flatMap((r) => (r.image_hash ? [r.image_hash] : [])))].sort();
  const blobs = await loadBlobs(db, hashes);
  const imagesDir = `${basename(opts.out)}.images`;
  const rel = (h: string) => `${imagesDir}/${h}.${EXT[blobs.get(h)!.mime] ?? 'bin'}`;
  const written = new Map<string, Uint8Array | string>();
  if (opts.format !== 'openai') {
    for (const h of hashes) {
      const b = blobs.get(h);
      if (!b) throw new TrainingExportError(`artifact ${artifactId}: image ${h} is missing from blobs`);
      written.set(rel(h), b.bytes);
    }
  }
  const imageList = (r: { image_hash: string | null }) => (r.image_hash ? [r.image_hash] : []);
  const dataFile = basename(opts.out);

  if (opts.format === 'llamafactory') {
    const records = (rows as SftRow[]).map((r) => ({
      messages: [
        { role: 'user', content: `${'<image>'.repeat(imageList(r).length)}${r.prompt}` },
        { role: 'assistant', content: r.response },
      ],
      images: imageList(r).map(rel),
    }));
    written.set(dataFile, `${JSON.stringify(records, null, 2)}\n`);
    const infoPath = join(dir, 'dataset_info.json');
    let info: Record<string, unknown> = {};
    try {
      info = JSON.parse(await readFile(infoPath, 'utf8')) as Record<string, unknown>;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        throw new TrainingExportError(`${infoPath} exists but is not valid JSON: ${(err as Error).message}`, { cause: err });
    }
    info[dataFile.replace(/\.json$/, '')] = {
      file_name: dataFile,
      formatting: 'sharegpt',
      columns: { messages: 'messages', images: 'images' },
      tags: { role_tag: 'role', content_tag: 'content', user_tag: 'user', assistant_tag: 'assistant', system_tag: 'system' },
    };
    written.set('dataset_info.json', `${JSON.stringify(info, null, 2)}\n`);
  } else if (opts.format === 'openai') {
    const lines = (rows as SftRow[]).map((r) => {
      const images = imageList(r).map((h) => ({
        type: 'image_url',
        image_url: { url: `data:${blobs.get(h)!.mime};base64,${blobs.get(h)!.bytes.toString('base64')}` },
      }));
      return JSON.stringify({
        messages: [
          { role: 'user', content: [...images, { type: 'text', text: r.prompt }] },
          { role: 'assistant', content: r.response },
        ],
      });
    });
    written.set(dataFile, lines.map((l) => `${l}\n`).join(''));
  } else if (!parquet) {
    // trl JSONL
    // `text: null` on image parts: every part has the same keys, so loaders infer one struct type
    // (as a parquet/Hub copy of such a set gives).
    const userParts = (r: { image_hash: string | null; prompt: string }) => [
      ...imageList(r).map(() => ({ type: 'image' as const, text: null })),
      { type: 'text' as const, text: r.prompt },
    ];
    const lines =
      art.kind === 'sft-set'
        ? (rows as SftRow[]).map((r) =>
            JSON.stringify({
              messages: [
                { role: 'user', content: userParts(r) },
                { role: 'assistant', content: [{ type: 'text', text: r.response }] },
              ],
              images: imageList(r).map(rel),
              ...(opts.captions && r.image_hash && r.caption ? { captions: [r.caption] } : {}),
            }),
          )
        : (rows as RlRow[]).map((r) => JSON.stringify({ prompt: [{ role: 'user', content: userParts(r) }], images: imageList(r).map(rel), answer: r.answer }));
    written.set(dataFile, lines.map((l) => `${l}\n`).join(''));
  } else {
    written.set(dataFile, new Uint8Array(parquetFile(opts.format, art.kind, rows, blobs, rel)));
  }

  for (const [path, content] of written) {
    await mkdir(dirname(join(dir, path)), { recursive: true });
    await writeFile(join(dir, path), content);
  }
  const files = [...written.keys()].sort();
  const listing = files.map((f) => `${sha(written.get(f)!)}  ${f}\n`).join('');
  await writeFile(`${opts.out}.sha256`, listing);
  return { rows: rows.length, images: opts.format === 'openai' ? 0 : hashes.length, files, sha256: sha(listing) };
}

function parquetFile(
  format: 'trl' | 'verl',
  kind: string,
  rows: readonly (SftRow | RlRow)[],
  blobs: Map<string, { mime: string; bytes: Buffer }>,
  rel: (h: string) => string,
): ArrayBuffer {
  const images = rows.map((r) => (r.image_hash ? [{ bytes: new Uint8Array(blobs.get(r.image_hash)!.bytes), path: rel(r.image_hash) }] : []));
  const imageTags = (r: { image_hash: string | null }) => (r.image_hash ? '<image>' : '');
  const parts = (r: { image_hash: string | null; prompt: string }) => [
    ...(r.image_hash ? [{ type: 'image', text: null }] : []),
    { type: 'text', text: r.prompt },
  ];
  const PART = [...LIST('content'), STRUCT('item', 2), STR('type'), STR('text')];
  const MESSAGE = (name: string, content: typeof PART | ReturnType<typeof STR>[]) => [...LIST(name), STRUCT('item', 2), STR('role'), ...content];
  // `datasets` reads these columns as a list of Image features (decoded to PIL images).
  const hf = (features: Record<string, unknown>) => [{ key: 'huggingface', value: JSON.stringify({ info: { features } }) }];
  const imageFeature = { feature: { _type: 'Image' }, _type: 'List' };
  const text = { dtype: 'string', _type: 'Value' };
  const partsFeature = { feature: { type: text, text }, _type: 'List' };
  if (format === 'verl') {
    const rl = rows as RlRow[];
    return parquetWriteBuffer({
      columnData: [
        { name: 'data_source', data: rl.map(() => VERL_DATA_SOURCE) },
        { name: 'prompt', data: rl.map((r) => [{ role: 'user', content: `${imageTags(r)}${r.prompt}` }]) },
        { name: 'images', data: images },
        { name: 'ability', data: rl.map(() => 'judge') },
        { name: 'reward_model', data: rl.map((r) => ({ style: 'rule', ground_truth: r.answer })) },
        { name: 'extra_info', data: rl.map((r) => ({ split: r.split, index: BigInt(r.idx), item_key: r.item_key })) },
      ],
      schema: [
        { name: 'root', num_children: 6 },
        STR('data_source'),
        ...MESSAGE('prompt', [STR('content')]),
        ...IMAGES_SCHEMA,
        STR('ability'),
        STRUCT('reward_model', 2),
        STR('style'),
        STR('ground_truth'),
        STRUCT('extra_info', 3),
        STR('split'),
        { name: 'index', type: 'INT64', repetition_type: OPT },
        STR('item_key'),
      ],
      kvMetadata: hf({
        data_source: text,
        prompt: { feature: { role: text, content: text }, _type: 'List' },
        images: imageFeature,
        ability: text,
        reward_model: { style: text, ground_truth: text },
        extra_info: { split: text, index: { dtype: 'int64', _type: 'Value' }, item_key: text },
      }),
    });
  }
  if (kind === 'sft-set') {
    const sft = rows as SftRow[];
    return parquetWriteBuffer({
      columnData: [
        {
          name: 'messages',
          data: sft.map((r) => [
            { role: 'user', content: parts(r) },
            { role: 'assistant', content: [{ type: 'text', text: r.response }] },
          ]),
        },
        { name: 'images', data: images },
      ],
      schema: [{ name: 'root', num_children: 2 }, ...MESSAGE('messages', PART), ...IMAGES_SCHEMA],
      kvMetadata: hf({ messages: { feature: { role: text, content: partsFeature }, _type: 'List' }, images: imageFeature }),
    });
  }
  const rl = rows as RlRow[];
  return parquetWriteBuffer({
    columnData: [
      { name: 'prompt', data: rl.map((r) => [{ role: 'user', content: parts(r) }]) },
      { name: 'images', data: images },
      { name: 'answer', data: rl.map((r) => r.answer) },
    ],
    schema: [{ name: 'root', num_children: 3 }, ...MESSAGE('prompt', PART), ...IMAGES_SCHEMA, STR('answer')],
    kvMetadata: hf({ prompt: { feature: { role: text, content: partsFeature }, _type: 'List' }, images: imageFeature, answer: text }),
  });
}
