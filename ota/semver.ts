/**
 * Release version order, shared by the repository tool (which orders
 * releases to build deltas from) and the device (which picks the newest
 * eligible release): both must agree.
 *
 * @module
 */

/**
 * Compares two versions by SemVer 2.0.0 precedence (section 11): numeric
 * core parts as numbers, a pre-release below its release, build metadata
 * ignored. Negative, zero or positive like a sort comparator.
 */
export function compareVersions(a: string, b: string): number {
  const split = (v: string) => {
    const [core, pre] = v.split("+")[0].split(/-(.*)/s);
    return { core: core.split("."), pre: pre?.split(".") };
  };
  const part = (p: string | undefined, q: string | undefined): number => {
    if (p === q) return 0;
    if (p === undefined) return -1;
    if (q === undefined) return 1;
    const pn = /^\d+$/.test(p);
    const qn = /^\d+$/.test(q);
    if (pn && qn) return Number(p) - Number(q);
    if (pn !== qn) return pn ? -1 : 1;
    return p < q ? -1 : 1;
  };
  const x = split(a);
  const y = split(b);
  for (let i = 0; i < Math.max(x.core.length, y.core.length); i++) {
    const c = part(x.core[i] ?? "0", y.core[i] ?? "0");
    if (c !== 0) return c;
  }
  if (!x.pre && !y.pre) return 0;
  if (!x.pre) return 1;
  if (!y.pre) return -1;
  for (let i = 0; i < Math.max(x.pre.length, y.pre.length); i++) {
    const c = part(x.pre[i], y.pre[i]);
    if (c !== 0) return c;
  }
  return 0;
}
