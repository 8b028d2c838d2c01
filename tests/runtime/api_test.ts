import assert from "node:assert/strict";
import { postJson, startEdged } from "../_helpers/edged.ts";

Deno.test("HTTP API: health, readiness, auth, ingest, errors and metrics", async (t) => {
  const edged = await startEdged();
  try {
    await t.step("healthz and readyz answer without a token", async () => {
      const h = await fetch(edged.url + "/healthz");
      assert.equal(h.status, 200);
      assert.deepEqual(await h.json(), { status: "ok" });
      const r = await fetch(edged.url + "/readyz");
      assert.equal(r.status, 200);
      await r.body?.cancel();
    });

    await t.step(
      "the API is bound to loopback by the test and needs the bearer token",
      async () => {
        assert.match(edged.url, /^http:\/\/127\.0\.0\.1:\d+$/);
        const none = await fetch(edged.url + "/api/v1/data", { method: "POST" });
        assert.equal(none.status, 401);
        assert.equal(none.headers.get("www-authenticate"), 'Bearer realm="edged"');
        assert.equal((await none.json()).error.code, "unauthorized");
        const wrong = await edged.api("/api/v1/data", {
          method: "POST",
          headers: { authorization: "Bearer nope" },
        });
        assert.equal(wrong.status, 401);
        await wrong.body?.cancel();
      },
    );

    await t.step("a valid reading and a batch get 202", async () => {
      const one = await postJson(edged, {
        device_id: "pump-7",
        metric: "temperature",
        value: 71.5,
        timestamp: 1700000000,
      });
      assert.equal(one.status, 202);
      assert.deepEqual(await one.json(), { accepted: 1 });
      const batch = Array.from({ length: 100 }, (_, i) => ({ device_id: "pump-7", value: i }));
      const many = await postJson(edged, batch);
      assert.equal(many.status, 202);
      assert.deepEqual(await many.json(), { accepted: 100 });
    });

    await t.step("bad input gets 400 naming the field, and stores nothing", async () => {
      const before = await metricValue(edged.url, "edged_store_readings_committed_total");
      const cases: [string, unknown, string][] = [
        ["application/json", "{not json", "body"],
        ["application/json", { device_id: "p", value: "7" }, "value"],
        ["application/json", { device_id: "p", value: 1, bogus: 1 }, "bogus"],
        ["application/json", [], "body"],
        ["application/json", [{ device_id: "ok", value: 1 }, { device_id: "p" }], "[1].value"],
        [
          "application/json",
          Array.from({ length: 1001 }, () => ({ device_id: "p", value: 1 })),
          "body",
        ],
        ["text/plain", { device_id: "p", value: 1 }, "content-type"],
        ["application/json", '{"device_id":"p","value":1e999}', "value"],
      ];
      for (const [type, body, field] of cases) {
        const res = await edged.api("/api/v1/data", {
          method: "POST",
          headers: { "content-type": type },
          body: typeof body === "string" ? body : JSON.stringify(body),
        });
        assert.equal(res.status, 400, JSON.stringify(body).slice(0, 80));
        const json = await res.json();
        assert.equal(json.error.field, field);
        assert.equal(typeof json.error.message, "string");
      }
      assert.equal(await metricValue(edged.url, "edged_store_readings_committed_total"), before);
    });

    await t.step("a body over the limit gets 413", async () => {
      const big = JSON.stringify({ device_id: "p", value: 1, pad: "x".repeat(2 * 1024 * 1024) });
      const res = await postJson(edged, big);
      assert.equal(res.status, 413);
      assert.equal((await res.json()).error.code, "body_too_large");
    });

    await t.step("unknown routes get a JSON 404", async () => {
      const res = await edged.api("/api/v1/nothing-here");
      assert.equal(res.status, 404);
      assert.equal((await res.json()).error.code, "not_found");
    });

    await t.step(
      "/metrics is Prometheus text with ingest, HTTP, store and process series",
      async () => {
        const res = await fetch(edged.url + "/metrics");
        assert.equal(res.status, 200);
        assert.match(res.headers.get("content-type")!, /^text\/plain; version=0\.0\.4/);
        const text = await res.text();
        assert.match(text, /^edged_ingest_readings_total\{outcome="accepted"\} 101$/m);
        assert.match(
          text,
          /^edged_http_requests_total\{route="\/api\/v1\/data",method="POST",status="202"\} 2$/m,
        );
        assert.match(
          text,
          /^edged_http_requests_total\{route="\/api\/v1\/data",method="POST",status="413"\} 1$/m,
        );
        assert.match(text, /^edged_store_size_bytes \d+$/m);
        assert.match(text, /^edged_readings_pending 101$/m);
        assert.match(text, /^process_resident_memory_bytes \d+$/m);
        assert.match(text, /^# TYPE process_cpu_seconds_total counter$/m);
        assert.match(text, /^process_cpu_seconds_total [0-9.e-]+$/m);
      },
    );

    await t.step("made-up methods add no metric series: they count as other", async () => {
      const names = Array.from({ length: 50 }, (_, i) => `MADEUP${i}X`);
      for (const method of names) {
        const res = await fetch(edged.url + "/x", { method });
        assert.equal(res.status, 404);
        await res.body?.cancel();
      }
      const text = await (await fetch(edged.url + "/metrics")).text();
      assert.ok(!text.includes("MADEUP"), "no series per method name");
      assert.match(
        text,
        /^edged_http_requests_total\{route="unmatched",method="other",status="404"\} 50$/m,
      );
    });

    await t.step("a chunked body (no Content-Length) is counted as it arrives", async () => {
      const chunked = (text: string, times: number) =>
        edged.api("/api/v1/data", {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: new ReadableStream({
            start(c) {
              for (let i = 0; i < times; i++) c.enqueue(new TextEncoder().encode(text));
              c.close();
            },
          }),
        });
      const ok = await chunked(JSON.stringify({ device_id: "chunked", value: 1 }), 1);
      assert.equal(ok.status, 202, await ok.text());
      const big = await chunked(" ".repeat(64 * 1024), 40);
      assert.equal(big.status, 413);
      assert.equal((await big.json()).error.code, "body_too_large");
    });

    await t.step("the dashboard page is served at /", async () => {
      const res = await fetch(edged.url + "/");
      assert.equal(res.status, 200);
      assert.match(res.headers.get("content-type")!, /text\/html/);
      assert.match(await res.text(), /edged/);
    });
  } finally {
    assert.equal(await edged.stop(), 0);
  }
});

Deno.test("a full outbox answers 503 with Retry-After and stores nothing more", async () => {
  const edged = await startEdged({ env: { EDGED_STORE_MAX_PENDING_READINGS: "5" } });
  try {
    const ok = await postJson(
      edged,
      Array.from({ length: 4 }, (_, i) => ({ device_id: "p", value: i })),
    );
    assert.equal(ok.status, 202);
    await ok.body?.cancel();
    const full = await postJson(edged, [{ device_id: "p", value: 1 }, {
      device_id: "p",
      value: 2,
    }]);
    assert.equal(full.status, 503);
    assert.equal(full.headers.get("retry-after"), "5");
    assert.equal((await full.json()).error.code, "outbox_full");
    const last = await postJson(edged, { device_id: "p", value: 5 });
    assert.equal(last.status, 202);
    await last.body?.cancel();
    assert.equal(await metricValue(edged.url, "edged_readings_pending"), 5);
  } finally {
    await edged.stop();
  }
});

Deno.test("a generated token is stored with mode 0600 and reused on restart", async () => {
  const dataDir = await Deno.makeTempDir();
  const first = await startEdged({ dataDir, env: { EDGED_API_TOKEN: "" } });
  await first.stop();
  const stat = await Deno.stat(`${dataDir}/api-token`);
  assert.equal(stat.mode! & 0o777, 0o600);
  const token = (await Deno.readTextFile(`${dataDir}/api-token`)).trim();
  assert.match(token, /^[0-9a-f]{64}$/);
  assert.ok(first.lines.some((l) => l.includes(token)), "token printed on first start");
  const second = await startEdged({ dataDir, env: { EDGED_API_TOKEN: "" } });
  try {
    assert.ok(!second.lines.some((l) => l.includes(token)), "token printed only once");
    const res = await fetch(second.url + "/api/v1/data", {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify({ device_id: "p", value: 1 }),
    });
    assert.equal(res.status, 202);
    await res.body?.cancel();
  } finally {
    await second.stop();
  }
});

async function metricValue(url: string, series: string): Promise<number> {
  const text = await (await fetch(url + "/metrics")).text();
  const line = text.split("\n").find((l) => l.startsWith(series + " "));
  if (!line) throw new Error(`no series ${series}`);
  return Number(line.slice(series.length + 1));
}
