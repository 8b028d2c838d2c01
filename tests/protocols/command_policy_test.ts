/**
 * The local policy of MQTT commands (docs/operators.md, "Trust") in
 * isolation: the allow-list, the rate per command and the reply topics.
 */
import assert from "node:assert/strict";
import { CommandRegistry } from "../../protocols/mqtt/commands.ts";
import { isReplyTopic } from "../../protocols/mqtt/component.ts";

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
