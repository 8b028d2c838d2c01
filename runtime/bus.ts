/**
 * The in-process message bus: publish/subscribe with MQTT topic filters.
 *
 * Topic and filter rules follow MQTT 3.1.1 section 4.7: levels separated by
 * `/`, `+` matches exactly one level, `#` matches any number of trailing levels
 * (including none) and may only stand last.
 *
 * @module
 */

/** One message on the bus. */
export interface BusMessage {
  /** Concrete topic, never containing wildcards. */
  topic: string;
  /** Opaque payload bytes (JSON for readings). */
  payload: Uint8Array;
  /** Who published it: `ingest`, `module:<name>`, `mqtt`, ... */
  source: string;
}

/** A subscriber callback. Called synchronously; must queue heavy work itself. */
export type BusHandler = (msg: BusMessage) => void;

/** Thrown for a topic or filter that breaks the MQTT rules. */
export class TopicError extends TypeError {
  /** Builds the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TopicError";
  }
}

const MAX_TOPIC_BYTES = 65535; // MQTT 3.1.1 section 1.5.3: UTF-8 string length prefix
const encoder = new TextEncoder();

/**
 * Checks a concrete topic name (MQTT 3.1.1 section 4.7.3): non-empty, no
 * wildcards, no NUL, at most 65535 UTF-8 bytes.
 *
 * @example
 * ```ts
 * validateTopic("sensors/pump-7/temperature");
 * ```
 */
export function validateTopic(topic: string): void {
  if (typeof topic !== "string" || topic.length === 0) {
    throw new TopicError("topic must be a non-empty string");
  }
  if (topic.includes("+") || topic.includes("#") || topic.includes("\0")) {
    throw new TopicError(`topic must not contain '+', '#' or NUL: ${JSON.stringify(topic)}`);
  }
  if (encoder.encode(topic).length > MAX_TOPIC_BYTES) {
    throw new TopicError(`topic is longer than ${MAX_TOPIC_BYTES} bytes`);
  }
}

/**
 * Checks a topic filter (MQTT 3.1.1 section 4.7.1): `+` and `#` only as whole
 * levels, `#` only as the last level.
 *
 * @example
 * ```ts
 * validateFilter("sensors/+/temperature");
 * ```
 */
export function validateFilter(filter: string): void {
  if (typeof filter !== "string" || filter.length === 0) {
    throw new TopicError("topic filter must be a non-empty string");
  }
  if (filter.includes("\u0000")) throw new TopicError("topic filter must not contain NUL");
  const levels = filter.split("/");
  levels.forEach((level, i) => {
    if (level.includes("#") && (level !== "#" || i !== levels.length - 1)) {
      throw new TopicError(
        `'#' must be a whole level and the last one in filter ${JSON.stringify(filter)}`,
      );
    }
    if (level.includes("+") && level !== "+") {
      throw new TopicError(`'+' must be a whole level in filter ${JSON.stringify(filter)}`);
    }
  });
}

/**
 * Whether `topic` matches `filter` (MQTT 3.1.1 section 4.7). Topics starting
 * with `$` are not matched by a leading wildcard (section 4.7.2).
 *
 * @example
 * ```ts
 * topicMatches("sensors/#", "sensors/pump-7/temperature"); // true
 * ```
 */
export function topicMatches(filter: string, topic: string): boolean {
  if (filter === "#") return !topic.startsWith("$");
  const f = filter.split("/");
  const t = topic.split("/");
  if ((f[0] === "+" || f[0] === "#") && topic.startsWith("$")) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true; // also matches the parent level (section 4.7.1.2)
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

interface Subscription {
  filter: string;
  handler: BusHandler;
}

/**
 * In-process publish/subscribe. Delivery is synchronous and in publish order;
 * a handler that throws is isolated (counted, logged by the caller's
 * `onError`) and never stops delivery to the others.
 *
 * @example
 * ```ts
 * const bus = new Bus();
 * const off = bus.subscribe("sensors/+/temperature", (m) => console.log(m.topic));
 * bus.publish("sensors/pump-7/temperature", new TextEncoder().encode("{}"));
 * off();
 * ```
 */
export class Bus {
  #subs = new Set<Subscription>();
  #onError: (err: unknown, msg: BusMessage) => void;
  /** Messages published so far. */
  published = 0;
  /** Handler failures so far. */
  handlerErrors = 0;

  /** @param options.onError called when a handler throws */
  constructor(options: { onError?: (err: unknown, msg: BusMessage) => void } = {}) {
    this.#onError = options.onError ?? (() => {});
  }

  /** Subscribes `handler` to `filter`; returns the function that unsubscribes. */
  subscribe(filter: string, handler: BusHandler): () => void {
    validateFilter(filter);
    const sub = { filter, handler };
    this.#subs.add(sub);
    return () => void this.#subs.delete(sub);
  }

  /** Publishes one message to every matching subscriber; returns how many got it. */
  publish(topic: string, payload: Uint8Array, source = "internal"): number {
    validateTopic(topic);
    const msg: BusMessage = { topic, payload, source };
    this.published++;
    let delivered = 0;
    for (const sub of this.#subs) {
      if (!topicMatches(sub.filter, topic)) continue;
      delivered++;
      try {
        sub.handler(msg);
      } catch (err) {
        this.handlerErrors++;
        this.#onError(err, msg);
      }
    }
    return delivered;
  }

  /** Whether any subscription matches `topic` (lets publishers skip encoding). */
  wants(topic: string): boolean {
    for (const sub of this.#subs) if (topicMatches(sub.filter, topic)) return true;
    return false;
  }

  /** Number of live subscriptions. */
  get subscriptions(): number {
    return this.#subs.size;
  }
}
