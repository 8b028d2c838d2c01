// The edged dashboard: polls GET /api/v1/status every 2 s while the tab is
// visible and drives the module and update API. No framework, no network
// beyond this device. Untrusted text (module names, logs, payloads) only ever
// goes into textContent. Polling rather than server-sent events: EventSource
// cannot send the Authorization header, and a token in the URL would end up
// in proxy and browser history.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY = "edged.api-token";
const POLL_MS = 2000;
let token = sessionStorage.getItem(KEY);
let timer = 0;
let failures = 0;
let lastLog = "";
let swapping = null;

/** Creates an element with attributes (`on*` as listeners) and children. */
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== false && v != null) e.setAttribute(k, v === true ? "" : v);
  }
  e.append(...children);
  return e;
}

function text(id, value, cls) {
  const e = $(id);
  e.textContent = value;
  if (cls !== undefined) e.className = cls;
}

const num = (n) => n == null ? "–" : Math.round(n).toLocaleString();

function bytes(n) {
  if (n == null) return "–";
  const u = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) (n /= 1024), i++;
  return `${n.toFixed(i && n < 10 ? 1 : 0)} ${u[i]}`;
}

function duration(s) {
  if (s == null) return "–";
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor(s % 3600 / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor(s % 86400 / 3600)} h`;
}

function big(n) {
  if (n == null) return "–";
  for (const [d, s] of [[1e9, "G"], [1e6, "M"], [1e3, "k"]]) {
    if (n >= d) return `${(n / d).toFixed(1)} ${s}`;
  }
  return String(n);
}

const clock = (iso) => iso ? new Date(iso).toLocaleTimeString() : "–";
const ago = (iso) => iso ? `${duration((Date.now() - Date.parse(iso)) / 1000)} ago` : "never";

function notice(msg, cls = "") {
  text("notice", msg, cls);
}

/** Calls the API with the token; throws an Error carrying the API's message and details. */
async function api(path, init = {}) {
  const headers = new Headers(init.headers);
  headers.set("Authorization", `Bearer ${token}`);
  const res = await fetch(`/api/v1${path}`, { ...init, headers });
  const body = res.status === 204 ? null : await res.json().catch(() => null);
  if (res.status === 401) {
    logout("The API token was refused; enter it again.");
    throw new Error("unauthorized");
  }
  if (!res.ok) {
    const e = body?.error;
    const details = (e?.details ?? []).map((d) => typeof d === "string" ? d : d.message);
    throw new Error(
      (e ? e.message : `HTTP ${res.status}`) + (details.length ? `: ${details.join("; ")}` : ""),
    );
  }
  return body;
}

/** Runs an action from a button, with its outcome in the notice line. */
async function act(button, label, fn) {
  button.disabled = true;
  notice(`${label}…`);
  try {
    const msg = await fn();
    notice(msg ?? `${label}: done`, "ok");
  } catch (err) {
    if (err.message !== "unauthorized") notice(`${label} failed: ${err.message}`, "error");
  } finally {
    button.disabled = false;
    refresh();
  }
}

function renderHeader(s) {
  text("device", s.device_id);
  text("version", s.version);
  text("slot", s.slot ?? "factory");
  text("uptime", duration(s.uptime_seconds));
  text(
    "ready",
    s.ready ? "ready" : `not ready: ${s.not_ready.join(", ")}`,
    `badge ${s.ready ? "ok" : "warn"}`,
  );
  document.title = `edged · ${s.device_id}`;
}

function renderUplink(s) {
  const m = s.mqtt;
  if (!m.configured) text("mqtt", "no broker configured (uplink waits on disk)", "warn");
  else if (m.connected) text("mqtt", `connected to ${m.broker}`, "ok");
  else {text(
      "mqtt",
      `disconnected from ${m.broker} (${num(m.connect_failures)} failed attempts)`,
      "bad",
    );}
  const o = s.outbox;
  text("ob-readings", num(o.readings));
  text("ob-messages", num(o.messages));
  text("ob-age", o.oldest_age_seconds ? duration(o.oldest_age_seconds) : "–");
  text("ob-dropped", num(o.dropped), o.dropped ? "warn" : "");
}

function renderUpdate(u) {
  const off = !u || u.error || !u.configured;
  text(
    "up-phase",
    u?.error ? `unavailable: ${u.error}` : off ? "no update server configured" : u.phase,
    u?.phase === "failed" ? "bad" : "",
  );
  text(
    "up-available",
    u?.available ? `${u.available.version}${u.available.delta ? " (delta)" : ""}` : "–",
  );
  text("up-check", u?.last_check ? ago(u.last_check) : "never");
  const p = u?.progress;
  $("up-progress").hidden = !p;
  if (p) {
    $("up-bar").max = p.total || 1;
    $("up-bar").value = p.received;
    text(
      "up-bytes",
      `${bytes(p.received)} of ${bytes(p.total)}` +
        (p.bytes_per_second ? ` · ${bytes(p.bytes_per_second)}/s` : "") +
        (p.resumed_from ? ` · resumed at ${bytes(p.resumed_from)}` : ""),
    );
  }
  $("up-error").hidden = !u?.last_error;
  text("up-error", u?.last_error ? `Last error: ${u.last_error}` : "");
  const rb = u?.last_rollback;
  $("up-rollback").hidden = !rb;
  if (rb) text("up-rollback", `Rolled back ${ago(rb.at)}: ${rb.reason ?? ""}`);
  for (const b of document.querySelectorAll("[data-update]")) {
    const busy = u && !["idle", "failed", "trial"].includes(u.phase);
    b.disabled = off || busy || (b.dataset.update === "rollback" && !u.previous);
  }
}

function renderProcess(s) {
  text("p-rss", bytes(s.process.resident_memory_bytes));
  const lag = s.process.event_loop_lag_seconds;
  text("p-lag", lag == null ? "–" : `${(lag * 1000).toFixed(1)} ms`, lag > 0.1 ? "warn" : "");
  const cpu = s.process.cpu_seconds;
  text("p-cpu", cpu == null ? "not available" : `${cpu.toFixed(1)} s`);
  const full = s.store.disk_full === true;
  text("p-store", bytes(s.store.size_bytes) + (full ? " · disk full" : ""), full ? "bad" : "");
  text("p-readings", num(s.store.readings_committed));
}

const rows = new Map();

function moduleRow(name) {
  const cells = {};
  const td = (k, cls) => (cells[k] = el("td", cls ? { class: cls } : {}));
  const swap = el(
    "button",
    { type: "button", class: "quiet", onclick: () => startSwap(name) },
    "Swap",
  );
  const remove = el("button", {
    type: "button",
    class: "danger",
    onclick: (ev) => {
      if (!confirm(`Remove module ${name}? It stops at once.`)) return;
      act(ev.currentTarget, `Removing ${name}`, async () => {
        await api(`/modules/${encodeURIComponent(name)}`, { method: "DELETE" });
        return `Removed ${name}`;
      });
    },
  }, "Remove");
  swap.setAttribute("aria-label", `Swap ${name}`);
  remove.setAttribute("aria-label", `Remove ${name}`);
  const tr = el(
    "tr",
    { "data-module": name },
    el("th", { scope: "row" }, name),
    td("state"),
    td("version"),
    td("in", "n"),
    td("out", "n"),
    td("errors", "n"),
    td("fuel", "n"),
    td("memory", "n"),
    td("delivery"),
    td("lasterr", "lasterr"),
    el("td", {}, el("div", { class: "actions" }, swap, remove)),
  );
  return { tr, cells };
}

/**
 * Where a module's durable cursors stand: how far behind its logs it is, its
 * recent lag from a reading's acknowledgement to its committed effect, what it
 * skipped for lagging, and which log serves each subscription.
 */
function renderDelivery(cell, m) {
  const d = m.delivery;
  if (!d) {
    cell.replaceChildren("–");
    cell.className = "";
    return;
  }
  const behind = d.readings.lag + d.messages.lag;
  const p99 = d.effect_lag_ms?.p99;
  const skipped = m.dropped?.lagging ?? 0;
  cell.replaceChildren(
    d.lagging ? "lagging, " : "",
    `${num(behind)} behind`,
    ...(p99 != null
      ? [" ", el("small", {}, `p99 ${p99 < 10 ? p99.toFixed(1) : num(p99)} ms`)]
      : []),
    ...(skipped ? [" ", el("small", {}, `${num(skipped)} skipped`)] : []),
  );
  cell.className = d.lagging || skipped ? "warn" : "";
  cell.title = (m.subscriptions ?? []).map((s) =>
    `${s.filter}: durable, from the ${s.from.join(" and ")} log`
  ).join("\n");
}

function renderModules(list) {
  const body = $("modules");
  const seen = new Set();
  for (const m of list) {
    seen.add(m.name);
    let r = rows.get(m.name);
    if (!r) rows.set(m.name, r = moduleRow(m.name));
    const c = r.cells;
    c.state.replaceChildren(
      m.state,
      ...(m.state === "quarantined" && m.quarantined_until
        ? [" ", el("small", {}, `until ${clock(m.quarantined_until)}`)]
        : []),
    );
    c.state.className = `state ${m.state === "running" ? "ok" : "bad"}`;
    c.version.textContent = m.version;
    c.in.textContent = num(m.messages_in);
    c.out.textContent = num(m.messages_out);
    c.errors.textContent = num(m.errors);
    c.fuel.textContent = big(m.fuel_used);
    c.memory.textContent = bytes(m.memory_bytes);
    renderDelivery(c.delivery, m);
    c.lasterr.textContent = m.last_error ? `${m.last_error.kind}: ${m.last_error.message}` : "";
    body.append(r.tr); // keeps API order; moving a node keeps its focus
  }
  for (const [name, r] of rows) {
    if (!seen.has(name)) r.tr.remove(), rows.delete(name);
  }
  $("no-modules").hidden = list.length > 0;
}

/** Southbound adapters and (up to the few the status carries) their points. */
function renderAdapters(list) {
  $("adapters-card").hidden = list.length === 0;
  const td = (v, cls) => el("td", cls ? { class: cls } : {}, v);
  const err = (e) => td(e ? `${e.kind}: ${e.message}` : "", "lasterr");
  const time = (ms) => ms ? new Date(ms).toLocaleTimeString() : "never";
  $("adapters").replaceChildren(...list.map((a) =>
    el(
      "tr",
      { "data-adapter": a.name },
      el("th", { scope: "row" }, `${a.name} (${a.kind})`),
      td(a.state, `state ${a.state === "connected" ? "ok" : "bad"}`),
      td(a.device_id),
      td(a.endpoint ?? ""),
      td(time(a.last_poll)),
      td(num(a.readings), "n"),
      td(num(a.errors), "n"),
      err(a.last_error),
    )
  ));
  $("points").replaceChildren(...list.flatMap((a) =>
    a.points.map((p) =>
      el(
        "tr",
        { "data-point": `${a.name}/${p.metric}` },
        el("th", { scope: "row" }, `${a.name}/${p.metric}${p.writable ? " ✎" : ""}`),
        td(p.last_value == null ? "–" : String(p.last_value), "n"),
        td(time(p.last_time)),
        td(num(p.errors), "n"),
        err(p.last_error),
      )
    )
  ));
  const hidden = list.reduce((n, a) => n + (a.points_total ?? 0) - a.points.length, 0);
  $("more-points").hidden = hidden <= 0;
  text("more-points", `${hidden} more points: GET /api/v1/adapters`);
}

function renderAlerts(alerts) {
  const list = $("alerts");
  list.replaceChildren(
    ...alerts.slice(0, 20).map((a) =>
      el(
        "li",
        {},
        el("time", { datetime: a.at }, clock(a.at)),
        el("strong", {}, a.topic),
        " ",
        typeof a.payload === "string" ? a.payload : JSON.stringify(a.payload),
      )
    ),
  );
  $("no-alerts").hidden = alerts.length > 0;
}

function renderLogs(logs) {
  const key = logs.length ? logs[logs.length - 1].at + logs[logs.length - 1].message : "";
  if (key === lastLog) return;
  lastLog = key;
  const box = $("logs");
  const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
  box.replaceChildren(
    ...logs.map((l) =>
      el(
        "div",
        {
          class: l.level === "error" || l.level === "fatal"
            ? "bad"
            : l.level === "warning"
            ? "warn"
            : "",
        },
        el("time", { datetime: l.at }, clock(l.at)),
        el("span", { class: "lv" }, l.level),
        `${l.logger.replace(/^edged\./, "")}: ${l.message}`,
      )
    ),
  );
  if (atEnd) box.scrollTop = box.scrollHeight;
}

async function refresh() {
  clearTimeout(timer);
  if (!token) return;
  try {
    const s = await api("/status?logs=60");
    failures = 0;
    if ($("notice").textContent.startsWith("edged is not reachable")) notice("");
    renderHeader(s);
    renderUplink(s);
    renderUpdate(s.update);
    renderProcess(s);
    renderModules(s.modules);
    renderAdapters(s.adapters ?? []);
    renderAlerts(s.alerts);
    renderLogs(s.logs);
  } catch (err) {
    if (err.message === "unauthorized") return;
    failures++;
    text("ready", "unreachable", "badge bad");
    notice(`edged is not reachable (${err.message}); retrying`, "error");
  }
  // Back off while the device is away, up to 10 s; pause in hidden tabs.
  if (!document.hidden) timer = setTimeout(refresh, Math.min(10000, POLL_MS * 2 ** failures));
}

function startSwap(name) {
  swapping = name;
  text(
    "upload-legend",
    `Swap module ${name} (new manifest and module; the old version runs until the new one loads)`,
  );
  $("upload-cancel").hidden = false;
  $("up-manifest").focus();
}

function endSwap() {
  swapping = null;
  text("upload-legend", "Deploy a module");
  $("upload-cancel").hidden = true;
}

$("upload-cancel").addEventListener("click", endSwap);

$("upload").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const form = ev.currentTarget;
  const button = form.querySelector("button");
  act(button, "Deploying", async () => {
    const manifestFile = $("up-manifest").files[0];
    const wasm = $("up-wasm").files[0];
    const manifestText = await manifestFile.text();
    let name;
    try {
      name = JSON.parse(manifestText).name;
    } catch (err) {
      throw new Error(`${manifestFile.name} is not JSON (${err.message})`);
    }
    if (typeof name !== "string" || !name) throw new Error("the manifest has no name");
    if (swapping && name !== swapping) {
      throw new Error(`the manifest is for "${name}", not "${swapping}"`);
    }
    const fd = new FormData();
    fd.append("manifest", new Blob([manifestText], { type: "application/json" }), "manifest.json");
    fd.append("module", wasm, wasm.name);
    const m = await api(`/modules/${encodeURIComponent(name)}`, { method: "PUT", body: fd });
    form.reset();
    endSwap();
    return `Module ${m.name} ${m.version} is ${m.state}`;
  });
});

$("reading").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.currentTarget);
  act(ev.currentTarget.querySelector("button"), "Sending", async () => {
    const r = await api("/data", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        device_id: f.get("device_id"),
        metric: f.get("metric"),
        value: Number(f.get("value")),
      }),
    });
    return `Reading accepted (${r.accepted}) and stored`;
  });
});

const updateActions = {
  check: ["Checking for updates", async () => {
    const r = await api("/update/check", { method: "POST" });
    return r.available
      ? `Version ${r.available.version} is available`
      : `Up to date (${r.current})`;
  }],
  apply: ["Installing the update", async () => {
    if (
      !confirm(
        "Install the newest release? edged restarts into it and rolls back if it does not come up healthy.",
      )
    ) return "Cancelled";
    await api("/update/apply", { method: "POST" });
    return "Update started; progress shows below";
  }],
  rollback: ["Rolling back", async () => {
    if (!confirm("Roll back to the previous version? edged restarts.")) return "Cancelled";
    const r = await api("/update/rollback", { method: "POST" });
    return `Rolling back to slot ${r.active}; edged restarts`;
  }],
};

for (const b of document.querySelectorAll("[data-update]")) {
  const [label, fn] = updateActions[b.dataset.update];
  b.addEventListener("click", () => act(b, label, fn));
}

function logout(msg) {
  token = null;
  sessionStorage.removeItem(KEY);
  clearTimeout(timer);
  $("app").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  notice(msg ?? "", msg ? "warn" : "");
  $("token").focus();
  fetch("/readyz").then((r) =>
    text("ready", r.ok ? "ready" : "not ready", `badge ${r.ok ? "ok" : "warn"}`)
  )
    .catch(() => text("ready", "unreachable", "badge bad"));
}

function login() {
  $("login").hidden = true;
  $("app").hidden = false;
  $("logout").hidden = false;
  refresh();
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem(KEY, token);
  $("token").value = "";
  notice("");
  login();
});

$("logout").addEventListener("click", () => logout());
document.addEventListener("visibilitychange", () => !document.hidden && refresh());

if (token) login();
else logout();
