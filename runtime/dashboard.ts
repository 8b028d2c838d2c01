/**
 * The operator page at `/`. Minimal for now: it proves the process is up and
 * points at the API; the full dashboard grows here.
 *
 * @module
 */

/** Renders the page. */
export function dashboardPage(info: { deviceId: string; version: string }): Response {
  const esc = (s: string) => s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>edged · ${esc(info.deviceId)}</title></head>
<body style="font-family:system-ui,sans-serif;margin:2rem">
<h1>edged</h1>
<p>Device <b>${esc(info.deviceId)}</b>, version ${esc(info.version)}.</p>
<p><a href="/healthz">/healthz</a> · <a href="/readyz">/readyz</a> · <a href="/metrics">/metrics</a></p>
</body></html>`;
  return new Response(html, {
    headers: {
      "Content-Type": "text/html; charset=utf-8",
      "Content-Security-Policy": "default-src 'self'",
    },
  });
}
