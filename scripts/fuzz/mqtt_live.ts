/**
 * The live pass of the MQTT command fuzzer: requests from the `mqtt`
 * target's generator published to `edged/{device}/cmd/{command}` on a local
 * Mosquitto, against a real edged with its real command handlers (built-in,
 * updater, modules). Every request that carries a string `id` must be
 * answered on `.../cmd/{command}/result` with the same `id`, and no answer
 * may be an `internal` error (a handler that threw something other than a
 * CommandError: the requester cannot tell a bad request from a bug).
 *
 * @module
 */
import mqtt from "mqtt";
import { startEdged } from "../../tests/_helpers/edged.ts";
import { startMosquitto } from "../../tests/_helpers/mosquitto.ts";
import { Rng } from "./_prng.ts";
import { TARGETS } from "./targets/mod.ts";

/** What the live pass saw. */
export interface MqttLiveResult {
  requests: number;
  answered: number;
  /** Count per error code (`ok` for successes). */
  codes: Record<string, number>;
  problems: string[];
}

const DEVICE = "fuzz-device";

/** Publishes `count` fuzzed command requests to a real edged and checks the answers. */
export async function mqttLivePass(count: number, seed: number): Promise<MqttLiveResult> {
  const h = await TARGETS.mqtt.setup();
  const broker = await startMosquitto();
  const edged = await startEdged({ env: { EDGED_MQTT_URL: broker.url, EDGED_DEVICE_ID: DEVICE } });
  const client = await mqtt.connectAsync(broker.url, { protocolVersion: 5 });
  const prefix = `edged/${DEVICE}/cmd/`;
  const answers = new Map<string, { code: string; message: string }[]>();
  const out: MqttLiveResult = { requests: 0, answered: 0, codes: {}, problems: [] };
  client.on("message", (topic, payload) => {
    if (!topic.startsWith(prefix) || !topic.endsWith("/result")) return;
    try {
      const r = JSON.parse(payload.toString());
      const code = r.ok ? "ok" : String(r.error?.code);
      out.codes[code] = (out.codes[code] ?? 0) + 1;
      out.answered++;
      const list = answers.get(String(r.id)) ?? [];
      list.push({ code, message: String(r.error?.message ?? "") });
      answers.set(String(r.id), list);
    } catch {
      out.problems.push(`answer is not JSON: ${payload.toString().slice(0, 200)}`);
    }
  });
  try {
    await client.subscribeAsync(`${prefix}+/result`, { qos: 1 });
    // Wait until edged has subscribed to its command topic: ping until it answers.
    const deadline = Date.now() + 20_000;
    while (!answers.has("probe")) {
      if (Date.now() > deadline) throw new Error("edged never answered a ping over MQTT");
      await client.publishAsync(`${prefix}ping`, '{"id":"probe"}', { qos: 1 });
      await new Promise((r) => setTimeout(r, 200));
    }
    const sent: { id: string; command: string; body: string }[] = [];
    for (let i = 0; i < count; i++) {
      const input = h.generate!(new Rng(seed, i, 0x3a7));
      const nl = input.indexOf(10);
      const command = new TextDecoder().decode(input.subarray(0, nl));
      if (!/^[a-z0-9][a-z0-9._-]{0,63}$/.test(command)) continue; // not a topic level
      let body = input.subarray(nl + 1);
      const id = `f${i}`;
      // Give parseable object requests an id we can wait for.
      try {
        const v = JSON.parse(new TextDecoder().decode(body));
        if (v && typeof v === "object" && !Array.isArray(v)) {
          v.id = id;
          body = new TextEncoder().encode(JSON.stringify(v));
          // Over 64 KiB the request is refused unread (too_large, id null): not waited for.
          if (body.length <= 65536) {
            sent.push({ id, command, body: JSON.stringify(v).slice(0, 200) });
          }
        }
      } catch { /* sent as it is; answered with invalid_json and id null */ }
      await client.publishAsync(prefix + command, Buffer.from(body), { qos: 1 });
      out.requests++;
    }
    const waitUntil = Date.now() + 20_000;
    while (sent.some((s) => !answers.has(s.id)) && Date.now() < waitUntil) {
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const s of sent) {
      const a = answers.get(s.id);
      if (!a) out.problems.push(`no answer to ${s.command} ${s.body}`);
      else if (a.length > 1) out.problems.push(`${a.length} answers to ${s.command} ${s.body}`);
      else if (a[0].code === "internal") {
        out.problems.push(`internal error for ${s.command} ${s.body}: ${a[0].message}`);
      }
    }
  } finally {
    await client.endAsync().catch(() => {});
    await edged.stop();
    await broker.dispose();
    await Deno.remove(edged.dataDir, { recursive: true });
  }
  return out;
}
