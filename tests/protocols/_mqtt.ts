/**
 * Shared pieces of the MQTT tests: edged settings for a test broker, an
 * ingest loop that remembers what was acknowledged, and checks on what a
 * subscriber received.
 *
 * @module
 */
import { type EdgedProcess, postJson } from "../_helpers/edged.ts";
import type { SubMessage } from "../_helpers/mosquitto.ts";

/** Environment for an edged talking to `url` with quick reconnects. */
export function mqttEnv(url: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    EDGED_DEVICE_ID: "dev1",
    EDGED_MQTT_URL: url,
    EDGED_MQTT_RECONNECT_MIN_MS: "100",
    EDGED_MQTT_RECONNECT_MAX_MS: "400",
    EDGED_MQTT_CONNECT_TIMEOUT_S: "2",
    ...extra,
  };
}

/** One reading per sequence number, alternating between two metrics (two topics). */
export function batch(
  from: number,
  n: number,
): { device_id: string; metric: string; value: number }[] {
  return Array.from({ length: n }, (_, i) => ({
    device_id: "d1",
    metric: (from + i) % 2 === 0 ? "a" : "b",
    value: from + i,
  }));
}

/**
 * Posts `batches` batches of `size` readings; returns the sequence numbers
 * acknowledged with 202 and the next sequence number. Stops quietly when the
 * process is gone (it may be killed meanwhile).
 */
export async function ingest(
  p: EdgedProcess,
  start: number,
  batches: number,
  size: number,
  acked: Set<number>,
): Promise<number> {
  let seq = start;
  for (let b = 0; b < batches; b++) {
    let res: Response;
    try {
      res = await postJson(p, batch(seq, size));
    } catch {
      return seq + size; // the process died mid-request: these were not acknowledged
    }
    await res.body?.cancel();
    if (res.status === 202) { for (let i = 0; i < size; i++) acked.add(seq + i); }
    else throw new Error(`ingest answered ${res.status}`);
    seq += size;
  }
  return seq;
}

/** Sequence numbers per topic in arrival order, from reading payloads. */
export function valuesByTopic(msgs: SubMessage[], prefix: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const m of msgs) {
    if (!m.topic.startsWith(prefix) || m.payload === null) continue;
    const v = JSON.parse(m.payload).value as number;
    const list = out.get(m.topic) ?? [];
    list.push(v);
    out.set(m.topic, list);
  }
  return out;
}

/**
 * Per-topic order with at-least-once: after removing repeats, first arrivals
 * must increase. Returns the number of duplicates.
 */
export function checkOrder(
  byTopic: Map<string, number[]>,
): { duplicates: number; distinct: Set<number> } {
  let duplicates = 0;
  const distinct = new Set<number>();
  for (const [topic, values] of byTopic) {
    let last = -Infinity;
    const seen = new Set<number>();
    for (const v of values) {
      if (seen.has(v)) {
        duplicates++;
        continue;
      }
      seen.add(v);
      distinct.add(v);
      if (v < last) throw new Error(`order broken on ${topic}: ${v} arrived after ${last}`);
      last = v;
    }
  }
  return { duplicates, distinct };
}

/** Reads one sample of a Prometheus metric from /metrics. */
export async function metric(p: EdgedProcess, sample: string): Promise<number | undefined> {
  const text = await (await fetch(p.url + "/metrics")).text();
  for (const line of text.split("\n")) {
    if (line.startsWith(sample + " ")) return Number(line.slice(sample.length + 1));
  }
  return undefined;
}
