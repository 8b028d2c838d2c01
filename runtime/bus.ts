/**
 * The in-process message bus: publish/subscribe with MQTT topic filters.
 *
 * Topics and filters follow the MQTT rules of `lib/topics.ts`.
 *
 * @module
 */
import { topicMatches, validateFilter, validateTopic } from "../lib/mod.ts";

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
