/**
 * A short class for a sandbox refusal reason, for the outcome counts.
 *
 * @module
 */

/** The first words of a reason before its details: `malformed module`, `import edge.nope`, ... */
export function reasonKind(reason: string): string {
  const head = reason.split(":")[0];
  return head.replace(/\b\d+\b/g, "N").replace(/ (import|export) .*$/, " $1").slice(0, 40);
}
