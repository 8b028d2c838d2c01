/**
 * MQTT topic names and filters (MQTT 3.1.1 section 4.7, the same in MQTT 5.0):
 * levels separated by `/`, `+` matches exactly one level, `#` any number of
 * trailing levels (including none) and only as the last level. The one set of
 * rules for the bus, manifest grants and the MQTT component.
 *
 * @example
 * ```ts
 * import { topicMatches, validateFilter } from "./topics.ts";
 * validateFilter("sensors/+/temperature");
 * topicMatches("sensors/#", "sensors/pump-7/temperature"); // true
 * ```
 *
 * @module
 */
import { EdgedError } from "./errors.ts";

/** A topic or filter that breaks the MQTT rules. */
export class TopicError extends EdgedError {
  override readonly code = "invalid_topic";
  override readonly status = 400;
}

/** MQTT 3.1.1 section 1.5.3: a UTF-8 string has a 16-bit length prefix. */
const MAX_TOPIC_BYTES = 65535;
const encoder = new TextEncoder();

/**
 * The reason `topic` is not a valid topic name (section 4.7.3: non-empty, no
 * wildcards, no NUL, at most 65535 UTF-8 bytes), or undefined when it is.
 */
export function topicProblem(topic: string): string | undefined {
  if (typeof topic !== "string" || topic.length === 0) return "topic must be a non-empty string";
  if (topic.includes("+") || topic.includes("#") || topic.includes("\u0000")) {
    return `topic must not contain '+', '#' or NUL: ${JSON.stringify(topic)}`;
  }
  if (encoder.encode(topic).length > MAX_TOPIC_BYTES) {
    return `topic is longer than ${MAX_TOPIC_BYTES} bytes`;
  }
  return undefined;
}

/**
 * The reason `filter` is not a valid topic filter (section 4.7.1: `+` and `#`
 * only as whole levels, `#` only last), or undefined when it is.
 */
export function filterProblem(filter: string): string | undefined {
  if (typeof filter !== "string" || filter.length === 0) {
    return "topic filter must be a non-empty string";
  }
  if (filter.includes("\u0000")) return "topic filter must not contain NUL";
  if (encoder.encode(filter).length > MAX_TOPIC_BYTES) {
    return `topic filter is longer than ${MAX_TOPIC_BYTES} bytes`;
  }
  const levels = filter.split("/");
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i];
    if (level.includes("#") && (level !== "#" || i !== levels.length - 1)) {
      return `'#' must be a whole level and the last one in filter ${JSON.stringify(filter)}`;
    }
    if (level.includes("+") && level !== "+") {
      return `'+' must be a whole level in filter ${JSON.stringify(filter)}`;
    }
  }
  return undefined;
}

/** Throws {@linkcode TopicError} unless `topic` is a valid topic name. */
export function validateTopic(topic: string): void {
  const problem = topicProblem(topic);
  if (problem) throw new TopicError(problem);
}

/** Throws {@linkcode TopicError} unless `filter` is a valid topic filter. */
export function validateFilter(filter: string): void {
  const problem = filterProblem(filter);
  if (problem) throw new TopicError(problem);
}

/**
 * Whether `topic` matches `filter` (section 4.7.1). Topics starting with `$`
 * are not matched by a leading wildcard (section 4.7.2).
 */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split("/");
  if ((f[0] === "+" || f[0] === "#") && topic.startsWith("$")) return false;
  const t = topic.split("/");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true; // also matches the parent level (section 4.7.1.2)
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/**
 * Something worked out from a topic, remembered for the topics that repeat
 * (readings and deliveries repeat theirs), within a bound an attacker cannot
 * push: at most `entries` topics, each of at most 256 UTF-16 units (a topic may
 * be 64 KiB, and thousands of long distinct ones must not be kept: at most
 * about 2 MiB of topic text for 4096 entries). Longer topics are worked out
 * every time; a full cache starts over.
 *
 * @example
 * ```ts
 * import { TopicCache } from "./topics.ts";
 * const bytes = new TopicCache<Uint8Array>(1024, (t) => new TextEncoder().encode(t));
 * bytes.get("sensors/pump-7/temperature"); // computed once, then remembered
 * ```
 */
export class TopicCache<T> {
  /** Longest topic remembered, in UTF-16 units. */
  static readonly MAX_CHARS = 256;
  readonly #entries: number;
  readonly #compute: (topic: string) => T;
  readonly #map = new Map<string, T>();

  /** A cache of up to `entries` topics of what `compute` makes of them. */
  constructor(entries: number, compute: (topic: string) => T) {
    this.#entries = entries;
    this.#compute = compute;
  }

  /** What `compute` makes of `topic`, remembered when the topic is short enough. */
  get(topic: string): T {
    if (topic.length > TopicCache.MAX_CHARS) return this.#compute(topic);
    let v = this.#map.get(topic);
    if (v === undefined) {
      v = this.#compute(topic);
      if (this.#map.size >= this.#entries) this.#map.clear();
      this.#map.set(topic, v);
    }
    return v;
  }

  /** Forgets everything (what `compute` depends on changed). */
  clear(): void {
    this.#map.clear();
  }

  /** Topics remembered. */
  get size(): number {
    return this.#map.size;
  }
}

/**
 * Bytes a stored message takes: its topic in UTF-8 plus its payload, as
 * {@linkcode MESSAGE_BYTES_SQL} counts a row of `topic` and `payload`
 * columns (the MQTT outbox, the modules' message log).
 */
export function messageBytes(topic: string, payload: Uint8Array): number {
  // Topics are mostly ASCII: one byte a character, no encoding needed.
  for (let i = 0; i < topic.length; i++) {
    if (topic.charCodeAt(i) > 0x7f) return encoder.encode(topic).length + payload.length;
  }
  return topic.length + payload.length;
}

/** SQL of a row's bytes, the same count as {@linkcode messageBytes}. */
export const MESSAGE_BYTES_SQL = "length(CAST(topic AS BLOB)) + length(payload)";
