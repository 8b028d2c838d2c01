/**
 * The dashboard's Machines panel in a real browser (Debian chromium driven by
 * playwright-core) against a real edged reading a real Modbus device
 * (pymodbus): the adapter's state and its points' values show and follow the
 * device; a device that goes away shows as not connected with its error.
 * Saves `test-results/dashboard-adapters.png`.
 */
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { type EdgedProcess, startEdged } from "../_helpers/edged.ts";
import { startModbusServer } from "../_helpers/modbus.ts";
import { until } from "../_helpers/until.ts";

const RESULTS = new URL("../../test-results/", import.meta.url).pathname;

/** Polls a text on the page until `ok` holds for it. */
const text = (what: string, read: () => Promise<string | null>, ok: (s: string) => boolean) =>
  until(what, async () => {
    const t = await read();
    return t !== null && ok(t) ? t : undefined;
  }, 20_000);

Deno.test({
  name: "dashboard: the Machines panel shows adapters, their points and a lost device",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const device = await startModbusServer();
    const dir = await Deno.makeTempDir({ prefix: "edged-dash-adapters-" });
    let edged: EdgedProcess | null = null;
    const browser = await chromium.launch({
      executablePath: "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"],
    });
    try {
      await device.put("holding", 0, "float32", 21.5);
      await Deno.writeTextFile(
        `${dir}/edged.toml`,
        `[[adapters.modbus]]
name = "plc1"
url = "${device.url}"
device_id = "press-3"
poll_ms = 200
[[adapters.modbus.points]]
metric = "temperature"
address = 0
type = "float32"
[[adapters.modbus.points]]
metric = "valve"
table = "coil"
address = 4
writable = true
`,
      );
      edged = await startEdged({ args: ["--config", `${dir}/edged.toml`] });
      const page = await (await browser.newContext({ viewport: { width: 1024, height: 600 } }))
        .newPage();
      const problems: string[] = [];
      page.on("pageerror", (err) => problems.push(`page error: ${err.message}`));
      page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));
      const res = await page.goto(edged.url + "/");
      assert((await res!.body()).byteLength < 30 * 1024, "the page stays under 30 KB");
      await page.fill("#token", edged.token);
      await page.click("#login button");

      const row = page.locator('tr[data-adapter="plc1"]');
      await row.waitFor({ timeout: 20_000 });
      assert.equal(await row.locator("th").textContent(), "plc1 (modbus)");
      await text(
        "connected",
        () => row.locator("td").nth(0).textContent(),
        (t) => t === "connected",
      );
      assert.equal(await row.locator("td").nth(1).textContent(), "press-3");
      assert.equal(await row.locator("td").nth(2).textContent(), device.url);
      const temp = page.locator('tr[data-point="plc1/temperature"] td').first();
      await text("the temperature", () => temp.textContent(), (t) => t === "21.5");
      assert.equal(
        await page.locator('tr[data-point="plc1/valve"] th').textContent(),
        "plc1/valve ✎",
      );

      // The value follows the device.
      await device.put("holding", 0, "float32", -3.25);
      await text("the new temperature", () => temp.textContent(), (t) => t === "-3.25");
      await Deno.mkdir(RESULTS, { recursive: true });
      await page.locator("#adapters-card").screenshot({ path: `${RESULTS}dashboard-adapters.png` });

      // The device goes away: the state and the error show, the page says not ready.
      await device.stop();
      await text(
        "not connected",
        () => row.locator("td").nth(0).textContent(),
        (t) => t === "backoff" || t === "connecting",
      );
      await text(
        "the error",
        () => row.locator("td").nth(6).textContent(),
        (t) => t.startsWith("connection:"),
      );
      await text(
        "not ready",
        () => page.textContent("#ready"),
        (t) => t.includes("adapters: plc1"),
      );
      assert.deepEqual(problems, [], "no script errors and no CSP violations");
    } finally {
      await browser.close();
      await edged?.stop();
      await device.stop();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
