/**
 * MQTT topic filters (MQTT 3.1.1 section 4.7; MQTT 5.0 section 4.7), used for
 * manifest `subscribe` and `publish` grants.
 *
 * @module
 */

/**
 * Returns a reason when `filter` is not a valid MQTT topic filter (4.7.1):
 * non-empty, `#` only as the whole last level, `+` only as a whole level.
 */
export function filterProblem(filter: string): string | undefined {
  if (filter.length === 0) return "topic filter is empty";
  if (new TextEncoder().encode(filter).length > 65535) {
    return "topic filter longer than 65535 bytes";
  }
  if (filter.includes("\u0000")) return "topic filter contains NUL";
  const levels = filter.split("/");
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i];
    if (l.includes("#") && (l !== "#" || i !== levels.length - 1)) {
      return `'#' must be a whole last level in "${filter}"`;
    }
    if (l.includes("+") && l !== "+") return `'+' must be a whole level in "${filter}"`;
  }
  return undefined;
}

/** Returns a reason when `topic` is not a valid topic name (4.7.3): no wildcards. */
export function topicProblem(topic: string): string | undefined {
  if (topic.length === 0) return "topic is empty";
  if (/[#+]/.test(topic) || topic.includes("\u0000")) {
    return `topic "${topic}" contains a wildcard or NUL`;
  }
  if (new TextEncoder().encode(topic).length > 65535) return "topic longer than 65535 bytes";
  return undefined;
}

/** True when `topic` matches `filter` (4.7.1.2 `#`, 4.7.1.3 `+`; 4.7.2 `$` topics). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split("/");
  const t = topic.split("/");
  if (topic.startsWith("$") && (f[0] === "#" || f[0] === "+")) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true;
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}
