/**
 * The in-process message bus: publish/subscribe with MQTT topic filters, plus
 * durable sinks.
 *
 * A subscriber is live: it is called synchronously, at most once, and never
 * again after a crash. A sink is durable: it writes the message inside a
 * group-commit transaction of the store (`commit.ts`), so the message
 * survives `kill -9` from the moment that transaction is durable. The MQTT
 * outbox (`uplink/#`) and the modules' message log are sinks.
 *
 * Topics and filters follow the MQTT rules of `lib/topics.ts`.
 *
 * @module
 */
import { TopicCache, topicMatches, validateFilter, validateTopic } from "../lib/mod.ts";

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

/** A durable destination for bus messages (see the module comment). */
export interface BusSink {
  /** Whether `msg` is for this sink; called for every message, so it must be cheap. */
  wants(msg: BusMessage): boolean;
  /** Writes `msg`; runs inside a group transaction of the store's committer. */
  write(msg: BusMessage): void;
}

/** Where {@linkcode Bus.publish} stages sink writes (the store's `GroupCommit`). */
export interface SinkStager {
  stage(write: () => void): Promise<void>;
}

/** Topics whose {@linkcode Bus.wants} answer is remembered (readings repeat their topics). */
const WANTS_CACHE = 1024;

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
  /** Answers of `wants` for the current subscriptions; emptied when they change. */
  #wants = new TopicCache(WANTS_CACHE, (topic) => {
    for (const sub of this.#subs) if (topicMatches(sub.filter, topic)) return true;
    return false;
  });
  #sinks = new Set<BusSink>();
  #onError: (err: unknown, msg: BusMessage) => void;
  #stager: SinkStager | undefined;
  /** Messages published so far. */
  published = 0;
  /** Handler failures so far. */
  handlerErrors = 0;

  /**
   * @param options.onError called when a handler or a sink throws
   * @param options.commits where `publish` stages sink writes; without it sinks write at once
   */
  constructor(
    options: { onError?: (err: unknown, msg: BusMessage) => void; commits?: SinkStager } = {},
  ) {
    this.#onError = options.onError ?? (() => {});
    this.#stager = options.commits;
  }

  /** Adds a durable sink; returns the function that removes it. */
  addSink(sink: BusSink): () => void {
    this.#sinks.add(sink);
    return () => void this.#sinks.delete(sink);
  }

  /**
   * Writes `msg` to every sink that wants it, now: the caller is inside a
   * group transaction (a module's effects). Returns how many wrote it.
   */
  persist(msg: BusMessage): number {
    let n = 0;
    for (const sink of this.#sinks) {
      if (!sink.wants(msg)) continue;
      sink.write(msg);
      n++;
    }
    return n;
  }

  /** Whether any sink wants `msg`. */
  wantsDurable(msg: BusMessage): boolean {
    for (const sink of this.#sinks) if (sink.wants(msg)) return true;
    return false;
  }

  /** Hands `msg` to the live subscribers only (its sinks have it already); returns how many got it. */
  deliver(msg: BusMessage): number {
    this.published++;
    let delivered = 0;
    for (const sub of this.#subs) {
      if (!topicMatches(sub.filter, msg.topic)) continue;
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

  /** Subscribes `handler` to `filter`; returns the function that unsubscribes. */
  subscribe(filter: string, handler: BusHandler): () => void {
    validateFilter(filter);
    const sub = { filter, handler };
    this.#subs.add(sub);
    this.#wants.clear();
    return () => {
      if (this.#subs.delete(sub)) this.#wants.clear();
    };
  }

  /**
   * Publishes one message: to every matching live subscriber now, and to the
   * sinks that want it in the next group transaction (durable one event-loop
   * turn later). Returns how many live subscribers got it.
   */
  publish(topic: string, payload: Uint8Array, source = "internal"): number {
    validateTopic(topic);
    const msg: BusMessage = { topic, payload, source };
    if (this.#sinks.size > 0 && this.wantsDurable(msg)) {
      if (this.#stager) {
        this.#stager.stage(() => void this.persist(msg)).catch((err) => {
          this.handlerErrors++;
          this.#onError(err, msg);
        });
      } else {
        try {
          this.persist(msg);
        } catch (err) {
          this.handlerErrors++;
          this.#onError(err, msg);
        }
      }
    }
    return this.deliver(msg);
  }

  /** Whether any subscription matches `topic` (lets publishers skip encoding). */
  wants(topic: string): boolean {
    return this.#wants.get(topic);
  }

  /** Number of live subscriptions. */
  get subscriptions(): number {
    return this.#subs.size;
  }
}
