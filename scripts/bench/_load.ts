/**
 * Load generation for benchmarks: wrk when installed (the reference tool),
 * otherwise a bounded Deno loop; plus RSS of a process.
 *
 * @module
 */

/** What one load run measured. */
export interface LoadResult {
  requestsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  non2xx: number;
  tool: string;
  /**
   * CPU time (user + system) the load generator spent per request, in µs; it
   * shares the machine's cores with the server (undefined: not measured).
   */
  clientCpuUs?: number;
}

/** Options for {@linkcode runLoad}. */
export interface LoadOptions {
  url: string;
  body: string;
  headers: Record<string, string>;
  durationS: number;
  connections: number;
  threads: number;
}

function hasWrk(): boolean {
  try {
    return new Deno.Command("wrk", { args: ["-v"], stdout: "null", stderr: "null" }).outputSync()
      .code !== 127;
  } catch {
    return false;
  }
}

function toMs(v: string, unit: string): number {
  const n = Number(v);
  return unit === "us" ? n / 1000 : unit === "s" ? n * 1000 : unit === "m" ? n * 60000 : n;
}

/** Runs a POST load against `url` for `durationS` seconds. */
export async function runLoad(o: LoadOptions): Promise<LoadResult> {
  if (hasWrk()) return await runWrk(o);
  return await runDenoLoad(o);
}

async function runWrk(o: LoadOptions): Promise<LoadResult> {
  const dir = await Deno.makeTempDir();
  const lua = `${dir}/post.lua`;
  const headerLines = Object.entries(o.headers).map(([k, v]) =>
    `wrk.headers[${JSON.stringify(k)}] = ${JSON.stringify(v)}`
  ).join("\n");
  await Deno.writeTextFile(
    lua,
    `wrk.method = "POST"\nwrk.body = ${JSON.stringify(o.body)}\n${headerLines}\n` +
      `done = function(summary, latency, requests)\n` +
      `  io.write(string.format("NON2XX %d\\n", summary.errors.status))\nend\n`,
  );
  try {
    return await wrkIn(o, lua);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs wrk with the script `lua` and reads its report. */
async function wrkIn(o: LoadOptions, lua: string): Promise<LoadResult> {
  // The shell prints its own /proc stat once wrk has exited and been waited
  // for: its children's CPU time is then wrk's.
  const out = await new Deno.Command("sh", {
    args: [
      "-c",
      'wrk "$@" && echo CHILDSTAT && cat /proc/$$/stat',
      "sh",
      `-t${o.threads}`,
      `-c${o.connections}`,
      `-d${o.durationS}s`,
      "--latency",
      "-s",
      lua,
      o.url,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const all = new TextDecoder().decode(out.stdout);
  const [text, shellStat = ""] = all.split("CHILDSTAT\n");
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(text)?.[1]);
  const pct = (p: string) => {
    const m = new RegExp(`\\s${p}%\\s+([\\d.]+)(us|ms|s|m)`).exec(text);
    return m ? toMs(m[1], m[2]) : NaN;
  };
  const non2xx = Number(/NON2XX (\d+)/.exec(text)?.[1] ?? 0);
  if (!Number.isFinite(rps)) throw new Error(`could not parse wrk output:\n${text}`);
  // wrk's total ("123456 requests in 10.00s"), which its CPU time covers.
  const requests = Number(/(\d+) requests in/.exec(text)?.[1] ?? rps * o.durationS);
  return {
    requestsPerSec: rps,
    p50Ms: pct("50"),
    p99Ms: pct("99"),
    non2xx,
    tool: "wrk",
    clientCpuUs: childrenCpuMs(shellStat) * 1000 / requests,
  };
}

async function runDenoLoad(o: LoadOptions): Promise<LoadResult> {
  const latencies: number[] = [];
  let non2xx = 0;
  const end = performance.now() + o.durationS * 1000;
  await Promise.all(Array.from({ length: o.connections }, async () => {
    while (performance.now() < end) {
      const t0 = performance.now();
      const res = await fetch(o.url, { method: "POST", headers: o.headers, body: o.body });
      await res.body?.cancel();
      if (res.status >= 300) non2xx++;
      latencies.push(performance.now() - t0);
    }
  }));
  latencies.sort((a, b) => a - b);
  const q = (p: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * p))];
  return {
    requestsPerSec: latencies.length / o.durationS,
    p50Ms: q(0.5),
    p99Ms: q(0.99),
    non2xx,
    tool: "deno fetch loop",
  };
}

/** CPU time (ms) of the waited-for children in a `/proc/PID/stat` line: cutime + cstime. */
function childrenCpuMs(stat: string): number {
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const ms = (Number(f[13]) + Number(f[14])) * (1000 / 100); // USER_HZ is 100 on Linux
  return stat.includes(")") && Number.isFinite(ms) ? ms : NaN;
}

/** CPU time (user + system, in ms) of each thread of `pid`, summed by thread name (Linux /proc). */
export function threadCpuMs(pid: number): Map<string, number> {
  const tick = 1000 / 100; // USER_HZ is 100 on Linux
  const out = new Map<string, number>();
  for (const t of Deno.readDirSync(`/proc/${pid}/task`)) {
    let stat: string;
    try {
      stat = Deno.readTextFileSync(`/proc/${pid}/task/${t.name}/stat`);
    } catch {
      continue; // the thread ended between the listing and the read
    }
    const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    out.set(name, (out.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) * tick);
  }
  return out;
}

/** Current and peak resident set size of `pid`, in MiB (Linux /proc). */
export function rssMiB(pid: number): { rss: number; peak: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
  return { rss: kb("VmRSS") / 1024, peak: kb("VmHWM") / 1024 };
}
