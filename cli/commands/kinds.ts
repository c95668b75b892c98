import { getStageKind, stageKindNames } from '../../spec/kinds.js';
import { EXIT } from '../errors.js';
import { table } from '../render.js';

export async function kindsCommand(): Promise<number> {
  console.log(table(['kind', 'description'], stageKindNames().map((k) => [k, getStageKind(k)!.description])));
  return EXIT.ok;
}
