import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { renderReport } from '../../web/report.js';
import { parseFlags } from '../args.js';
import { resolveSides } from '../compare-sides.js';
import { connect } from '../connect.js';
import { EXIT, UsageError } from '../errors.js';

const USAGE = `usage: judgeflow report <run|run/stage>... | --group G --out report.html [--title T]

Writes ONE self-contained HTML file (the plotting library inline: it opens with no network) with
the runs' tables and plots: accuracy by category with 95% CIs, position bias, tokens and cost,
paired differences on shared items (evaluate); negatives kept per error type (synthesize); score vs
N and vs cost with CIs, and paired differences per N (sweep); acceptance and rejection rates with
CIs, and their differences (distill).`;

export async function reportCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, { group: { type: 'string' }, out: { type: 'string' }, title: { type: 'string' } }, USAGE);
  if (!values.out) throw new UsageError(`--out <file.html> is required\n\n${USAGE}`);
  const conn = await connect();
  try {
    const sides = await resolveSides(conn.db.db, positionals, values.group);
    const title = values.title ?? (values.group ? `judgeflow report: group ${values.group}` : `judgeflow report: ${positionals.join(', ')}`);
    const { html, plots } = await renderReport(conn.db.db, sides, { title });
    const out = resolve(values.out);
    writeFileSync(out, html);
    console.log(`wrote ${out} (${Math.round(html.length / 1024)} KB, ${plots} plots, ${sides.length} stages)`);
    return EXIT.ok;
  } finally {
    await conn.close();
  }
}
