/**
 * Readings as bus messages: a committed reading is published as
 * `sensors/{device_id}/{metric}` with a JSON payload (docs/modules.md, "The ABI
 * v1": "Readings ingested over HTTP appear on the bus as ..."). The module
 * feeder builds the same bytes a commit at a time ({@linkcode readingPayloads}).
 *
 * @module
 */
import type { Bus } from "./bus.ts";
import type { Reading } from "./readings.ts";

const encoder = new TextEncoder();

/** The bus topic of a reading. */
export function readingTopic(r: Pick<Reading, "device_id" | "metric">): string {
  return `sensors/${r.device_id}/${r.metric}`;
}

/** The JSON payload of a reading on the bus. */
export function readingPayload(r: Reading): Uint8Array {
  return encoder.encode(JSON.stringify({
    device_id: r.device_id,
    metric: r.metric,
    value: r.value,
    timestamp: r.timestamp,
  }));
}

/** Device and metric pairs whose topic and payload prefix {@link ReadingSeries} keeps, at most. */
const SERIES = 4096;

/** JSON of a number as `JSON.stringify` writes it. */
const jsonNumber = (v: number): string => Number.isFinite(v) ? String(v) : "null";

/**
 * The topic and the start of the payload of each device and metric seen
 * lately: readings repeat their series, so each builds its topic string (one
 * string for every reading of the series, which also makes the modules'
 * topic matches cache hits) and its JSON prefix once.
 */
export class ReadingSeries {
  readonly #byDevice = new Map<string, Map<string, { topic: string; prefix: string }>>();
  #size = 0;

  /** The topic and payload prefix of `r`'s device and metric, built on first sight. */
  of(r: Reading): { topic: string; prefix: string } {
    let metrics = this.#byDevice.get(r.device_id);
    let s = metrics?.get(r.metric);
    if (s) return s;
    if (this.#size >= SERIES) {
      this.#byDevice.clear();
      this.#size = 0;
      metrics = undefined;
    }
    if (!metrics) this.#byDevice.set(r.device_id, metrics = new Map());
    s = {
      topic: readingTopic(r),
      prefix: `{"device_id":${JSON.stringify(r.device_id)},"metric":${JSON.stringify(r.metric)}` +
        `,"value":`,
    };
    metrics.set(r.metric, s);
    this.#size++;
    return s;
  }

  /** The text of `r`'s payload (what {@link readingPayload} encodes), from the prefix of its series. */
  json(r: Reading, prefix: string): string {
    return `${prefix}${jsonNumber(r.value)},"timestamp":${jsonNumber(r.timestamp)}}`;
  }
}

/**
 * Text encoded into one buffer at most: a payload a module keeps (its queue
 * holds up to `queue_capacity` of them, from as many commits) keeps its whole
 * buffer alive, so a buffer holds a few KiB of a commit, never all of it.
 */
const PACK_CHARS = 4096;

/**
 * The topics and JSON payloads of `rows` (the bytes of `readingPayload`),
 * the payloads encoded in groups: one `TextEncoder` call and one buffer per
 * {@link PACK_CHARS} of text instead of one each per reading. When a group's
 * text is not all ASCII, each of its payloads is encoded on its own.
 */
export function readingPayloads(
  rows: readonly Reading[],
  series: ReadingSeries = new ReadingSeries(),
): { topics: string[]; payloads: Uint8Array[] } {
  const n = rows.length;
  const texts = new Array<string>(n);
  const topics = new Array<string>(n);
  for (let i = 0; i < n; i++) {
    const r = rows[i];
    const s = series.of(r);
    topics[i] = s.topic;
    texts[i] = series.json(r, s.prefix);
  }
  const payloads = new Array<Uint8Array>(n);
  let start = 0;
  while (start < n) {
    let end = start + 1;
    let chars = texts[start].length;
    while (end < n && chars + texts[end].length <= PACK_CHARS) chars += texts[end++].length;
    const all = end - start === 1 ? texts[start] : texts.slice(start, end).join("");
    const buf = encoder.encode(all);
    if (buf.length !== all.length) {
      // Some payload holds non-ASCII text: its bytes and characters differ in number.
      for (let i = start; i < end; i++) payloads[i] = encoder.encode(texts[i]);
    } else {
      let at = 0;
      for (let i = start; i < end; i++) {
        const stop = at + texts[i].length;
        payloads[i] = buf.subarray(at, stop);
        at = stop;
      }
    }
    start = end;
  }
  return { topics, payloads };
}

/** Publishes committed readings on the bus, in commit order; skips topics nobody wants. */
export function publishReadings(bus: Bus, rows: readonly Reading[]): void {
  if (bus.subscriptions === 0) return;
  for (const r of rows) {
    const topic = readingTopic(r);
    if (!bus.wants(topic)) continue;
    bus.publish(topic, readingPayload(r), "ingest");
  }
}
