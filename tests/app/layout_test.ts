/**
 * The layout's rule, checked on every source file: imports only go down
 * (app > ota > sandbox | protocols > runtime > lib), a folder is entered only
 * through its `mod.ts` (or one of the launcher's lighter entries), the TUF
 * client and the delta tool load nothing of HTTP, SQLite or MQTT, and the
 * launcher's entries nothing of those nor of TUF and deltas (ARCHITECTURE.md,
 * "Layers").
 */
import assert from "node:assert/strict";
import { dirname, join, relative } from "node:path";

const ROOT = new URL("../../", import.meta.url).pathname;

/** Rank of each top folder: a file may import its own folder and lower ranks only. */
const RANK: Record<string, number> = {
  lib: 0,
  runtime: 1,
  sandbox: 2,
  protocols: 2,
  ota: 3,
  app: 4,
};

/**
 * Public entries other than a folder's `mod.ts`: lighter doors for the
 * launcher (`edged run --supervise`), which idles beside edged and loads only
 * what supervising needs (ARCHITECTURE.md, "Layers").
 */
const ENTRIES = new Set(["runtime/start.ts", "ota/update/launcher.ts"]);

/** The folder a file belongs to for the mod.ts rule: `ota/tuf`, `protocols/mqtt`, `runtime`, ... */
function unit(path: string): string {
  const parts = path.split("/");
  if ((parts[0] === "ota" || parts[0] === "protocols") && parts.length > 2) {
    return `${parts[0]}/${parts[1]}`;
  }
  if (["app", "lib", "runtime", "sandbox"].includes(parts[0])) return parts[0];
  return parts.slice(0, -1).join("/");
}

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(join(ROOT, dir))) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...await sourceFiles(p));
    else if (/\.(ts|js)$/.test(e.name) && !e.name.endsWith(".d.ts")) out.push(p);
  }
  return out;
}

const IMPORT_RE =
  /(?:^|\n)\s*(?:import|export)\b[^"';]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)|(?:^|\n)\s*import\s*["']([^"']+)["']/g;

/** Every local import of a file, as a path from the repository root. */
async function localImports(file: string): Promise<{ spec: string; target: string }[]> {
  const text = await Deno.readTextFile(join(ROOT, file));
  const found: { spec: string; target: string }[] = [];
  for (const m of text.matchAll(IMPORT_RE)) {
    const spec = m[1] ?? m[2] ?? m[3];
    if (!spec.startsWith(".")) continue;
    found.push({ spec, target: relative(ROOT, join(ROOT, dirname(file), spec)) });
  }
  return found;
}

/** Every violation of the layout rule in the tree. */
async function violations(): Promise<string[]> {
  const problems: string[] = [];
  for (const top of Object.keys(RANK)) {
    for (const file of await sourceFiles(top)) {
      for (const { spec, target } of await localImports(file)) {
        const to = target.split("/")[0];
        if (target === "deno.json") continue; // the version, from the project's manifest
        if (!(to in RANK)) {
          problems.push(`${file} imports ${spec}, outside the source folders`);
          continue;
        }
        if (to !== top && RANK[to] >= RANK[top]) {
          problems.push(`${file} imports ${spec}: ${top}/ may not import ${to}/`);
        }
        const crossing = unit(target) !== unit(file);
        const name = target.split("/").pop()!;
        // A public file at the root of an enclosing folder (ota/contract.ts for ota/update/).
        const enclosing = file.startsWith(`${dirname(target)}/`) && !name.startsWith("_");
        if (crossing && name !== "mod.ts" && !enclosing && !ENTRIES.has(target)) {
          problems.push(`${file} imports ${spec}: enter ${unit(target)}/ through its mod.ts`);
        }
      }
    }
  }
  for (const file of [...await sourceFiles("ota/tuf"), ...await sourceFiles("ota/delta")]) {
    for (const { spec, target } of await localImports(file)) {
      const ok = target.startsWith("lib/") || unit(target) === unit(file);
      if (!ok) problems.push(`${file} imports ${spec}: ota/tuf and ota/delta import lib/ only`);
    }
  }
  return problems;
}

Deno.test("imports only go down, and every folder is entered through its mod.ts", async () => {
  assert.deepEqual(await violations(), []);
});

Deno.test("the checker sees a violation when there is one", async () => {
  // A file planted in runtime/ that reaches up into the sandbox, and into a private file.
  const planted = join(ROOT, "runtime", "_layout_probe_test_only.ts");
  await Deno.writeTextFile(
    planted,
    'export { ModuleHost } from "../sandbox/mod.ts";\nexport { toHex } from "../lib/hex.ts";\n',
  );
  try {
    const found = await violations();
    assert.ok(found.some((p) => p.includes("runtime/ may not import sandbox/")), found.join("\n"));
    assert.ok(found.some((p) => p.includes("enter lib/ through its mod.ts")), found.join("\n"));
  } finally {
    await Deno.remove(planted);
  }
});

/** Module specifiers `deno info` resolves for the graph rooted at `entry`. */
async function graph(entry: string): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", join(ROOT, entry)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    modules: { specifier: string }[];
  };
  return info.modules.map((m) => m.specifier);
}

for (const entry of ["ota/tuf/mod.ts", "ota/delta/mod.ts"]) {
  Deno.test(`${entry} loads no HTTP, SQLite, MQTT or runtime code`, async () => {
    const specs = await graph(entry);
    const heavy = specs.filter((s) =>
      /hono|mqtt|node:sqlite|\/runtime\/|\/sandbox\/|\/protocols\/|\/app\//.test(s)
    );
    assert.deepEqual(heavy, []);
    assert.ok(specs.some((s) => s.endsWith(entry)), "the graph is the entry's");
  });
}

for (const entry of ENTRIES) {
  Deno.test(`${entry} loads no HTTP, SQLite, MQTT, TUF or delta code`, async () => {
    const specs = await graph(entry);
    const heavy = specs.filter((s) =>
      /hono|mqtt|@noble|node:sqlite|\/ota\/(tuf|delta|repo)\/|\/sandbox\/|\/protocols\/|\/app\//
        .test(s) ||
      /\/runtime\/(api\/|store|readings|commit|bus)/.test(s)
    );
    assert.deepEqual(heavy, []);
    assert.ok(specs.some((s) => s.endsWith(entry)), "the graph is the entry's");
  });
}
