/**
 * Issue 13, L4 replayed: a 200 MiB PUBLISH to PREFIX/cmd/ping. Over MQTT 5 the
 * broker knows edged's Maximum Packet Size (CONNECT) and never sends it;
 * over MQTT 3.1.1 edged drops it as it streams in (and acknowledges it).
 * Either way memory stays flat and the next command is answered.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import mqtt from "mqtt";
import { type EdgedProcess, startEdged } from "../_helpers/edged.ts";
import { startMosquitto, subscribe } from "../_helpers/mosquitto.ts";
import { mqttEnv } from "./_mqtt.ts";

const MiB = 1024 * 1024;
const SIZE = 200 * MiB;

function rssKiB(pid: number): { rss: number; peak: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kib = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(status)![1]);
  return { rss: kib("VmRSS"), peak: kib("VmHWM") };
}

async function metric(edged: EdgedProcess, name: string): Promise<number> {
  const text = await (await fetch(edged.url + "/metrics")).text();
  return Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? NaN);
}

Deno.test({
  name: "L4: a 200 MiB publish to PREFIX/cmd/ping is never buffered, over MQTT 5 or 3.1.1",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const broker = await startMosquitto();
    const results = await subscribe(broker, "edged/+/cmd/ping/result");
    const devices: EdgedProcess[] = [];
    const client = await mqtt.connectAsync(broker.url, { protocolVersion: 4, reconnectPeriod: 0 });
    try {
      for (const protocol of ["5", "3.1.1"]) {
        devices.push(
          await startEdged({
            env: mqttEnv(broker.url, {
              EDGED_DEVICE_ID: `v${protocol}`,
              EDGED_MQTT_PROTOCOL: protocol,
              EDGED_MQTT_MAX_PACKET_BYTES: String(MiB),
            }),
          }),
        );
      }
      const ping = async (device: string, id: string) => {
        const before = results.messages.length;
        for (let i = 0; i < 50; i++) {
          await client.publishAsync(`edged/${device}/cmd/ping`, JSON.stringify({ id }), { qos: 1 });
          try {
            await results.waitFor(
              (m) => m.slice(before).some((x) => JSON.parse(x.payload!).id === id),
              500,
              `${device} answers ${id}`,
            );
            return;
          } catch { /* not subscribed yet, or dropped: again */ }
        }
        throw new Error(`${device} never answered ${id}`);
      };
      for (const [i, device] of ["v5", "v3.1.1"].entries()) {
        const edged = devices[i];
        await ping(device, "before");
        const before = rssKiB(edged.child.pid);
        await client.publishAsync(`edged/${device}/cmd/ping`, Buffer.alloc(SIZE, 0x61), { qos: 1 });
        await ping(device, "after");
        const after = rssKiB(edged.child.pid);
        const grew = (after.peak - before.rss) / 1024;
        const dropped = await metric(edged, "edged_mqtt_oversized_dropped_total");
        console.log(
          `${device}: RSS ${(before.rss / 1024).toFixed(0)} MiB before, peak ` +
            `${(after.peak / 1024).toFixed(0)} MiB after a ${
              SIZE / MiB
            } MiB publish; dropped ${dropped}`,
        );
        assert.ok(grew < 16, `${device}: peak RSS grew by ${grew.toFixed(1)} MiB`);
        // MQTT 5: the broker honoured the Maximum Packet Size; 3.1.1: edged dropped it.
        assert.equal(dropped, device === "v5" ? 0 : 1, device);
      }
    } finally {
      await client.endAsync(true).catch(() => {});
      for (const d of devices) await d.stop();
      await results.stop();
      await broker.stop();
    }
  },
});
