import assert from "node:assert/strict";
import { HeadParser, latin1, parseHead } from "../../runtime/api/http_parse.ts";
import { type HttpServer, type HttpServerOptions, serveHttp } from "../../runtime/mod.ts";
import { ApiError } from "../../runtime/mod.ts";
import { exchange } from "../_helpers/raw_http.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

function head(text: string) {
  return parseHead(enc.encode(text));
}

function refused(text: string): number {
  try {
    head(text);
  } catch (err) {
    assert.ok(err instanceof ApiError, String(err));
    return err.status;
  }
  return 0;
}

Deno.test("request heads: framing is read as RFC 9112 says", () => {
  const h = head("POST /api/v1/data?x=1 HTTP/1.1\r\nHost: a:80\r\nContent-Length: 12");
  assert.equal(h.method, "POST");
  assert.equal(h.target, "/api/v1/data?x=1");
  assert.equal(h.contentLength, 12);
  assert.equal(h.keepAlive, true);
  const c = head("PUT / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: Chunked\r\nconnection: close");
  assert.equal(c.chunked, true);
  assert.equal(c.keepAlive, false);
  const old = head("GET / HTTP/1.0");
  assert.equal(old.keepAlive, false);
  assert.equal(head("GET / HTTP/1.0\r\nConnection: keep-alive").keepAlive, true);
  assert.equal(head("PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue").expectContinue, true);
  assert.equal(head("GET / HTTP/1.1\r\nHost: a\r\nX:  spaced  ").headers[1][1], "spaced");
});

Deno.test("request heads: anything two parsers could read differently is refused", () => {
  const cases: [string, number][] = [
    ["GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -1", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked", 501],
    ["GET / HTTP/1.0\r\nTransfer-Encoding: chunked", 400],
    ["GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b", 400], // obs-fold
    ["GET / HTTP/1.1\r\nHost: a\r\nX : b", 400], // space before the colon
    ["GET / HTTP/1.1\r\nHost: a\r\nX: a\rb", 400], // bare CR
    ["GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b", 400],
    ["GET / HTTP/1.1", 400], // no Host
    ["GET / HTTP/1.1\r\nHost: a\r\nHost: b", 400],
    ["GET  / HTTP/1.1\r\nHost: a", 400],
    ["GET / HTTP/2.0\r\nHost: a", 505],
    ["GET / HTTP/1.1\r\nHost: a\r\nExpect: something", 417],
    ["GET foo HTTP/1.1\r\nHost: a", 400],
    ["G(T / HTTP/1.1\r\nHost: a", 400],
    ["GET / HTTP/1.1\r\nHost: a b", 400],
    [`GET / HTTP/1.1\r\nHost: a${"\r\nX: y".repeat(100)}`, 431],
  ];
  for (const [text, status] of cases) assert.equal(refused(text), status, JSON.stringify(text));
});

Deno.test("request heads: latin1 reads one char per byte, ASCII or not", () => {
  const every = Uint8Array.from({ length: 256 }, (_, i) => i);
  const text = latin1(every);
  assert.equal(text.length, 256);
  for (let i = 0; i < 256; i++) assert.equal(text.charCodeAt(i), i);
  assert.equal(latin1(enc.encode("Host: a\r\n")), "Host: a\r\n");
  assert.equal(
    latin1(new Uint8Array([0xef, 0xbb, 0xbf, 0x41])),
    "\u00ef\u00bb\u00bfA",
    "no BOM dropped",
  );
  assert.equal(latin1(new Uint8Array(20000).fill(0xe9)), "\u00e9".repeat(20000));
  // A value in UTF-8 stays its bytes: the head is a byte string (RFC 9110 section 5.5).
  assert.equal(
    parseHead(enc.encode("GET / HTTP/1.1\r\nHost: a\r\nX: \u00e9")).headers[1][1],
    "\u00c3\u00a9",
  );
});

Deno.test("request heads: HeadParser answers as parseHead, remembering heads it has seen", () => {
  const parser = new HeadParser(4, 200);
  const texts = [
    "POST /api/v1/data HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nAuthorization: Bearer t",
    "POST /api/v1/data HTTP/1.1\r\nHost: a\r\nContent-Length: 13\r\nAuthorization: Bearer t",
    "GET / HTTP/1.0\r\nConnection: keep-alive",
    "PUT /x HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue",
    `GET /long HTTP/1.1\r\nHost: a\r\nX: ${"y".repeat(300)}`, // past maxChars: not remembered
    "GET /6 HTTP/1.1\r\nHost: a",
  ];
  for (const round of [1, 2, 3]) {
    for (const t of texts) {
      const got = parser.parse(enc.encode(t));
      assert.deepEqual(got, parseHead(enc.encode(t)), `round ${round}: ${t.slice(0, 30)}`);
      assert.ok(Object.isFrozen(got) === !t.includes("/long"), "remembered heads are frozen");
    }
  }
  const one = parser.parse(enc.encode(texts[5]));
  assert.equal(parser.parse(enc.encode(texts[5])), one, "the same object for the same bytes");
  assert.throws(() => (one.headers as [string, string][]).push(["x", "y"]), TypeError);
  // A refused head is refused every time, never remembered as anything else.
  for (let i = 0; i < 3; i++) {
    assert.throws(() => parser.parse(enc.encode("GET / HTTP/1.1\r\nHost: a\r\nHost: b")), ApiError);
  }
});

const TIMEOUTS = { headerTimeoutMs: 400, idleTimeoutMs: 600, requestTimeoutMs: 2000 };

async function withServer(
  opts: Partial<HttpServerOptions>,
  handler: (req: Request) => Response | Promise<Response>,
  fn: (server: HttpServer, port: number) => Promise<void>,
): Promise<void> {
  const server = serveHttp(
    { hostname: "127.0.0.1", port: 0, maxConnections: 16, ...TIMEOUTS, ...opts },
    handler,
  );
  try {
    await fn(server, server.addr.port);
  } finally {
    await server.shutdown();
  }
}

const echo = async (req: Request) => {
  const body = await req.text();
  return Response.json({ method: req.method, path: new URL(req.url).pathname, body });
};

Deno.test("HTTP server: keep-alive, pipelining, chunked bodies and HEAD", async () => {
  await withServer({}, echo, async (_s, port) => {
    const res = await fetch(`http://127.0.0.1:${port}/x`, { method: "POST", body: "hello" });
    assert.deepEqual(await res.json(), { method: "POST", path: "/x", body: "hello" });
    // Two requests in one write, the second chunked with an extension and a trailer.
    const out = await exchange(
      port,
      "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc" +
        "POST /b HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" +
        "4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\n",
    );
    const bodies = [...out.matchAll(/\{[^}]*\}/g)].map((m) => JSON.parse(m[0]));
    assert.deepEqual(bodies, [
      { method: "POST", path: "/a", body: "abc" },
      { method: "POST", path: "/b", body: "wikipedia" },
    ]);
    assert.match(out, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(out, /connection: close/);
    const h = await exchange(port, "HEAD /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
    assert.match(h, /^HTTP\/1\.1 200 OK\r\n/);
    assert.ok(h.endsWith("\r\n\r\n"), "a HEAD answer has no body");
  });
});

Deno.test("HTTP server: empty lines before a request line are ignored, however they arrive", async () => {
  await withServer({}, echo, async (_s, port) => {
    const request = "GET /e HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    for (
      const pieces of [
        ["\r\n\r\n" + request],
        ["\r", "\n" + request],
        ["\r\n", "\r", "\n", request],
        ["\r\n\r", "\nGET /e HTTP/1.1\r\n", "Host: h\r\nConnection: close\r\n\r\n"],
      ]
    ) {
      const out = await exchange(port, pieces);
      assert.match(out, /^HTTP\/1\.1 200 OK\r\n/, JSON.stringify(pieces));
      assert.match(out, /"path":"\/e"/, JSON.stringify(pieces));
    }
  });
});

Deno.test("HTTP server: 100-continue is sent only when the handler reads the body", async () => {
  let reads = 0;
  await withServer({}, async (req) => {
    if (new URL(req.url).pathname === "/read") {
      reads++;
      return new Response(await req.text());
    }
    return new Response("no thanks", { status: 413 });
  }, async (_s, port) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(enc.encode(
        "PUT /read HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
      ));
      const buf = new Uint8Array(1024);
      const n = await conn.read(buf);
      assert.equal(dec.decode(buf.subarray(0, n!)), "HTTP/1.1 100 Continue\r\n\r\n");
      await conn.write(enc.encode("ok"));
      const m = await conn.read(buf);
      assert.match(dec.decode(buf.subarray(0, m!)), /^HTTP\/1\.1 200 OK[\s\S]*\r\n\r\nok$/);
    } finally {
      conn.close();
    }
    const refusedEarly = await exchange(
      port,
      "PUT /no HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999\r\nExpect: 100-continue\r\n\r\n",
    );
    assert.match(refusedEarly, /^HTTP\/1\.1 413 /);
    assert.doesNotMatch(refusedEarly, /100 Continue/);
    assert.match(refusedEarly, /connection: close/, "a body left unread closes the connection");
    assert.equal(reads, 1);
  });
});

Deno.test("HTTP server: malformed requests get a JSON 4xx and the connection closes", async () => {
  await withServer({}, echo, async (_s, port) => {
    const smuggle = await exchange(
      port,
      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert.match(smuggle, /^HTTP\/1\.1 400 /);
    assert.equal(
      JSON.parse(smuggle.slice(smuggle.indexOf("\r\n\r\n") + 4)).error.code,
      "bad_request",
    );
    const long = await exchange(
      port,
      `GET / HTTP/1.1\r\nHost: h\r\nX: ${"a".repeat(40000)}\r\n\r\n`,
    );
    assert.match(long, /^HTTP\/1\.1 431 /);
    const chunk = await exchange(
      port,
      "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    );
    assert.match(chunk, /^HTTP\/1\.1 400 /);
    assert.match(chunk, /malformed chunked body/);
  });
});

Deno.test("HTTP server: slow and silent clients are closed", async (t) => {
  const big = new Uint8Array(32 * 1024 * 1024);
  const handler = (req: Request) =>
    new URL(req.url).pathname === "/big" ? new Response(big) : echo(req);
  await withServer({}, handler, async (server, port) => {
    await t.step("a head that stops half-way gets 408 after the header timeout", async () => {
      const t0 = performance.now();
      const out = await exchange(port, "GET / HTTP/1.1\r\nHost: h\r\n");
      const ms = performance.now() - t0;
      assert.match(out, /^HTTP\/1\.1 408 /);
      assert.ok(ms >= TIMEOUTS.headerTimeoutMs && ms < 2500, `closed after ${ms} ms`);
    });
    await t.step("a connection that never sends a byte is closed silently", async () => {
      assert.equal(await exchange(port, ""), "");
    });
    await t.step("a kept-alive connection without a next request is closed", async () => {
      const out = await exchange(port, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
      assert.match(out, /^HTTP\/1\.1 200 /);
    });
    await t.step("a body that stops arriving is dropped", async () => {
      const out = await exchange(
        port,
        "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
      );
      assert.doesNotMatch(out, /200 OK/);
    });
    await t.step("an answer the client does not read is abandoned", async () => {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      try {
        await conn.write(enc.encode("GET /big HTTP/1.1\r\nHost: h\r\n\r\n"));
        const t0 = performance.now();
        while (server.stats.closed.write_timeout === 0 && performance.now() - t0 < 5000) {
          await new Promise((r) => setTimeout(r, 50));
        }
      } finally {
        conn.close();
      }
    });
    assert.equal(server.stats.closed.write_timeout, 1, JSON.stringify(server.stats));
    assert.ok(server.stats.closed.header_timeout >= 2, JSON.stringify(server.stats));
    assert.ok(server.stats.closed.idle_timeout >= 1, JSON.stringify(server.stats));
    assert.ok(server.stats.closed.body_timeout >= 1, JSON.stringify(server.stats));
  });
});

Deno.test("HTTP server: at the cap, a new client replaces the oldest idle one, or gets 503", async () => {
  const release = Promise.withResolvers<void>();
  let holding = 0;
  await withServer({ maxConnections: 4, headerTimeoutMs: 10_000 }, async (req) => {
    if (new URL(req.url).pathname === "/hold") {
      holding++;
      await release.promise;
    }
    return new Response("ok");
  }, async (server, port) => {
    const open: Deno.Conn[] = [];
    try {
      // Four clients that never finish their head fill the cap ...
      for (let i = 0; i < 4; i++) {
        const c = await Deno.connect({ hostname: "127.0.0.1", port });
        await c.write(enc.encode("GET / HTTP/1.1\r\nHost: h\r\n"));
        open.push(c);
      }
      while (server.connections < 4) await new Promise((r) => setTimeout(r, 10));
      // ... and a prompt client still gets its answer, one of them making room.
      for (let i = 0; i < 3; i++) {
        const out = await exchange(
          port,
          "GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        );
        assert.match(out, /^HTTP\/1\.1 200 /);
      }
      assert.ok(server.stats.closed.evicted >= 1, JSON.stringify(server.stats));
      assert.ok(server.connections <= 4);
      // Four requests under way cannot be evicted: the fifth client is told so.
      const held = Array.from(
        { length: 4 },
        () => exchange(port, "GET /hold HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", 5000),
      );
      while (holding < 4) await new Promise((r) => setTimeout(r, 10));
      assert.equal(server.stats.closed.evicted, 4, "every half-open client made room");
      const busy = await exchange(port, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
      assert.match(busy, /^HTTP\/1\.1 503 /);
      assert.match(busy, /retry-after: 1/);
      release.resolve();
      for (const out of await Promise.all(held)) assert.match(out, /^HTTP\/1\.1 200 /);
    } finally {
      release.resolve();
      for (const c of open) {
        try {
          c.close();
        } catch { /* evicted */ }
      }
    }
  });
});

Deno.test("HTTP server: shutdown answers the request under way and closes the rest", async () => {
  const entered = Promise.withResolvers<void>();
  const server = serveHttp(
    { hostname: "127.0.0.1", port: 0, maxConnections: 8, ...TIMEOUTS },
    async () => {
      entered.resolve();
      await new Promise((r) => setTimeout(r, 200));
      return new Response("late but answered");
    },
  );
  const port = server.addr.port;
  const idle = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    const pending = exchange(port, "GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    await entered.promise;
    await server.shutdown();
    const out = await pending;
    assert.match(out, /^HTTP\/1\.1 200 [\s\S]*connection: close[\s\S]*late but answered$/);
    assert.equal(await idle.read(new Uint8Array(16)).catch(() => null), null);
    await assert.rejects(Deno.connect({ hostname: "127.0.0.1", port }));
  } finally {
    idle.close();
  }
});

/**
 * Sends `first` at once, then `raw` one byte every `everyMs` (over and over)
 * until the server closes (or `maxMs`); what came back and when it closed.
 */
async function trickle(
  port: number,
  first: string,
  raw: string,
  everyMs: number,
  maxMs: number,
): Promise<{ out: string; ms: number }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  conn.setNoDelay(true);
  const t0 = performance.now();
  let out = "";
  let closedAt = -1;
  const reading = (async () => {
    const buf = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      out += dec.decode(buf.subarray(0, n));
    }
    closedAt = performance.now() - t0;
  })();
  try {
    if (first) await conn.write(enc.encode(first));
    const bytes = enc.encode(raw);
    for (let i = 0; closedAt < 0 && performance.now() - t0 < maxMs; i++) {
      const ok = await conn.write(bytes.subarray(i % bytes.length, i % bytes.length + 1))
        .then(() => true, () => false);
      if (!ok) break;
      await new Promise((r) => setTimeout(r, everyMs));
    }
    await Promise.race([reading, new Promise((r) => setTimeout(r, 500))]);
  } finally {
    try {
      conn.close();
    } catch { /* closed already */ }
    await reading;
  }
  return { out, ms: closedAt < 0 ? Infinity : closedAt };
}

Deno.test("HTTP server: a client sending one byte at a time is cut within the documented bounds", async () => {
  // The sweep runs every quarter of the shortest timeout (here 100 ms) and acts
  // at most two sweeps late, never early.
  const tick = Math.max(
    50,
    Math.min(1000, TIMEOUTS.headerTimeoutMs / 4, TIMEOUTS.idleTimeoutMs / 4),
  );
  const slack = 2 * tick + 300; // the trickle's own pace and a busy machine
  await withServer({}, echo, async (server, port) => {
    const head = await trickle(
      port,
      "",
      "GET / HTTP/1.1\r\nHost: h\r\nX-Pad: " + "a".repeat(200),
      50,
      4000,
    );
    assert.match(head.out, /^HTTP\/1\.1 408 /);
    assert.ok(
      head.ms >= TIMEOUTS.headerTimeoutMs && head.ms < TIMEOUTS.headerTimeoutMs + slack,
      `a head at one byte per 50 ms was cut after ${head.ms} ms`,
    );
    // A body at one byte per 100 ms never waits idleTimeoutMs for a byte: the request timeout cuts it.
    const body = await trickle(
      port,
      "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 100000\r\n\r\n",
      "b",
      100,
      6000,
    );
    assert.ok(
      body.ms >= TIMEOUTS.requestTimeoutMs && body.ms < TIMEOUTS.requestTimeoutMs + slack + 500,
      `a body at one byte per 100 ms was cut after ${body.ms} ms`,
    );
    assert.doesNotMatch(body.out, /200 OK/);
    assert.ok(server.stats.closed.body_timeout >= 1, JSON.stringify(server.stats));
  });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

Deno.test("HTTP server: a pipelined request's 100 Continue goes out after the answer ahead of it", async () => {
  const half = new Uint8Array(65536).fill(0x61);
  const rest = Promise.withResolvers<void>();
  const reading = Promise.withResolvers<void>();
  await withServer({}, async (req) => {
    if (new URL(req.url).pathname === "/stream") {
      let parts = 0;
      const body = new ReadableStream<Uint8Array>({
        async pull(ctl) {
          if (parts === 1) await rest.promise;
          ctl.enqueue(half);
          if (++parts === 2) ctl.close();
        },
      }, { highWaterMark: 0 });
      return new Response(body, { headers: { "content-length": String(2 * half.length) } });
    }
    reading.resolve();
    return new Response(await req.text());
  }, async (_s, port) => {
    const out = exchange(
      port,
      "GET /stream HTTP/1.1\r\nHost: h\r\n\r\n" +
        "PUT /read HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n" +
        "Connection: close\r\n\r\nok",
    );
    // The second handler reads its body while the first answer is half written.
    await reading.promise;
    await sleep(100);
    rest.resolve();
    const text = await out;
    const bodyAt = text.indexOf("\r\n\r\n") + 4;
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n[\s\S]*content-length: 131072\r\n/);
    const interim = text.indexOf("HTTP/1.1 100 Continue");
    assert.equal(
      interim - bodyAt,
      2 * half.length,
      "the 100 Continue follows the whole first answer",
    );
    assert.ok(/^a*$/.test(text.slice(bodyAt, interim)), "the first answer's body is intact");
    assert.match(
      text.slice(interim),
      /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 OK\r\n[\s\S]*\r\n\r\nok$/,
    );
  });
});

Deno.test("HTTP server: a pipelined 100 Continue does not restart the write timeout of the answer ahead", async () => {
  const timeouts = { headerTimeoutMs: 400, idleTimeoutMs: 1200, requestTimeoutMs: 5000 };
  const tick = 100; // a quarter of the shortest timeout: the sweeper acts at most two ticks late
  const big = new Uint8Array(32 * 1024 * 1024);
  await withServer(timeouts, async (req) => {
    if (new URL(req.url).pathname === "/big") return new Response(big);
    // The second request asks for its body (and so for a 100 Continue) just
    // before the first answer, which the client does not read, times out.
    await sleep(timeouts.idleTimeoutMs - tick);
    return new Response(await req.text());
  }, async (server, port) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await conn.write(enc.encode(
        "GET /big HTTP/1.1\r\nHost: h\r\n\r\n" +
          "PUT /read HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nok",
      ));
      const t0 = performance.now();
      while (server.stats.closed.write_timeout === 0 && performance.now() - t0 < 5000) {
        await sleep(20);
      }
      const ms = performance.now() - t0;
      assert.equal(server.stats.closed.write_timeout, 1, JSON.stringify(server.stats));
      // Restarted by the 100 Continue, it could not fire before 2 * idleTimeoutMs - tick.
      assert.ok(
        ms < timeouts.idleTimeoutMs + 2 * tick + 500,
        `an unread answer was abandoned after ${ms} ms`,
      );
    } finally {
      conn.close();
    }
  });
});

/** Sends `raw` on a fresh connection, then (when `halfClose`) ends its sending side; reads to the close. */
async function sendAndRead(port: number, raw: string, halfClose: boolean): Promise<string> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const timer = setTimeout(() => conn.close(), 5000);
  try {
    await conn.write(enc.encode(raw));
    if (halfClose) await conn.closeWrite();
    const parts: string[] = [];
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = await conn.read(buf).catch(() => null);
      if (n === null) break;
      parts.push(dec.decode(buf.subarray(0, n)));
    }
    return parts.join("");
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}

Deno.test("HTTP server: the answer ahead of a malformed pipelined head goes out whole, then the 400", async () => {
  // Larger than the socket buffers take at once: the answer needs many writes.
  const big = new Uint8Array(16 * 1024 * 1024).fill(0x62);
  const handler = (req: Request) =>
    new URL(req.url).pathname === "/big" ? new Response(big) : echo(req);
  const pipelined = "GET /big HTTP/1.1\r\nHost: h\r\n\r\n" +
    "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n";
  await withServer({}, handler, async (server, port) => {
    // A client that reads nothing holds the connection no longer than the write timeout.
    const silent = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      await silent.write(enc.encode(pipelined));
      const t0 = performance.now();
      while (server.connections > 0 && performance.now() - t0 < 5000) await sleep(20);
      assert.equal(server.connections, 0);
      assert.equal(server.stats.closed.write_timeout, 1, JSON.stringify(server.stats));
    } finally {
      silent.close();
    }
    const text = await sendAndRead(port, pipelined, false);
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    const bodyAt = text.indexOf("\r\n\r\n") + 4;
    const refusal = text.indexOf("HTTP/1.1 400 ");
    assert.equal(refusal - bodyAt, big.length, "the 400 follows the whole first answer");
    assert.ok(/^b*$/.test(text.slice(bodyAt, refusal)), "the first answer's body is intact");
    // The refusal is the last thing the client reads before the close.
    assert.match(
      text.slice(refusal),
      /^[^{]*connection: close\r\n[^{]*\{"error":\{"code":"bad_request"[^]*\}$/,
    );
  });
});

Deno.test("HTTP server: a client that stops sending after its requests still gets every answer whole", async () => {
  const big = new Uint8Array(16 * 1024 * 1024).fill(0x62);
  const handler = (req: Request) =>
    new URL(req.url).pathname === "/big" ? new Response(big) : echo(req);
  await withServer({}, handler, async (_s, port) => {
    // The end of the client's stream arrives with the request (a half-close).
    const text = await sendAndRead(port, "GET /big HTTP/1.1\r\nHost: h\r\n\r\n", true);
    assert.match(text, /^HTTP\/1\.1 200 OK\r\n/);
    const bodyAt = text.indexOf("\r\n\r\n") + 4;
    assert.equal(text.length - bodyAt, big.length, "the whole answer, then the close");
    assert.ok(/^b*$/.test(text.slice(bodyAt)));
    // An incomplete head at the end of the stream is refused after the answer ahead.
    const cut = await sendAndRead(port, "GET /big HTTP/1.1\r\nHost: h\r\n\r\nGET / HT", true);
    const refusal = cut.indexOf("HTTP/1.1 400 ");
    assert.equal(refusal - (cut.indexOf("\r\n\r\n") + 4), big.length);
    assert.match(cut.slice(refusal), /incomplete request head/);
  });
});

Deno.test("HTTP server: a pipelined head that times out is answered 408 after the answer ahead, whole", async () => {
  const big = new Uint8Array(8 * 1024 * 1024).fill(0x62);
  const handler = (req: Request) =>
    new URL(req.url).pathname === "/big" ? new Response(big) : echo(req);
  // Only the header timeout is under test: the write timeout (the idle one) is
  // long enough that a client starved on a loaded machine is not cut off instead.
  const timeouts = { idleTimeoutMs: 10_000, requestTimeoutMs: 20_000 };
  await withServer(timeouts, handler, async (server, port) => {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      // The second head stops half-way; the client reads the first answer slowly
      // (but steadily: no write timeout), so it goes out past the header timeout.
      await conn.write(enc.encode("GET /big HTTP/1.1\r\nHost: h\r\n\r\nGET / HT"));
      const t0 = performance.now();
      const parts: string[] = [];
      const buf = new Uint8Array(32768);
      for (;;) {
        const n = await conn.read(buf).catch(() => null);
        if (n === null) break;
        parts.push(dec.decode(buf.subarray(0, n)));
        await sleep(5);
      }
      const text = parts.join("");
      assert.ok(
        performance.now() - t0 > TIMEOUTS.headerTimeoutMs,
        "the answer outlasted the header timeout",
      );
      const bodyAt = text.indexOf("\r\n\r\n") + 4;
      const refusal = text.indexOf("HTTP/1.1 408 ");
      assert.equal(
        refusal - bodyAt,
        big.length,
        `the 408 follows the whole first answer (${JSON.stringify(server.stats)})`,
      );
      assert.ok(/^b*$/.test(text.slice(bodyAt, refusal)), "the first answer's body is intact");
      assert.equal(server.stats.closed.header_timeout, 1, JSON.stringify(server.stats));
    } finally {
      conn.close();
    }
  });
});

Deno.test("HTTP server: connections reset before they are accepted cost no wait and no other client", async () => {
  await withServer({ maxConnections: 16, idleTimeoutMs: 30_000 }, echo, async (server, port) => {
    // A keep-alive client, idle between requests: evictable, and it must not be evicted.
    const kept = await Deno.connect({ hostname: "127.0.0.1", port });
    try {
      const ask = async () => {
        await kept.write(enc.encode("GET /kept HTTP/1.1\r\nHost: h\r\n\r\n"));
        const buf = new Uint8Array(4096);
        const n = await kept.read(buf);
        return dec.decode(buf.subarray(0, n ?? 0));
      };
      assert.match(await ask(), /^HTTP\/1\.1 200 /);
      // 50 clients that connect and reset at once (SO_LINGER 0): a real peer, Python's sockets.
      const reset = await new Deno.Command("/usr/bin/python3", {
        args: [
          "-c",
          `import socket, struct
for i in range(50):
    s = socket.create_connection(("127.0.0.1", ${port}))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()`,
        ],
      }).output();
      assert.ok(reset.success, dec.decode(reset.stderr));
      const t0 = performance.now();
      const out = await exchange(port, "GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n");
      const ms = performance.now() - t0;
      assert.match(out, /^HTTP\/1\.1 200 /);
      // Each used to cost a back-off of up to a second and an eviction.
      assert.ok(ms < 1000, `a new client waited ${ms.toFixed(0)} ms`);
      assert.equal(server.stats.closed.evicted, 0, JSON.stringify(server.stats));
      assert.equal(server.stats.acceptErrors, server.stats.goneBeforeAccept);
      assert.match(await ask(), /^HTTP\/1\.1 200 /, "the idle keep-alive client was kept");
    } finally {
      kept.close();
    }
  });
});

Deno.test("HTTP server: at the cap, clients that pipeline and never read their answers make room", async () => {
  const big = new Uint8Array(1 << 20).fill(120);
  const handler = (req: Request) =>
    new URL(req.url).pathname === "/big" ? new Response(big) : new Response("ok");
  await withServer({ maxConnections: 4, idleTimeoutMs: 30_000 }, handler, async (server, port) => {
    // Four clients (a real peer: Python's sockets, with a tiny receive buffer) each pipeline ten
    // requests for 1 MiB and read nothing: their answers stall in the socket buffers.
    const hog = new Deno.Command("/usr/bin/python3", {
      args: [
        "-c",
        `import socket, time
socks = []
for i in range(4):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", ${port}))
    s.sendall(b"GET /big HTTP/1.1\\r\\nHost: h\\r\\n\\r\\n" * 10)
    socks.append(s)
print("sent", flush=True)
time.sleep(20)`,
      ],
      stdout: "piped",
    }).spawn();
    try {
      const lines = hog.stdout.pipeThrough(new TextDecoderStream()).getReader();
      assert.match((await lines.read()).value ?? "", /sent/);
      lines.releaseLock();
      while (server.connections < 4) await new Promise((r) => setTimeout(r, 10));
      await new Promise((r) => setTimeout(r, 300)); // their writes stall
      // A prompt client gets its answer: one of the stalled connections makes room.
      const out = await exchange(
        port,
        "GET /healthz HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        5000,
      );
      assert.match(out, /^HTTP\/1\.1 200 /);
      assert.ok(server.stats.closed.evicted >= 1, JSON.stringify(server.stats));
      assert.equal(server.stats.closed.refused, 0);
    } finally {
      hog.kill();
      await hog.status;
      await hog.stdout.cancel().catch(() => {});
    }
  });
});
