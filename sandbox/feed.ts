/**
 * Durable subscriptions: what each module is fed, from the two durable logs
 * through its own cursors. Readings come from the reading log
 * (`runtime/readings.ts`), every other message a module subscribes to from
 * the modules' message log (`message_log.ts`).
 *
 * While a module keeps up, the rows of each durable commit go straight from
 * memory into its queue. When its queue is full (a slow module, a quarantine,
 * the rate limit, a restart), it stops taking them and falls behind; it then
 * reads the log from its position (`refill`), a chunk at a time, until it has
 * caught up. The reading log keeps every row a module still needs (a hold at
 * its committed cursor), so falling behind loses nothing, up to a bound: a
 * module more than `maxLag` entries behind in a log skips ahead to half that
 * lag, and what it skipped is counted (`dropped.lagging`), logged and shown.
 *
 * @module
 */
import { getLogger } from "../lib/mod.ts";
import {
  type LoggedReading,
  type Reading,
  type ReadingHold,
  readingPayload,
  readingPayloads,
  ReadingSeries,
  readingTopic,
} from "../runtime/mod.ts";
import type { LoggedMessage, MessageLog } from "./message_log.ts";
import type { Cursor } from "./cursors.ts";
import type { Delivery, ModuleRecord, Stream } from "./module_record.ts";

const log = getLogger(["edged", "modules"]);

/** Rows read from a log per query while catching up. */
const CHUNK = 512;
/** Newest readings kept in memory, topics and payloads built, for modules a little behind. */
const TAIL = 16384;

/**
 * The newest durable readings as deliveries (topics built once per commit,
 * payloads once per commit a module wants some of, for every module): a
 * module whose queue was full for a commit or two reads the rest from here
 * instead of querying the reading log again.
 */
class Tail {
  readonly #rows: (Reading | undefined)[] = new Array(TAIL);
  readonly #topics: (string | undefined)[] = new Array(TAIL);
  readonly #payloads: (Uint8Array | undefined)[] = new Array(TAIL);
  readonly #ats = new Float64Array(TAIL);
  /** The last id of each row's commit (its payloads are built together). */
  readonly #ends = new Float64Array(TAIL);
  readonly #series = new ReadingSeries();
  /** Id of the oldest row held (rows are contiguous up to {@link Tail.last}). */
  first = 1;
  last = 0;

  /** Rows of one commit: `rows[k]` has id `firstId + k`. */
  add(rows: readonly Reading[], firstId: number, at: number): void {
    if (firstId !== this.last + 1) this.first = firstId; // a gap: start over
    const end = firstId + rows.length - 1;
    for (let k = 0; k < rows.length; k++) {
      const r = rows[k];
      const i = (firstId + k) % TAIL;
      this.#rows[i] = r;
      this.#topics[i] = this.#series.of(r).topic;
      this.#payloads[i] = undefined;
      this.#ats[i] = at;
      this.#ends[i] = end;
    }
    this.last = end;
    this.first = Math.max(this.first, this.last - TAIL + 1);
  }

  has(id: number): boolean {
    return id >= this.first && id <= this.last;
  }

  topic(id: number): string {
    return this.#topics[id % TAIL]!;
  }

  /** The payload of `id`: the first asked of a commit builds the rest of the commit's too. */
  payload(id: number): Uint8Array {
    const hit = this.#payloads[id % TAIL];
    if (hit) return hit;
    const end = this.#ends[id % TAIL];
    const rows: Reading[] = [];
    for (let j = id; j <= end; j++) rows.push(this.#rows[j % TAIL]!);
    const { payloads } = readingPayloads(rows, this.#series);
    for (let k = 0; k < rows.length; k++) this.#payloads[(id + k) % TAIL] = payloads[k];
    return payloads[0];
  }

  at(id: number): number {
    return this.#ats[id % TAIL];
  }
}
/** Rows one refill looks at, at most (it goes on in the next turn). */
const SCAN_LIMIT = 8192;

/** What the feeder needs of the reading log. */
export interface FeedReadings {
  readonly durableId: number;
  readonly prunedId: number;
  readAfter(afterId: number, limit: number): LoggedReading[];
  countIn(
    afterId: number,
    upTo: number,
    accept: (device: string, metric: string) => boolean,
  ): number;
  hold(id: number): ReadingHold;
}

/** Options of {@link Feeder}. */
export interface FeederOptions {
  readings: FeedReadings;
  messages: MessageLog;
  /** Deliveries a module holds in memory (its queue); beyond, it reads the log later. */
  queueCapacity: number;
  /** Payload bytes a module's queue holds (one delivery always fits). */
  queueBytes: number;
  /**
   * Payload bytes the queues of all running modules hold together: each
   * module's share is this over how many run (at most `queueBytes`).
   */
  queueBytesTotal: number;
  /** Entries a module may fall behind in a log before it skips ahead. */
  maxLag: number;
  /**
   * Bytes the message log may hold for modules that are behind: past it, the
   * furthest behind skip ahead until it holds half as much.
   */
  messageLogBytes: number;
  /** The running modules. */
  records(): Iterable<ModuleRecord>;
  /** How many modules run. */
  running(): number;
  /** Moves `r`'s durable cursors in the next group transaction. */
  touch(r: ModuleRecord): void;
  /** `r` has new deliveries queued. */
  kick(r: ModuleRecord): void;
}

const now = () => performance.timeOrigin + performance.now();

/** Feeds the running modules of one module host from the durable logs. */
export class Feeder {
  readonly #o: FeederOptions;
  readonly #holds = new Map<ModuleRecord, ReadingHold>();
  readonly #tail = new Tail();

  /** A feeder over `options.readings` and `options.messages`. */
  constructor(options: FeederOptions) {
    this.#o = options;
  }

  /**
   * Where a module installed for the first time starts: at the end of each
   * log, or `backlog` entries before it (within what the logs still hold).
   */
  startOf(backlog: number): Cursor {
    const { readings, messages } = this.#o;
    return {
      readings: Math.max(readings.prunedId, readings.durableId - backlog),
      messages: Math.max(messages.prunedId, messages.durableId - backlog),
      skipped: 0,
    };
  }

  /** `r` runs: the reading log keeps what it still has to read. */
  attach(r: ModuleRecord): void {
    this.#holds.get(r)?.release();
    const f = r.streams.readings;
    if (!r.readsReadings) {
      // Nothing in the reading log is for it: its cursor follows the log's end.
      this.#follow(r, this.#o.readings.durableId);
      this.#holds.delete(r);
      return;
    }
    this.#holds.set(r, this.#o.readings.hold(f.committed));
  }

  /**
   * Whether `r`'s queue has no room for a delivery of `size` payload bytes:
   * past `queueCapacity` deliveries, or past its share of the payload bytes
   * (`queueBytes`, or less when many modules run: `queueBytesTotal` over how
   * many). One delivery always fits, so a module is never stuck behind a
   * large payload; the rest waits in its log, from where `refill` reads it.
   */
  #full(r: ModuleRecord, size: number): boolean {
    if (r.queue.length >= this.#o.queueCapacity) return true;
    if (r.queue.length === 0) return false;
    const share = Math.floor(this.#o.queueBytesTotal / Math.max(1, this.#o.running()));
    return r.queueBytes + size > Math.min(this.#o.queueBytes, share);
  }

  /** A module that reads no readings is done with the reading log up to `id` at once. */
  #follow(r: ModuleRecord, id: number): void {
    const f = r.streams.readings;
    f.next = Math.max(f.next, id);
    f.committed = Math.max(f.committed, id);
  }

  /** `r` stopped (removed, or replaced by a new record): it holds nothing any more. */
  detach(r: ModuleRecord): void {
    this.#holds.get(r)?.release();
    this.#holds.delete(r);
  }

  /** `r`'s cursors are durable at `committed`: the reading log may let go below. */
  committed(r: ModuleRecord): void {
    this.#holds.get(r)?.set(r.streams.readings.committed);
  }

  /**
   * Rows of one durable reading-log commit (`rows[k]` has id `firstId + k`):
   * to every module that keeps up.
   */
  onReadings(rows: readonly Reading[], firstId: number): void {
    if (rows.length === 0) return;
    const first = firstId;
    const last = firstId + rows.length - 1;
    let readers = false;
    for (const r of this.#o.records()) {
      if (r.readsReadings) readers = true;
      else this.#follow(r, last);
    }
    if (!readers) return; // no module reads readings: nothing to keep
    this.#tail.add(rows, firstId, now());
    for (const r of this.#o.records()) {
      // Behind: it reads the tail or the log itself (refill).
      if (r.readsReadings && r.streams.readings.next === first - 1) this.#fromTail(r, last);
    }
    this.#checkLag("readings", this.#o.readings.durableId);
  }

  /** Queues what `r` wants of the tail after its position, up to `last`, as far as its queue has room. */
  #fromTail(r: ModuleRecord, last: number): void {
    const tail = this.#tail;
    const f = r.streams.readings;
    const before = r.queue.length;
    const max = r.manifest.limits.max_payload_bytes;
    for (let id = f.next + 1; id <= last; id++) {
      const topic = tail.topic(id);
      if (r.wants(topic)) {
        const payload = tail.payload(id);
        if (this.#full(r, payload.length)) break;
        if (payload.length > max) r.s.dropped.oversize++;
        else r.enqueue({ topic, payload, stream: "readings", id, at: tail.at(id) });
      }
      f.next = id;
    }
    if (r.queue.length > before) this.#o.kick(r);
    else if (r.queue.length === 0 && r.sent.length === 0) this.#o.touch(r);
  }

  /** Rows of one durable message-log commit: to every module that keeps up. */
  onMessages(rows: LoggedMessage[]): void {
    if (rows.length === 0) return;
    const first = rows[0].id;
    const at = now();
    for (const r of this.#o.records()) {
      const f = r.streams.messages;
      if (f.next !== first - 1) continue;
      const before = r.queue.length;
      const self = `module:${r.manifest.name}`;
      for (const m of rows) {
        if (m.source !== self && r.wants(m.topic)) {
          if (this.#full(r, m.payload.length)) break;
          if (m.payload.length > r.manifest.limits.max_payload_bytes) r.s.dropped.oversize++;
          else r.enqueue({ topic: m.topic, payload: m.payload, stream: "messages", id: m.id, at });
        }
        f.next = m.id;
      }
      if (r.queue.length > before) this.#o.kick(r);
      else if (r.queue.length === 0 && r.sent.length === 0) this.#o.touch(r);
    }
    this.#checkLag("messages", this.#o.messages.durableId);
  }

  /**
   * Tops up `r`'s queue from the logs where it is behind. Returns true when
   * it is still behind with room in its queue (call again on the next turn).
   */
  refill(r: ModuleRecord): boolean {
    let more = false;
    for (const stream of ["readings", "messages"] as const) {
      if (this.#refillStream(r, stream)) more = true;
    }
    return more;
  }

  #refillStream(r: ModuleRecord, stream: Stream): boolean {
    const f = r.streams[stream];
    const cap = this.#o.queueCapacity;
    const head = stream === "readings" ? this.#o.readings.durableId : this.#o.messages.durableId;
    if (stream === "readings" && !r.readsReadings) {
      this.#follow(r, head);
      return false;
    }
    if (stream === "readings" && this.#tail.has(f.next + 1) && r.queue.length < cap) {
      this.#fromTail(r, Math.min(head, this.#tail.last));
      return f.next < head && r.queue.length < cap;
    }
    const self = `module:${r.manifest.name}`;
    let scanned = 0;
    let took = false;
    const moved = f.next;
    let full = false;
    while (!full && f.next < head && r.queue.length < cap) {
      if (scanned >= SCAN_LIMIT) break;
      // Rows past what fits in the queue would be read again next time.
      const limit = Math.min(CHUNK, head - f.next, Math.max(64, cap - r.queue.length));
      const rows: (LoggedReading | LoggedMessage)[] = stream === "readings"
        ? this.#o.readings.readAfter(f.next, limit)
        : this.#o.messages.readAfter(f.next, limit);
      if (rows.length === 0 || rows[0].id > f.next + 1) {
        // Pruned before this module read them: it was not running and held nothing.
        const upTo = rows.length === 0 ? head : rows[0].id - 1;
        this.#lose(r, stream, upTo - f.next, `entries ${f.next + 1}..${upTo} were pruned`);
        f.next = upTo;
        if (rows.length === 0) break;
      }
      for (const row of rows) {
        let topic: string;
        let payload: Uint8Array | undefined;
        let at: number;
        if ("device_id" in row) {
          topic = readingTopic(row);
          at = row.receivedMs;
          if (r.wants(topic)) payload = readingPayload(row);
        } else {
          topic = row.topic;
          at = row.createdMs;
          if (row.source !== self && r.wants(topic)) payload = row.payload;
        }
        if (payload) {
          if (this.#full(r, payload.length)) {
            full = true;
            break;
          }
          if (payload.length > r.manifest.limits.max_payload_bytes) r.s.dropped.oversize++;
          else {
            r.enqueue({ topic, payload, stream, id: row.id, at } satisfies Delivery);
            took = true;
          }
        }
        f.next = row.id;
      }
      scanned += rows.length;
    }
    if (took) this.#o.kick(r);
    else if (f.next > moved && r.queue.length === 0 && r.sent.length === 0) this.#o.touch(r);
    return !full && f.next < head && r.queue.length < cap;
  }

  /** Modules more than `maxLag` behind in `stream` skip ahead to half of it. */
  #checkLag(stream: Stream, head: number): void {
    const max = this.#o.maxLag;
    const heads = { readings: this.#o.readings.durableId, messages: this.#o.messages.durableId };
    // Messages can be large (up to a module's max_payload_bytes each): their log is bounded in
    // bytes too, or a fast publisher and a slow subscriber could fill the disk.
    const maxBytes = this.#o.messageLogBytes;
    const held = stream === "messages" ? this.#o.messages.heldBytes : 0;
    const byBytes = stream === "messages" ? this.#o.messages.skipTarget(maxBytes) : undefined;
    for (const r of this.#o.records()) {
      const f = r.streams[stream];
      const lag = head - f.committed;
      if (
        r.lagging && heads.readings - r.streams.readings.committed < max / 4 &&
        heads.messages - r.streams.messages.committed < max / 4
      ) r.lagging = false;
      const overBytes = byBytes !== undefined && f.committed < byBytes;
      if (lag <= max && !overBytes) continue;
      const target = Math.max(lag > max ? head - Math.floor(max / 2) : 0, overBytes ? byBytes : 0);
      let skipped = r.dropQueued(stream, target);
      if (target > f.next) {
        skipped += stream === "readings"
          ? this.#o.readings.countIn(f.next, target, (d, m) => r.wants(`sensors/${d}/${m}`))
          : this.#o.messages.countIn(
            f.next,
            target,
            (t, source) => source !== `module:${r.manifest.name}` && r.wants(t),
          );
        f.next = target;
      }
      r.lagging = true;
      this.#lose(
        r,
        stream,
        skipped,
        lag > max
          ? `${lag} ${stream} behind (modules.max_lag ${max}): skipped ahead to ${target}`
          : `the message log holds ${held} bytes (modules.message_log_bytes ${maxBytes}), ` +
            `${lag} messages behind: skipped ahead to ${target}`,
      );
      this.#o.touch(r);
    }
  }

  #lose(r: ModuleRecord, stream: Stream, n: number, why: string): void {
    r.s.dropped.lagging += n;
    log.warning("module {name} lost {n} {stream}: {why}", {
      name: r.manifest.name,
      n,
      stream,
      why,
    });
  }
}
