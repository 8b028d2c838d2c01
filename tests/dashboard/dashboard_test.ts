/**
 * The dashboard in a real browser (Debian chromium driven by playwright-core)
 * against a real edged process with real example modules: the page shows a
 * loaded module and the outbox, deploys a module through its upload form,
 * turns a reading into an alert, and passes its own Content-Security-Policy.
 * Saves `test-results/dashboard.png` (1024×600, the cheap-tablet size).
 */
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { postJson, startEdged } from "../_helpers/edged.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const EXAMPLES = `${ROOT}examples/modules/`;
const RESULTS = `${ROOT}test-results/`;
const CHROMIUM = "/usr/bin/chromium";

async function putModule(
  api: (path: string, init?: RequestInit) => Promise<Response>,
  dir: string,
): Promise<Response> {
  const manifest = await Deno.readTextFile(`${dir}/manifest.json`);
  const fd = new FormData();
  fd.append("manifest", manifest);
  fd.append("module", new Blob([await Deno.readFile(`${dir}/module.wasm`)]), "module.wasm");
  return api(`/api/v1/modules/${JSON.parse(manifest).name}`, { method: "PUT", body: fd });
}

/** Polls `read` until `ok` holds; fails with the last value seen. */
async function until(
  what: string,
  read: () => Promise<string | null>,
  ok: (s: string) => boolean,
  timeoutMs = 20_000,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last: string | null = null;
  while (Date.now() < deadline) {
    last = await read();
    if (last !== null && ok(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: still ${JSON.stringify(last)} after ${timeoutMs} ms`);
}

Deno.test({
  name: "dashboard: shows modules and outbox, deploys a module, shows an alert",
  // playwright keeps its pipe to the browser open between steps.
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const edged = await startEdged({ env: { EDGED_DEVICE_ID: "gateway-1" } });
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
      ],
    });
    try {
      // A module already running before the page opens, and a reading waiting for uplink.
      const put = await putModule(edged.api, `${EXAMPLES}relay-wat`);
      assert.equal(put.status, 201, await put.text());
      assert.equal(
        (await postJson(edged, { device_id: "pump-7", metric: "temperature", value: 70 })).status,
        202,
      );

      const context = await browser.newContext({ viewport: { width: 1024, height: 600 } });
      const page = await context.newPage();
      const problems: string[] = [];
      page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
      page.on("console", (msg) => {
        if (msg.type() === "error") problems.push(`console: ${msg.text()}`);
      });

      const res = await page.goto(edged.url + "/");
      assert.equal(res?.status(), 200);
      assert((await res!.body()).byteLength < 30 * 1024, "the page stays under 30 KB");
      assert.equal(await page.textContent("#device"), "gateway-1");

      // The token, entered once.
      await page.fill("#token", edged.token);
      await page.click("#login button");
      const relay = page.locator('tr[data-module="relay"]');
      await relay.waitFor({ timeout: 20_000 });
      assert.equal(await relay.locator("td").nth(0).textContent(), "running");
      assert.equal(await relay.locator("td").nth(1).textContent(), "1.0.0");
      await until("outbox readings", () => page.textContent("#ob-readings"), (t) => t === "1");
      assert((await page.textContent("#mqtt"))!.includes("no broker configured"));
      assert.equal(await page.textContent("#ready"), "ready");

      // Deploy the C example through the upload form.
      const alertDir = `${EXAMPLES}threshold-alert-c`;
      await page.setInputFiles("#up-manifest", `${alertDir}/manifest.json`);
      await page.setInputFiles("#up-wasm", `${alertDir}/module.wasm`);
      await page.click("#upload button:not([type])");
      const alert = page.locator('tr[data-module="threshold-alert"]');
      await alert.waitFor({ timeout: 20_000 });
      await until(
        "deploy notice",
        () => page.textContent("#notice"),
        (t) => t.includes("threshold-alert 1.0.0 is running"),
      );

      // A hot reading, sent from the page, becomes an alert.
      await page.fill('#reading input[name="value"]', "81.5");
      await page.click("#reading button");
      const item = page.locator("#alerts li").first();
      await item.waitFor({ timeout: 20_000 });
      const alertText = (await item.textContent())!;
      assert(alertText.includes("alerts/pump-7/temperature"), alertText);
      assert(alertText.includes('"state":"high"'), alertText);
      // td 4 is "Out": one alert published.
      await until(
        "alert module out",
        () => alert.locator("td").nth(3).textContent(),
        (t) => t === "1",
      );
      // Its delivery: caught up, with the lag from the reading's 202 to the alert committed.
      await until(
        "alert module delivery",
        () => alert.locator("td").nth(7).textContent(),
        (t) => /^0 behind p99 [\d.,]+ ms$/.test(t),
      );
      assert.match(
        (await alert.locator("td").nth(7).getAttribute("title"))!,
        /sensors\/\+\/temperature: durable, from the readings and messages log/,
      );
      await until("log", () => page.textContent("#logs"), (t) => t.includes("pump-7 high"));

      await Deno.mkdir(RESULTS, { recursive: true });
      await page.evaluate("window.scrollTo(0, 0)");
      await page.screenshot({ path: `${RESULTS}dashboard.png` });
      await page.screenshot({ path: `${RESULTS}dashboard-full.png`, fullPage: true });

      // Remove, through the page (confirm() answered yes).
      page.once("dialog", (d) => d.accept());
      await relay.getByRole("button", { name: "Remove relay" }).click();
      await relay.waitFor({ state: "detached", timeout: 20_000 });
      assert.equal((await edged.api("/api/v1/modules/relay")).status, 404);

      assert.deepEqual(problems, [], "no script errors and no CSP violations");
      await context.close();
    } finally {
      await browser.close();
      await edged.stop();
    }
  },
});

Deno.test({
  name: "dashboard: renders a download in progress, a quarantined module and a lost broker",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const edged = await startEdged();
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    });
    try {
      // The real status, with the states a healthy test device never reaches.
      const real = await (await edged.api("/api/v1/status")).json();
      const status = {
        ...real,
        mqtt: {
          ...real.mqtt,
          configured: true,
          broker: "mqtts://broker:8883",
          connect_failures: 4,
        },
        outbox: { readings: 48211, messages: 3, oldest_age_seconds: 5432, dropped: 0 },
        store: { ...real.store, size_bytes: 5 * 1048576, disk_full: true },
        update: {
          ...real.update,
          configured: true,
          phase: "downloading",
          previous: "a",
          progress: {
            target: "releases/x/1.3.0/edged",
            received: 3 * 1048576,
            total: 12 * 1048576,
            resumed_from: 1048576,
            bytes_per_second: 262144,
          },
          last_error: "stalled: no byte for 30 s",
        },
        modules: [{
          name: "adapter",
          state: "quarantined",
          quarantined_until: new Date(Date.now() + 60_000).toISOString(),
          version: "0.4.2",
          messages_in: 5000,
          messages_out: 4990,
          errors: 9,
          fuel_used: 1_200_000,
          memory_bytes: 2 * 1048576,
          dropped: { oversize: 0, lagging: 40 },
          subscriptions: [{ filter: "sensors/#", from: ["readings", "messages"], durable: true }],
          delivery: {
            readings: { cursor: 100, lag: 1000 },
            messages: { cursor: 7, lag: 500 },
            lagging: true,
            effect_lag_ms: { p50: null, p99: null, samples: 0 },
          },
          last_error: { kind: "fuel", message: "ran out of fuel", at: new Date().toISOString() },
        }],
      };
      const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
      const page = await context.newPage();
      await page.route("**/api/v1/status*", (r) => r.fulfill({ json: status }));
      await page.goto(edged.url + "/");
      await page.fill("#token", edged.token);
      await page.click("#login button");
      const row = page.locator('tr[data-module="adapter"]');
      await row.waitFor({ timeout: 20_000 });
      assert.match((await row.locator("td").nth(0).textContent())!, /^quarantined until /);
      assert.equal(await row.locator("td").nth(8).textContent(), "fuel: ran out of fuel");
      assert.equal(
        await row.locator("td").nth(7).textContent(),
        "lagging, 1,500 behind 40 skipped",
      );
      assert.equal(
        await page.textContent("#mqtt"),
        "disconnected from mqtts://broker:8883 (4 failed attempts)",
      );
      assert.equal(await page.textContent("#ob-readings"), (48211).toLocaleString("en-US"));
      assert.equal(await page.textContent("#ob-age"), "1 h 30 min");
      assert.equal(await page.textContent("#p-store"), "5.0 MiB · disk full");
      assert.equal(await page.getAttribute("#p-store", "class"), "bad");
      assert.equal(await page.textContent("#up-phase"), "downloading");
      assert.equal(
        await page.textContent("#up-bytes"),
        "3.0 MiB of 12 MiB · 256 KiB/s · resumed at 1.0 MiB",
      );
      assert.equal(await page.getAttribute("#up-bar", "value"), String(3 * 1048576));
      assert.equal(await page.textContent("#up-error"), "Last error: stalled: no byte for 30 s");
      // An update in progress: no second one can be started from the page.
      assert.equal(await page.isDisabled('[data-update="apply"]'), true);
      // Nothing is wider than a phone.
      assert.equal(await page.evaluate("document.documentElement.scrollWidth"), 390);
      await Deno.mkdir(RESULTS, { recursive: true });
      await page.screenshot({ path: `${RESULTS}dashboard-phone.png`, fullPage: true });
      await context.close();
    } finally {
      await browser.close();
      await edged.stop();
    }
  },
});
