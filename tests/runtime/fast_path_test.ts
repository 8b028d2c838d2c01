/**
 * The server's fast path for `POST /api/v1/data` (and the probes, `/healthz`
 * and `/readyz`) answers exactly as the application does: the same bytes (but the date), the same metrics, the
 * same readings stored, for every request it takes and every one it leaves
 * to the application. Each case runs against two servers over their own
 * stores, one with the fast path and one without.
 */
import assert from "node:assert/strict";
import {
  createApi,
  type FastHandler,
  ingestFastRoute,
  type IngestOptions,
  ingestRoutes,
  Metrics,
  ReadingLog,
  serveHttp,
  Store,
} from "../../runtime/mod.ts";
import { fieldValue, parseHead } from "../../runtime/api/http_parse.ts";
import { bearerMatcher } from "../../runtime/api/auth.ts";
import { exchange } from "../_helpers/raw_http.ts";

const TOKEN = "fast-path-token-0123456789";
const enc = new TextEncoder();

interface Side {
  port: number;
  log: ReadingLog;
  store: Store;
  metrics: Metrics;
  /** Requests the fast path answered. */
  taken: number;
  close(): Promise<void>;
}

async function side(
  withFast: boolean,
  maxPending = 1_000_000,
  notReady: () => string[] = () => [],
): Promise<Side> {
  const dir = await Deno.makeTempDir({ prefix: "edged-fast-" });
  const store = Store.open(dir);
  const log = new ReadingLog(store, { maxPending });
  const metrics = new Metrics();
  const ingest: IngestOptions = {
    log,
    bodyLimitBytes: 512,
    maxBatch: 5,
    maxFutureSkewMs: 60_000,
    readingsCounter: metrics.counter("edged_ingest_readings_total", "Readings.", ["outcome"]),
  };
  const { app, fast } = createApi({
    token: TOKEN,
    metrics,
    notReady,
    routes: [{ path: "/api/v1/data", app: ingestRoutes(ingest) }],
    fastRoutes: [ingestFastRoute("/api/v1/data", ingest)],
    dashboard: () => new Response("dashboard"),
    bodyLimitBytes: 4096,
  });
  const s: Side = {
    port: 0,
    log,
    store,
    metrics,
    taken: 0,
    close: async () => {
      await server.shutdown();
      store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
  const counting: FastHandler = (head, body) => {
    const answer = fast(head, body);
    if (answer) s.taken++;
    return answer;
  };
  const server = serveHttp({
    hostname: "127.0.0.1",
    port: 0,
    maxConnections: 16,
    headerTimeoutMs: 2000,
    idleTimeoutMs: 2000,
    requestTimeoutMs: 5000,
    fast: withFast ? counting : undefined,
  }, (req, info) => app.fetch(req, info));
  s.port = server.addr.port;
  return s;
}

/** The answer without its `date` field, which differs from one second to the next. */
const undated = (answer: string) => answer.replace(/\r\ndate: [^\r]*/g, "");

/** The request and ingest counters as /metrics shows them (latencies differ, their counts not). */
function counters(m: Metrics): string[] {
  return m.render().split("\n").filter((l) =>
    /^edged_(http_requests_total|ingest_readings_total)\{|^edged_http_request_duration_seconds_count/
      .test(l)
  );
}

function post(
  body: string,
  { target = "/api/v1/data", type = "application/json", auth = `Bearer ${TOKEN}`, extra = "" } = {},
): string {
  const bytes = enc.encode(body);
  return `POST ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
    (type ? `Content-Type: ${type}\r\n` : "") + (auth ? `Authorization: ${auth}\r\n` : "") +
    extra + `Content-Length: ${bytes.length}\r\nConnection: close\r\n\r\n${body}`;
}

const ONE = JSON.stringify({ device_id: "pump-7", metric: "temperature", value: 71.5 });

/** [what, raw request, whether the fast path takes it] */
const CASES: [string, string, boolean][] = [
  ["one reading", post(ONE), true],
  [
    "a batch",
    post(JSON.stringify([{ device_id: "a", value: 1 }, { device_id: "b", value: 2 }])),
    true,
  ],
  ["a media type with parameters", post(ONE, { type: "Application/JSON; charset=utf-8" }), true],
  ["a body after a byte order mark", post("\ufeff" + ONE), true],
  ["a lower-case scheme", post(ONE, { auth: `bearer ${TOKEN}` }), true],
  ["no token", post(ONE, { auth: "" }), false],
  ["a wrong token", post(ONE, { auth: "Bearer nope" }), false],
  ["two tokens", post(ONE, { extra: `Authorization: Bearer ${TOKEN}\r\n` }), false],
  ["no content type", post(ONE, { type: "" }), false],
  ["text/plain", post(ONE, { type: "text/plain" }), false],
  ["two content types", post(ONE, { extra: "Content-Type: text/plain\r\n" }), false],
  ["malformed JSON", post("{nope"), false],
  ["an empty body", post(""), false],
  ["a bad field", post(JSON.stringify({ device_id: "a b", value: "7" })), false],
  ["an unknown field", post(JSON.stringify({ device_id: "a", value: 1, x: 1 })), false],
  ["too many readings", post(JSON.stringify(Array(6).fill({ device_id: "a", value: 1 }))), false],
  ["an empty batch", post("[]"), false],
  [
    "a body over the route's limit",
    post(JSON.stringify({ device_id: "a", value: 1, p: "x".repeat(600) })),
    false,
  ],
  ["a query string", post(ONE, { target: "/api/v1/data?x=1" }), false],
  ["a trailing slash", post(ONE, { target: "/api/v1/data/" }), false],
  ["a Host that makes no URL", post(ONE).replace("Host: 127.0.0.1", "Host: a:99999"), false],
  [
    "GET",
    `GET /api/v1/data HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer ${TOKEN}\r\nConnection: close\r\n\r\n`,
    false,
  ],
];

Deno.test("the ingest fast path answers, counts and stores as the application does", async (t) => {
  const fast = await side(true);
  const plain = await side(false);
  try {
    for (const [what, raw, takes] of CASES) {
      await t.step(what, async () => {
        const before = fast.taken;
        const a = await exchange(fast.port, raw);
        const b = await exchange(plain.port, raw);
        assert.match(a, /^HTTP\/1\.1 \d{3} /);
        assert.equal(undated(a), undated(b));
        assert.equal(fast.taken - before, takes ? 1 : 0, "taken by the fast path");
        await fast.log.flushed();
        await plain.log.flushed();
        assert.equal(fast.log.lastId, plain.log.lastId, "readings stored");
        assert.deepEqual(counters(fast.metrics), counters(plain.metrics));
      });
    }
    assert.equal(plain.taken, 0);
    assert.ok(fast.log.lastId >= 6, "the accepted readings were stored once each");
  } finally {
    await fast.close();
    await plain.close();
  }
});

Deno.test("the probes answer on the fast path as the application does, ready or not", async () => {
  for (const reasons of [[], ["store: starting"]]) {
    const fast = await side(true, 1_000_000, () => reasons);
    const plain = await side(false, 1_000_000, () => reasons);
    try {
      const answers: string[] = [];
      for (const target of ["/healthz", "/readyz"]) {
        const raw = `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`;
        const before = fast.taken;
        const a = undated(await exchange(fast.port, raw));
        assert.equal(a, undated(await exchange(plain.port, raw)));
        assert.equal(fast.taken - before, 1, `${target} taken by the fast path`);
        answers.push(a);
      }
      assert.match(answers[0], /^HTTP\/1\.1 200 [^]*\{"status":"ok"\}$/);
      assert.match(
        answers[1],
        reasons.length
          ? /^HTTP\/1\.1 503 [^]*"reasons":\["store: starting"\]/
          : /^HTTP\/1\.1 200 [^]*\{"status":"ready"\}$/,
      );
      assert.deepEqual(counters(fast.metrics), counters(plain.metrics));
    } finally {
      await fast.close();
      await plain.close();
    }
  }
});

Deno.test("the ingest fast path: a full outbox and a failed commit are answered as the application answers them", async () => {
  const fast = await side(true, 1);
  const plain = await side(false, 1);
  try {
    const first = [await exchange(fast.port, post(ONE)), await exchange(plain.port, post(ONE))];
    assert.match(first[0], /^HTTP\/1\.1 202 /);
    assert.equal(undated(first[0]), undated(first[1]));
    // The outbox holds 1 reading waiting for an uplink: the next one is refused, Retry-After set.
    const full = [await exchange(fast.port, post(ONE)), await exchange(plain.port, post(ONE))];
    assert.match(full[0], /^HTTP\/1\.1 503 /);
    assert.match(full[0], /\r\nretry-after: 5\r\n/);
    assert.equal(undated(full[0]), undated(full[1]));
    assert.equal(fast.taken, 2);
    // A store that fails under the append: 500 internal.
    fast.store.close();
    plain.store.close();
    const failed = [await exchange(fast.port, post(ONE)), await exchange(plain.port, post(ONE))];
    assert.match(failed[0], /^HTTP\/1\.1 500 /);
    assert.equal(undated(failed[0]), undated(failed[1]));
    assert.deepEqual(counters(fast.metrics), counters(plain.metrics));
  } finally {
    await fast.close();
    await plain.close();
  }
});

Deno.test("the ingest fast path keeps answers in order on a keep-alive connection", async () => {
  const fast = await side(true);
  try {
    const keep = (raw: string) => raw.replace("Connection: close\r\n", "");
    const out = await exchange(
      fast.port,
      keep(post(ONE)) + keep(post("{nope")) +
        post(JSON.stringify([{ device_id: "a", value: 1 }, { device_id: "b", value: 2 }])),
    );
    const statuses = [...out.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
    assert.deepEqual(statuses, ["202", "400", "202"]);
    const bodies = [...out.matchAll(/\{"accepted":\d+\}|"code":"\w+"/g)].map((m) => m[0]);
    assert.deepEqual(bodies, ['{"accepted":1}', '"code":"invalid_json"', '{"accepted":2}']);
    assert.equal(fast.taken, 2);
  } finally {
    await fast.close();
  }
});

Deno.test("fieldValue joins repeated fields as Headers does", () => {
  const head = parseHead(
    enc.encode("POST / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nContent-Type: application/json"),
  );
  const headers = new Headers(head.headers);
  for (const name of ["x-a", "content-type", "host", "authorization"]) {
    assert.equal(fieldValue(head, name), headers.get(name) ?? undefined, name);
  }
  assert.equal(fieldValue(head, "x-a"), "1, 2");
});

Deno.test("bearerMatcher accepts the token alone, in any case of the scheme", () => {
  const matches = bearerMatcher("s3cret");
  assert.equal(matches("Bearer s3cret"), true);
  assert.equal(matches("bearer   s3cret "), true);
  for (const bad of [undefined, "", "Bearer", "Bearer s3cre", "Bearer s3cretx", "Basic s3cret"]) {
    assert.equal(matches(bad), false, String(bad));
  }
  // Past ASCII the token's UTF-8 bytes count, as TextEncoder gives them.
  const utf8 = bearerMatcher("t\u00e9st");
  assert.equal(utf8("Bearer t\u00e9st"), true);
  assert.equal(utf8("Bearer t\u00c3\u00a9st"), false, "its bytes read as latin1 are other chars");
  assert.equal(utf8("Bearer t\u00e8st"), false);
  assert.equal(bearerMatcher("s3cret\u0000")("Bearer s3cret"), false, "a shorter token");
});

Deno.test("a head that differs from the last one in any byte is read and authorised anew", async () => {
  const fast = await side(true);
  try {
    const keep = (raw: string) => raw.replace("Connection: close\r\n", "");
    const good = keep(post(ONE));
    // The same head but for one byte: of the token, the content type, the target, the length.
    const wrongToken = keep(post(ONE, { auth: `Bearer ${TOKEN.slice(0, -1)}8` }));
    const wrongType = keep(post(ONE, { type: "application/jsox" }));
    const wrongTarget = keep(post(ONE, { target: "/api/v1/datA" }));
    const longer = keep(post(ONE.replace("71.5", "71.55")));
    const sequence = [good, wrongToken, good, wrongType, good, wrongTarget, longer, good];
    const want = ["202", "401", "202", "400", "202", "404", "202", "202"];
    const statuses = (out: string) => [...out.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => m[1]);
    // Pipelined in one write, then each request in its own write, then each split mid-head.
    const last = post(ONE);
    const pipelined = await exchange(fast.port, sequence.join("") + last);
    assert.deepEqual(statuses(pipelined), [...want, "202"]);
    const apart = await exchange(fast.port, [...sequence, last]);
    assert.deepEqual(statuses(apart), [...want, "202"]);
    const split = await exchange(
      fast.port,
      [...sequence, last].flatMap((r) => [r.slice(0, 40), r.slice(40)]),
    );
    assert.deepEqual(statuses(split), [...want, "202"]);
    // Another connection sending the wrong token alone, after the right one was remembered.
    assert.match(await exchange(fast.port, post(ONE, { auth: `Bearer ${TOKEN}x` })), / 401 /);
    assert.match(await exchange(fast.port, post(ONE)), / 202 /);
  } finally {
    await fast.close();
  }
});

Deno.test("the fast path's remembered answer carries the date of its second and its own count", async () => {
  const fast = await side(true);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: fast.port });
  try {
    const keep = (raw: string) => raw.replace("Connection: close\r\n", "");
    const two = JSON.stringify([{ device_id: "a", value: 1 }, { device_id: "b", value: 2 }]);
    const buf = new Uint8Array(4096);
    const ask = async (body: string) => {
      await conn.write(enc.encode(keep(post(body))));
      const n = await conn.read(buf);
      const out = new TextDecoder().decode(buf.subarray(0, n ?? 0));
      const date = Date.parse(/\r\ndate: ([^\r]+)\r\n/.exec(out)![1]);
      return { out, lag: Date.now() - date };
    };
    for (let i = 0; i < 3; i++) {
      for (const [body, count] of [[ONE, 1], [ONE, 1], [two, 2], [ONE, 1]] as const) {
        const { out, lag } = await ask(body);
        assert.match(out, /^HTTP\/1\.1 202 /);
        assert.ok(out.endsWith(`{"accepted":${count}}`), out);
        // An HTTP date has whole seconds: the answer's is the second it was sent in.
        assert.ok(lag >= 0 && lag < 1000 + 50, `the answer's date is ${lag} ms old`);
      }
      await new Promise((r) => setTimeout(r, 700));
    }
  } finally {
    conn.close();
    await fast.close();
  }
});
