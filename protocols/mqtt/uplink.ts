/**
 * The uplink sender: reads the two durable streams (readings from the reading
 * log, module messages from the outbox), merges them in arrival order, keeps
 * up to a window of QoS 1 PUBLISHes in flight, and moves the durable cursors
 * only over the contiguous prefix whose PUBACKs have arrived.
 *
 * Nothing here relies on the MQTT client's own (in-memory) queues: every
 * connection starts from the durable cursors, and what was in flight when a
 * connection dropped is simply sent again (MQTT 3.1.1 section 4.3.2: QoS 1 is
 * "at least once"; the receiver may see duplicates).
 *
 * Per-topic order holds because one connection carries everything and a
 * broker forwards one client's PUBLISHes on a topic in order (MQTT 3.1.1
 * section 4.6); after a reconnect the replay restarts at the oldest
 * unacknowledged message, so a duplicate may repeat, but never overtake.
 *
 * @module
 */
import type { ReadingLog, StoredReading } from "../../runtime/mod.ts";
import type { Outbox, OutboxRow } from "./outbox.ts";

/**
 * Sends one QoS 1 message. `onAck` runs on PUBACK, with an error when the
 * broker refused the message; when the connection drops first it never runs
 * (the message is sent again after the next `attach`).
 */
export interface Publisher {
  publish(topic: string, payload: Uint8Array | string, onAck: (err?: Error) => void): void;
  /** Buffers writes until the matching `uncork` (optional). */
  cork?(): void;
  /** Ends a `cork`. */
  uncork?(): void;
}

/** Counters the uplink keeps (read by the metrics). */
export interface UplinkStats {
  sent: number;
  acked: number;
  retried: number;
  rejected: number;
  /** Messages per second of the last finished replay after a (re)connect. */
  lastReplayRate: number;
  /** Messages in the last finished replay. */
  lastReplayCount: number;
}

/** Options for {@linkcode Uplink}. */
export interface UplinkOptions {
  readings: ReadingLog;
  outbox: Outbox;
  /** Topic prefix, e.g. `edged/pump-7`. */
  prefix: string;
  /** Whether readings are sent at all. */
  forwardReadings: boolean;
  /** Milliseconds between cursor commits. @default {100} */
  commitIntervalMs?: number;
  /**
   * Runs a cursor commit; the component runs it without fsync: a cursor that
   * a power cut rolls back only means duplicates, never a loss.
   */
  runCommit?: (commit: () => void) => void;
  /** Called when the broker rejected a message (MQTT 5 reason code >= 0x80). */
  onRejected?: (topic: string, err: Error) => void;
  /** Called when a replay after connect finished. */
  onReplayed?: (count: number, seconds: number) => void;
}

const BATCH = 1000;
const encoder = new TextEncoder();

interface Entry {
  id: number;
  acked: boolean;
}

/** An ordered list of in-flight ids whose acknowledged prefix can be popped. */
class InFlight {
  #items: Entry[] = [];
  #head = 0;
  /** Highest id of the acknowledged prefix. */
  ackedId: number;
  constructor(ackedId: number) {
    this.ackedId = ackedId;
  }
  push(id: number): Entry {
    const e = { id, acked: false };
    this.#items.push(e);
    return e;
  }
  ack(e: Entry): void {
    e.acked = true;
    const items = this.#items;
    while (this.#head < items.length && items[this.#head].acked) {
      this.ackedId = Math.max(this.ackedId, items[this.#head].id);
      this.#head++;
    }
    if (this.#head > 4096 && this.#head * 2 > items.length) {
      this.#items = items.slice(this.#head);
      this.#head = 0;
    }
  }
  clear(): void {
    this.#items = [];
    this.#head = 0;
  }
}

/**
 * The sender. `attach` on every CONNACK, `detach` on every close.
 *
 * @example
 * ```ts ignore
 * const up = new Uplink({ readings, outbox, prefix: "edged/pump-7", forwardReadings: true });
 * client.on("connect", () => up.attach(publisher, 1000));
 * client.on("close", () => up.detach());
 * ```
 */
export class Uplink {
  #o: Required<Omit<UplinkOptions, "onRejected" | "onReplayed">> & UplinkOptions;
  #pub: Publisher | null = null;
  #window = 1;
  #generation = 0;
  #inflight = 0;
  #readings: InFlight;
  #messages: InFlight;
  #readingNext: number;
  /** Highest reading id known to be on disk: nothing above it is sent. */
  #readingDurable: number;
  #messageNext: number;
  #rBuf: StoredReading[] = [];
  #rHead = 0;
  #oBuf: OutboxRow[] = [];
  #oHead = 0;
  #messagesCommitted = 0;
  #maxSentReading = 0;
  #maxSentMessage = 0;
  #commitTimer: ReturnType<typeof setTimeout> | undefined;
  #pumpQueued = false;
  #replay: { start: number; readingsTo: number; messagesTo: number; count: number } | null = null;
  /** Counters for metrics. */
  readonly stats: UplinkStats = {
    sent: 0,
    acked: 0,
    retried: 0,
    rejected: 0,
    lastReplayRate: 0,
    lastReplayCount: 0,
  };

  /** Builds the sender over the durable streams. */
  constructor(options: UplinkOptions) {
    this.#o = { commitIntervalMs: 100, runCommit: (fn) => fn(), ...options };
    this.#readings = new InFlight(options.readings.uplinkedId);
    this.#messages = new InFlight(0);
    this.#readingNext = this.#readings.ackedId;
    this.#readingDurable = options.readings.lastId;
    this.#messageNext = 0;
  }

  /**
   * Readings up to `durableId` are on disk (from the reading log's commit
   * listener). Sending a committed but not yet synced reading could, after a
   * power cut, put an id on the wire that a different reading reuses later.
   */
  readingsDurable(durableId?: number): void {
    const id = durableId ?? this.#o.readings.lastId;
    if (id > this.#readingDurable) this.#readingDurable = id;
    this.wake();
  }

  /** Whether a connection is attached. */
  get connected(): boolean {
    return this.#pub !== null;
  }

  /** Messages sent and not yet acknowledged on this connection. */
  get inflight(): number {
    return this.#inflight;
  }

  /** Starts sending over a fresh connection, from the durable cursors. */
  attach(pub: Publisher, window: number): void {
    this.detach();
    this.#pub = pub;
    this.#window = Math.max(1, window);
    const backlog = this.#backlog();
    this.#replay = backlog > 0
      ? {
        start: performance.now(),
        readingsTo: this.#o.readings.lastId,
        messagesTo: this.#o.outbox.lastId,
        count: backlog,
      }
      : null;
    this.wake();
  }

  /** Forgets everything in flight: it will be sent again on the next connection. */
  detach(): void {
    this.#generation++;
    this.#pub = null;
    this.#inflight = 0;
    this.#readings.clear();
    this.#messages.clear();
    this.#readingNext = Math.max(this.#readings.ackedId, this.#o.readings.uplinkedId);
    this.#messageNext = this.#messages.ackedId;
    this.#rBuf = [];
    this.#rHead = 0;
    this.#oBuf = [];
    this.#oHead = 0;
    this.#replay = null;
  }

  /** New data may be waiting: send it if the window allows. */
  wake(): void {
    if (this.#pumpQueued || this.#pub === null) return;
    this.#pumpQueued = true;
    queueMicrotask(() => {
      this.#pumpQueued = false;
      this.#pump();
    });
  }

  /** Writes the acknowledged cursors to disk now. */
  commit(): void {
    clearTimeout(this.#commitTimer);
    this.#commitTimer = undefined;
    const r = this.#readings.ackedId;
    const m = this.#messages.ackedId;
    const readingsDue = this.#o.forwardReadings && r > this.#o.readings.uplinkedId;
    const messagesDue = m > this.#messagesCommitted;
    if (!readingsDue && !messagesDue) return;
    this.#o.runCommit(() => {
      if (readingsDue) this.#o.readings.markUplinked(r);
      if (messagesDue) this.#o.outbox.ackUpTo(m);
    });
    this.#messagesCommitted = m;
  }

  #backlog(): number {
    const r = this.#o.forwardReadings ? this.#o.readings.pending : 0;
    return r + this.#o.outbox.pending;
  }

  #pump(): void {
    const pub = this.#pub;
    if (pub === null || this.#inflight >= this.#window) return;
    const gen = this.#generation;
    // One burst, one write: the PUBLISH packets go out in a single writev
    // instead of one system call each.
    pub.cork?.();
    try {
      while (this.#inflight < this.#window && this.#pub === pub) {
        if (!this.#sendNext(pub, gen)) break;
      }
    } finally {
      pub.uncork?.();
    }
  }

  /** Sends the next message in merged order; false when nothing waits. */
  #sendNext(pub: Publisher, gen: number): boolean {
    const reading = this.#o.forwardReadings ? this.#peekReading() : undefined;
    const message = this.#peekMessage();
    // A module message goes first when it was accepted before the reading
    // was committed: that is the order the bus saw them in.
    if (message && (!reading || message.readingMark < reading.id)) {
      this.#oHead++;
      this.#messageNext = message.id;
      const entry = this.#messages.push(message.id);
      if (message.id <= this.#maxSentMessage) this.stats.retried++;
      else this.#maxSentMessage = message.id;
      this.#send(pub, gen, `${this.#o.prefix}/up/${message.topic}`, message.payload, entry, false);
      return true;
    }
    if (reading) {
      this.#rHead++;
      this.#readingNext = reading.id;
      const entry = this.#readings.push(reading.id);
      if (reading.id <= this.#maxSentReading) this.stats.retried++;
      else this.#maxSentReading = reading.id;
      const payload = JSON.stringify({
        id: reading.id,
        device_id: reading.device_id,
        metric: reading.metric,
        value: reading.value,
        timestamp: reading.timestamp,
      });
      this.#send(
        pub,
        gen,
        `${this.#o.prefix}/up/sensors/${reading.device_id}/${reading.metric}`,
        encoder.encode(payload),
        entry,
        true,
      );
      return true;
    }
    return false;
  }

  #peekReading(): StoredReading | undefined {
    const log = this.#o.readings;
    if (this.#readingNext < log.uplinkedId) {
      // The cursor jumped (dropped by policy or age): skip what it passed.
      this.#readingNext = log.uplinkedId;
      this.#rBuf = [];
      this.#rHead = 0;
    }
    if (this.#rHead >= this.#rBuf.length) {
      const durable = Math.min(this.#readingDurable, log.lastId);
      if (this.#readingNext >= durable) return undefined;
      this.#rBuf = log.readAfter(this.#readingNext, Math.min(BATCH, durable - this.#readingNext));
      this.#rHead = 0;
    }
    return this.#rBuf[this.#rHead];
  }

  #peekMessage(): OutboxRow | undefined {
    if (this.#oHead >= this.#oBuf.length) {
      if (this.#messageNext >= this.#o.outbox.lastId) return undefined;
      this.#oBuf = this.#o.outbox.readAfter(this.#messageNext, BATCH);
      this.#oHead = 0;
    }
    return this.#oBuf[this.#oHead];
  }

  #send(
    pub: Publisher,
    gen: number,
    topic: string,
    payload: Uint8Array,
    entry: Entry,
    isReading: boolean,
  ): void {
    this.#inflight++;
    this.stats.sent++;
    pub.publish(topic, payload, (err) => {
      if (gen !== this.#generation) return; // a closed connection's leftovers
      this.#inflight--;
      if (err) {
        // MQTT 5 section 3.4.2.1: a reason code >= 0x80 means the broker
        // will not take this message; retrying would block the stream forever.
        this.stats.rejected++;
        this.#o.onRejected?.(topic, err);
      } else {
        this.stats.acked++;
      }
      (isReading ? this.#readings : this.#messages).ack(entry);
      this.#scheduleCommit();
      this.#checkReplay();
      this.wake();
    });
  }

  #scheduleCommit(): void {
    if (this.#commitTimer !== undefined) return;
    this.#commitTimer = setTimeout(() => {
      this.#commitTimer = undefined;
      try {
        this.commit();
      } catch { /* the store closed under us; the next start replays */ }
    }, this.#o.commitIntervalMs);
  }

  #checkReplay(): void {
    const r = this.#replay;
    if (r === null) return;
    const readingsDone = !this.#o.forwardReadings || this.#readings.ackedId >= r.readingsTo ||
      this.#o.readings.uplinkedId >= r.readingsTo;
    const messagesDone = this.#messages.ackedId >= r.messagesTo || this.#o.outbox.pending === 0;
    if (!readingsDone || !messagesDone) return;
    const seconds = (performance.now() - r.start) / 1000;
    this.#replay = null;
    this.stats.lastReplayCount = r.count;
    this.stats.lastReplayRate = seconds > 0 ? r.count / seconds : r.count;
    this.#o.onReplayed?.(r.count, seconds);
  }

  /** Stops the commit timer after a final commit. */
  close(): void {
    try {
      this.commit();
    } catch { /* store already closed */ }
    this.detach();
  }
}
