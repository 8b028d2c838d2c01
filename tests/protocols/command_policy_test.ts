/**
 * The local policy of MQTT commands (docs/operators.md, "Trust") in
 * isolation: the allow-list, the rate per command, the reply topics, and
 * the packet guard that drops oversized PUBLISHes before they are buffered.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { CommandRegistry } from "../../protocols/mqtt/commands.ts";
import { concatBytes } from "../../lib/mod.ts";
import { isReplyTopic } from "../../protocols/mqtt/component.ts";
import { type DroppedPacket, PacketGuard } from "../../protocols/mqtt/packet_guard.ts";

const enc = new TextEncoder();
const req = (o: unknown) => enc.encode(JSON.stringify(o));

Deno.test("commands: only the allowed ones run", async () => {
  let removed = 0;
  const reg = new CommandRegistry({ allow: ["ping"] });
  reg.register("ping", () => ({ pong: true }));
  reg.register("module-remove", () => removed++);
  assert.equal((await reg.handle("ping", req({ id: 1 }))).ok, true);
  const r = await reg.handle("module-remove", req({ id: 2, name: "x" }));
  assert.deepEqual(r.error?.code, "command_not_allowed");
  assert.equal(r.id, 2);
  assert.equal(removed, 0, "the handler of a refused command never runs");
  assert.equal((await reg.handle("reboot", req({}))).error?.code, "unknown_command");
});

Deno.test("commands: each command has its own rate, a burst of rate_per_minute", async () => {
  let runs = 0;
  const reg = new CommandRegistry({ ratePerMinute: 5 });
  reg.register("module-deploy", () => runs++);
  reg.register("ping", () => true);
  const answers = await Promise.all(
    Array.from({ length: 300 }, (_, i) => reg.handle("module-deploy", req({ id: i }))),
  );
  const limited = answers.filter((a) => a.error?.code === "rate_limited");
  assert.equal(runs, 5);
  assert.equal(limited.length, 295);
  assert.match(limited[0].error!.message, /5 requests per minute/);
  assert.equal((await reg.handle("ping", req({}))).ok, true, "another command has its own budget");
});

Deno.test("commands: answers go only below PREFIX/cmd/{command}/", () => {
  const p = "edged/dev1/cmd/";
  for (const ok of ["edged/dev1/cmd/ping/result", "edged/dev1/cmd/ping/result/req-17"]) {
    assert.equal(isReplyTopic(ok, p), true, ok);
  }
  for (
    const bad of [
      "pwn/anything",
      "edged/dev1/status",
      "edged/dev1/up/sensors/x/y",
      "edged/dev1/cmd/ping", // a request topic: the answer would be a new request
      "edged/dev1/cmd/",
      "edged/dev1/cmd//x",
      "edged/dev1/cmd/ping/+",
      "edged/dev1/cmd/ping/#",
      "edged/dev2/cmd/ping/result",
    ]
  ) {
    assert.equal(isReplyTopic(bad, p), false, bad);
  }
});

/** An MQTT PUBLISH packet (3.1.1 section 3.3). */
function publish(topic: string, payload: Uint8Array, qos: 0 | 1, id = 0): Uint8Array {
  const t = enc.encode(topic);
  const body = [t.length >> 8, t.length & 0xff, ...t, ...(qos ? [id >> 8, id & 0xff] : [])];
  const length = body.length + payload.length;
  const header = [0x30 | (qos << 1)];
  let n = length;
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    header.push(b);
  } while (n > 0);
  const out = new Uint8Array(header.length + length);
  out.set(header);
  out.set(body, header.length);
  out.set(payload, header.length + body.length);
  return out;
}

/** Feeds `bytes` to a guard in chunks cut at `cuts`; what passed, what was sent back, what dropped. */
async function guard(bytes: Uint8Array, cuts: number[], max: number) {
  const sent: number[][] = [];
  const dropped: DroppedPacket[] = [];
  const g = new PacketGuard({
    maxPacketBytes: max,
    send: (b) => sent.push([...b]),
    onDropped: (p) => dropped.push(p),
  });
  const out: Buffer[] = [];
  g.on("data", (b: Buffer) => out.push(b));
  const ended = new Promise((resolve, reject) => {
    g.on("end", resolve);
    g.on("error", reject);
  });
  let at = 0;
  for (const cut of [...cuts, bytes.length]) {
    g.write(Buffer.from(bytes.subarray(at, cut)));
    at = cut;
  }
  g.end();
  await ended;
  return { passed: new Uint8Array(Buffer.concat(out)), sent, dropped };
}

Deno.test("packet guard: oversized PUBLISHes are dropped as they stream past, in any chunking", async () => {
  const small1 = publish("edged/d/cmd/ping", enc.encode('{"id":1}'), 1, 7);
  const big = publish("edged/d/cmd/ping", new Uint8Array(300_000).fill(0x61), 1, 0x1234);
  const puback = new Uint8Array([0x40, 0x02, 0x00, 0x05]);
  const small2 = publish("t", enc.encode("x"), 0);
  const bigQos0 = publish("u", new Uint8Array(5000), 0);
  const stream = concatBytes([small1, big, puback, small2, bigQos0, small1]);
  const expected = concatBytes([small1, puback, small2, small1]);
  let seed = 42;
  const rand = (n: number) => (seed = (seed * 1103515245 + 12345) % 2 ** 31) % n;
  const cuttings = [
    [],
    Array.from({ length: stream.length - 1 }, (_, i) => i + 1).filter((i) =>
      i < 40 || i % 997 === 0
    ),
    ...Array.from(
      { length: 20 },
      () =>
        [...new Set(Array.from({ length: 30 }, () => 1 + rand(stream.length - 1)))].sort((a, b) =>
          a - b
        ),
    ),
  ];
  for (const cuts of cuttings) {
    const { passed, sent, dropped } = await guard(stream, cuts, 4096);
    assert.deepEqual(passed, expected, `cuts ${cuts.slice(0, 8)}...`);
    assert.deepEqual(sent, [[0x40, 0x02, 0x12, 0x34]], "the QoS 1 PUBLISH is acknowledged");
    assert.deepEqual(dropped.map((d) => d.topic), ["edged/d/cmd/ping", "u"]);
    assert.equal(dropped[0].bytes, big.length);
  }
});

Deno.test("packet guard: an oversized packet other than PUBLISH ends the connection", async () => {
  const suback = new Uint8Array(5000);
  suback.set([0x90, 0x85, 0x27]); // SUBACK, Remaining Length 4997 (5000 less 3 header bytes)
  await assert.rejects(guard(suback, [], 1024), /exceeds 1024/);
});
