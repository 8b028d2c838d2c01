/**
 * What the OPC UA library weighs (issue 15): the npm packages only the
 * adapter's driver (`protocols/opcua/_driver.ts`, node-opcua-client and
 * node-opcua-crypto) brings into edged's graph, and the bytes `deno compile`
 * would embed for them (it embeds each npm package's folder), beside the
 * whole graph; edged's start-up time (spawn to `/readyz` 200) and idle RSS
 * with and without an `[[adapters.opcua]]` block, measured in turn in the
 * same run. `deno compile` itself cannot run here (no denort), so the bytes
 * are the sum of the files in the graph, not a binary's size.
 *
 * @module
 */
import type { BenchRow } from "./_report.ts";
import { startEdged } from "../../tests/_helpers/edged.ts";
import { startOpcuaServer } from "../../tests/_helpers/opcua.ts";

const ROOT = new URL("../../", import.meta.url).pathname;
const DRIVER = `file://${ROOT}protocols/opcua/_driver.ts`;

interface InfoModule {
  specifier: string;
  kind?: string;
  size?: number;
  npmPackage?: string;
  dependencies?: { code?: { specifier: string }; type?: { specifier: string } }[];
}

interface Info {
  roots: string[];
  modules: InfoModule[];
  redirects: Record<string, string>;
  npmPackages: Record<string, { name: string; version: string; dependencies: string[] }>;
}

async function denoInfo(args: string[]): Promise<unknown> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (out.code !== 0) throw new Error(new TextDecoder().decode(out.stderr));
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

interface Bytes {
  /** Every file of the package folders (what `deno compile` embeds per package). */
  bytes: number;
  files: number;
  /** Only `.js`, `.cjs`, `.mjs` and `.json`: what can run (no TypeScript sources, maps, docs). */
  code: number;
}

async function dirBytes(path: string): Promise<Bytes> {
  const out: Bytes = { bytes: 0, files: 0, code: 0 };
  for await (const e of Deno.readDir(path)) {
    const p = `${path}/${e.name}`;
    if (e.isDirectory) {
      const sub = await dirBytes(p);
      out.bytes += sub.bytes;
      out.files += sub.files;
      out.code += sub.code;
    } else if (e.isFile) {
      const size = (await Deno.stat(p)).size;
      out.bytes += size;
      out.files++;
      if (/\.(js|cjs|mjs|json)$/.test(e.name)) out.code += size;
    }
  }
  return out;
}

/** The npm packages reached from the graph's root, optionally not through `skip`. */
function reachable(info: Info, skip?: string): Set<string> {
  const byId = new Map(info.modules.map((m) => [m.specifier, m]));
  const resolve = (s: string) => info.redirects[s] ?? s;
  const seen = new Set<string>();
  const pkgs = new Set<string>();
  const stack = info.roots.map(resolve);
  while (stack.length > 0) {
    const s = stack.pop()!;
    if (seen.has(s) || s === skip) continue;
    seen.add(s);
    const m = byId.get(s);
    if (!m) continue;
    if (m.npmPackage) pkgs.add(m.npmPackage);
    for (const d of m.dependencies ?? []) {
      if (d.code?.specifier) stack.push(resolve(d.code.specifier));
    }
  }
  // npm packages bring their own dependencies.
  const todo = [...pkgs];
  while (todo.length > 0) {
    const p = todo.pop()!;
    for (const dep of info.npmPackages[p]?.dependencies ?? []) {
      if (!pkgs.has(dep)) {
        pkgs.add(dep);
        todo.push(dep);
      }
    }
  }
  return pkgs;
}

/** Bytes and files of npm packages in the cache (what `deno compile` embeds per package). */
async function packageBytes(
  info: Info,
  pkgs: Iterable<string>,
): Promise<Bytes & { count: number }> {
  const cache = ((await denoInfo([])) as { npmCache: string }).npmCache;
  const out = { bytes: 0, files: 0, code: 0, count: 0 };
  for (const id of pkgs) {
    const p = info.npmPackages[id];
    if (!p) continue;
    const b = await dirBytes(`${cache}/registry.npmjs.org/${p.name}/${p.version}`);
    out.bytes += b.bytes;
    out.files += b.files;
    out.code += b.code;
    out.count++;
  }
  return out;
}

/** The graph rows: OPC UA's packages and bytes beside the whole of edged's. */
async function graphRows(): Promise<BenchRow[]> {
  const info = await denoInfo([`${ROOT}main.ts`]) as Info;
  const all = reachable(info);
  const without = reachable(info, DRIVER);
  const only = [...all].filter((p) => !without.has(p));
  const local = info.modules.filter((m) => m.specifier.startsWith("file:"));
  const localBytes = local.reduce((n, m) => n + (m.size ?? 0), 0);
  const opc = await packageBytes(info, only);
  const rest = await packageBytes(info, without);
  const restTotal = rest.bytes + localBytes;
  const note = `packages only node-opcua-client/-crypto bring, vs the rest of edged's graph ` +
    `(${rest.count} packages + ${local.length} local modules); folder bytes in the npm cache`;
  return [
    {
      section: "opcua",
      metric: "npm packages added by the OPC UA driver",
      edged: opc.count,
      anchor: rest.count,
      anchorName: "edged's other npm packages",
      unit: "packages",
      target: "",
      note: `${opc.files} files vs ${rest.files}`,
    },
    {
      section: "opcua",
      metric: "bytes deno compile would embed for them",
      edged: opc.bytes / 2 ** 20,
      anchor: restTotal / 2 ** 20,
      anchorName: "the rest of edged's graph",
      unit: "MiB",
      target: "",
      note,
    },
    {
      section: "opcua",
      metric: "of which .js/.json (no TypeScript sources, maps, docs)",
      edged: opc.code / 2 ** 20,
      anchor: (rest.code + localBytes) / 2 ** 20,
      anchorName: "the rest of edged's graph",
      unit: "MiB",
      target: "",
      note: "the lower bound, should deno compile leave the rest out",
    },
  ];
}

function rssMiB(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) / 1024 : NaN;
}

/** Start-up and idle RSS of edged with `config` (a TOML text) or none. */
async function startOnce(
  dir: string,
  config: string | null,
  idleMs: number,
): Promise<{ startMs: number; rss: number }> {
  const args: string[] = [];
  if (config !== null) {
    await Deno.writeTextFile(`${dir}/edged.toml`, config);
    args.push("--config", `${dir}/edged.toml`);
  }
  const dataDir = await Deno.makeTempDir({ prefix: "edged-bench-weight-" });
  const t0 = performance.now();
  const edged = await startEdged({ dataDir, args, timeoutMs: 60_000 });
  const startMs = performance.now() - t0;
  try {
    await new Promise((r) => setTimeout(r, idleMs));
    return { startMs, rss: rssMiB(edged.child.pid) };
  } finally {
    await edged.stop();
    await Deno.remove(dataDir, { recursive: true });
  }
}

/** Every weight row; `dir` holds the bench server's certificates. */
export async function weightRows(opts: { quick: boolean; dir: string }): Promise<BenchRow[]> {
  const rows = await graphRows();
  const server = await startOpcuaServer({ dir: opts.dir, modes: ["SignAndEncrypt"], tickMs: 0 });
  try {
    const serverSha = (await new Deno.Command("openssl", {
      args: ["x509", "-in", `${opts.dir}/server.crt`, "-noout", "-fingerprint", "-sha256"],
      stdout: "piped",
    }).output()).stdout;
    const sha = new TextDecoder().decode(serverSha).trim().split("=")[1].replaceAll(":", "");
    const toml = [
      "[[adapters.opcua]]",
      `name = "line2"`,
      `endpoint = "${server.endpoint}"`,
      `device_id = "line-2"`,
      `security_mode = "SignAndEncrypt"`,
      `security_policy = "Basic256Sha256"`,
      `server_certificate_sha256 = "${sha}"`,
      `certificate_file = "${opts.dir}/edged-client.crt"`,
      `private_key_file = "${opts.dir}/edged-client.key"`,
      "",
      "[[adapters.opcua.points]]",
      `metric = "speed"`,
      `node_id = "ns=1;s=Speed"`,
      "",
    ].join("\n");
    const rounds = opts.quick ? 1 : 3;
    const idleMs = opts.quick ? 2000 : 5000;
    const without: { startMs: number; rss: number }[] = [];
    const withOpc: { startMs: number; rss: number }[] = [];
    // Alternating, so that a busy moment of the shared machine hits both.
    for (let i = 0; i < rounds; i++) {
      without.push(await startOnce(opts.dir, null, idleMs));
      withOpc.push(await startOnce(opts.dir, toml, idleMs));
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
    const note = `median of ${rounds} alternating starts (deno run, not a compiled binary); ` +
      `with: one SignAndEncrypt adapter, session up; shared machine`;
    rows.push({
      section: "opcua",
      metric: "edged start-up to /readyz 200, with an OPC UA adapter",
      edged: median(withOpc.map((r) => r.startMs)),
      anchor: median(without.map((r) => r.startMs)),
      anchorName: "edged without one",
      unit: "ms",
      target: "",
      note,
    }, {
      section: "opcua",
      metric: `edged idle RSS after ${idleMs / 1000} s, with an OPC UA adapter`,
      edged: median(withOpc.map((r) => r.rss)),
      anchor: median(without.map((r) => r.rss)),
      anchorName: "edged without one",
      unit: "MiB",
      target: "",
      note,
    });
  } finally {
    await server.stop();
  }
  return rows;
}
