/**
 * The operator page at `/`: one self-contained HTML response (markup, style
 * and script inline, no CDN, no fonts), so it works on a device with no
 * internet and costs the browser one request. The sources live in
 * `runtime/dashboard/` and are imported as text, which `deno compile` embeds
 * in the binary. The page reads `GET /api/v1/status` with the API token the
 * operator enters once (kept in the tab's sessionStorage).
 *
 * @module
 */
import html from "./dashboard/index.html" with { type: "text" };
import css from "./dashboard/style.css" with { type: "text" };
import js from "./dashboard/app.js" with { type: "text" };

/** What the page shows before the operator has entered the token. */
export interface DashboardInfo {
  deviceId: string;
  version: string;
}

const esc = (s: string) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);

async function cspHash(source: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(source));
  return `'sha256-${btoa(String.fromCharCode(...new Uint8Array(digest)))}'`;
}

/** Splices `value` in place of the first `/*{{name}}*\/` (split/join: no `$` patterns). */
function splice(template: string, name: string, value: string): string {
  const marker = `/*{{${name}}}*/`;
  const at = template.indexOf(marker);
  if (at < 0) throw new Error(`dashboard template lacks ${marker}`);
  return template.slice(0, at) + value + template.slice(at + marker.length);
}

/** The text of the first `<tag>` element. */
function inner(page: string, tag: string): string {
  const start = page.indexOf(`<${tag}>`) + tag.length + 2;
  return page.slice(start, page.indexOf(`</${tag}>`, start));
}

let cached: { key: string; body: string; csp: string } | undefined;

async function build(info: DashboardInfo): Promise<{ body: string; csp: string }> {
  const key = `${info.deviceId}\n${info.version}`;
  if (cached?.key === key) return cached;
  const body = splice(splice(html, "css", css), "js", js)
    .replaceAll("__DEVICE__", () => esc(info.deviceId))
    .replaceAll("__VERSION__", () => esc(info.version));
  // The inline style and script are allowed by their digests (CSP Level 2
  // hash sources, over the element's whole text), so nothing injected into
  // the page could run.
  const csp = [
    "default-src 'none'",
    `style-src ${await cspHash(inner(body, "style"))}`,
    `script-src ${await cspHash(inner(body, "script"))}`,
    "connect-src 'self'",
    "img-src 'self' data:",
    "form-action 'none'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
  ].join("; ");
  cached = { key, body, csp };
  return cached;
}

/** Renders the page. */
export async function dashboardPage(info: DashboardInfo): Promise<Response> {
  const { body, csp } = await build(info);
  return new Response(body, {
    headers: {
      "Content-Type": "text/html; charset=utf-8",
      "Content-Security-Policy": csp,
      "X-Content-Type-Options": "nosniff",
      "Referrer-Policy": "no-referrer",
      "Cache-Control": "no-cache",
    },
  });
}
