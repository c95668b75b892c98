import { getStageKind, stageKindNames } from '../../spec/kinds.js';
import { EXIT } from '../errors.js';
import { table } from '../render.js';

export async function kindsCommand(): Promise<number> {
  const rows = stageKindNames().map((k) => {
    const kind = getStageKind(k)!;
    const produces = Object.entries(kind.produces ?? {})
      .map(([name, a]) => `${name} (${a})`)
      .join(', ');
    return [k, produces || '-', kind.description];
  });
  console.log(table(['kind', 'produces', 'description'], rows));
  return EXIT.ok;
}
