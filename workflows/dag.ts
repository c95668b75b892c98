/**
 * Pure graph helpers over stage ids and their `needs`. No Temporal imports: used by the spec
 * checker at the CLI edge and by the experiment workflow alike.
 */
export interface DagNode {
  id: string;
  needs: readonly string[];
}

export interface DagIssue {
  /** Path inside the spec, e.g. `stages[2].needs[0]`. */
  path: string;
  message: string;
}

/** Duplicate ids, dangling needs, self-needs and cycles (each cycle named once, in order). */
export function checkDag(nodes: readonly DagNode[]): DagIssue[] {
  const issues: DagIssue[] = [];
  const index = new Map<string, number>();
  nodes.forEach((n, i) => {
    if (index.has(n.id)) {
      issues.push({ path: `stages[${i}].id`, message: `duplicate stage id "${n.id}" (also stages[${index.get(n.id)}].id); stage ids must be unique` });
    } else {
      index.set(n.id, i);
    }
  });
  nodes.forEach((n, i) => {
    n.needs.forEach((need, j) => {
      if (!index.has(need)) {
        const known = [...index.keys()].join(', ');
        issues.push({ path: `stages[${i}].needs[${j}]`, message: `needs unknown stage "${need}"; known stages: ${known}` });
      }
    });
  });
  for (const cycle of findCycles(nodes, index)) {
    const first = index.get(cycle[0]!)!;
    issues.push({ path: `stages[${first}].needs`, message: `cycle: ${[...cycle, cycle[0]].join(' -> ')}` });
  }
  return issues;
}

function findCycles(nodes: readonly DagNode[], index: Map<string, number>): string[][] {
  const WHITE = 0,
    GREY = 1,
    BLACK = 2;
  const colour = new Map<string, number>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  const seen = new Set<string>();
  const visit = (id: string) => {
    colour.set(id, GREY);
    stack.push(id);
    const node = nodes[index.get(id)!]!;
    for (const need of node.needs) {
      if (!index.has(need)) continue;
      const c = colour.get(need) ?? WHITE;
      if (c === GREY) {
        const cycle = stack.slice(stack.indexOf(need));
        const key = [...cycle].sort().join('\u0000');
        if (!seen.has(key)) {
          seen.add(key);
          cycles.push(cycle);
        }
      } else if (c === WHITE) {
        visit(need);
      }
    }
    stack.pop();
    colour.set(id, BLACK);
  };
  for (const n of nodes) if ((colour.get(n.id) ?? WHITE) === WHITE && index.has(n.id)) visit(n.id);
  return cycles;
}

/** Every stage that depends on `id`, directly or transitively. */
export function dependentsOf(nodes: readonly DagNode[], id: string): string[] {
  const out: string[] = [];
  const queue = [id];
  const seen = new Set<string>([id]);
  while (queue.length > 0) {
    const cur = queue.shift()!;
    for (const n of nodes) {
      if (!seen.has(n.id) && n.needs.includes(cur)) {
        seen.add(n.id);
        out.push(n.id);
        queue.push(n.id);
      }
    }
  }
  return out;
}

/** Stages in an order where every stage follows its needs (input must be acyclic). */
export function topoOrder(nodes: readonly DagNode[]): string[] {
  const done = new Set<string>();
  const order: string[] = [];
  while (order.length < nodes.length) {
    const next = nodes.filter((n) => !done.has(n.id) && n.needs.every((d) => done.has(d)));
    if (next.length === 0) throw new Error('topoOrder: graph has a cycle');
    for (const n of next) {
      done.add(n.id);
      order.push(n.id);
    }
  }
  return order;
}
