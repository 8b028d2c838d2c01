/**
 * `edged repo`: create and keep a TUF repository of releases, modules and
 * deltas (docs/releases.md).
 *
 *     edged repo init DIR [--threshold ROLE=N]... [--expires ROLE=DURATION]...
 *                         [--root-keys-dir PATH] [--deltas K]
 *     edged repo add DIR --release FILE --triple T --version V [--rollout PCT] [--deltas K]
 *     edged repo add DIR --module FILE.wasm --manifest MANIFEST.json
 *     edged repo add DIR --model FILE.onnx --name NAME --version V
 *     edged repo refresh DIR                  (cron: re-sign snapshot and timestamp)
 *     edged repo rotate DIR --role ROLE [--threshold N] [--root-keys-dir PATH]
 *     edged repo serve DIR [--listen HOST:PORT]
 *
 * Exit 0 on success, 1 when the operation fails, 2 on usage errors.
 *
 * @module
 */
import { createProgress, EXIT, type Progress } from "../../lib/mod.ts";
import { Command } from "commander";
import {
  type AddedTarget,
  addModel,
  addModule,
  addRelease,
  RepoError,
  Repository,
  type RoleName,
  ROLES,
  serveRepository,
  withRepoLock,
} from "../../ota/repo/mod.ts";

function usage(message: string): never {
  console.error(`edged repo: ${message}`);
  Deno.exit(EXIT.USAGE);
}

function fail(command: string, err: unknown): never {
  if (
    err instanceof RepoError || err instanceof RangeError || err instanceof Deno.errors.NotFound
  ) {
    console.error(`edged repo ${command}: ${err.message}`);
    Deno.exit(EXIT.FAILURE);
  }
  console.error(`edged repo ${command}: ${err instanceof Error ? err.stack : String(err)}`);
  Deno.exit(EXIT.FAILURE);
}

function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

/** Parses repeated `ROLE=VALUE` options into a map, rejecting unknown roles. */
function perRole<T>(items: string[] | undefined, parse: (v: string) => T, flag: string) {
  const out: Partial<Record<RoleName, T>> = {};
  for (const item of items ?? []) {
    for (const part of item.split(",")) {
      const [role, value] = part.split("=");
      if (!ROLES.includes(role as RoleName) || value === undefined) {
        usage(`${flag} takes ROLE=VALUE with ROLE one of ${ROLES.join(", ")}, got "${part}"`);
      }
      out[role as RoleName] = parse(value);
    }
  }
  return out;
}

function intArg(name: string) {
  return (v: string): number => {
    if (!/^\d+$/.test(v)) usage(`${name} must be a non-negative integer, got "${v}"`);
    return Number(v);
  };
}

function report(t: AddedTarget): void {
  console.log(`${t.path}\t${t.length}\tsha256:${t.sha256}\t${String(t.custom.kind)}`);
}

/** Options of `edged repo add`. */
interface AddOptions {
  release?: string;
  triple?: string;
  version?: string;
  rollout?: number;
  deltas?: number;
  module?: string;
  manifest?: string;
  model?: string;
  name?: string;
}

async function add(dir: string, o: AddOptions): Promise<void> {
  const r = await Repository.open(dir);
  if (o.release !== undefined) {
    const bars = new Map<string, Progress>();
    const targets = await addRelease(r, o.release, {
      triple: o.triple!,
      version: o.version!,
      rolloutPercent: o.rollout,
      deltas: o.deltas,
      onDeltaProgress: (from, f) => {
        let bar = bars.get(from);
        if (!bar) {
          bar = createProgress(`delta ${from} -> ${o.version}`, { total: 1000 });
          bars.set(from, bar);
        }
        bar.update(Math.round(f * 1000));
      },
    });
    for (const bar of bars.values()) bar.done();
    targets.forEach(report);
  } else if (o.model !== undefined) {
    (await addModel(r, o.model, { name: o.name!, version: o.version!, deltas: o.deltas }))
      .forEach(report);
  } else {
    report(await addModule(r, o.module!, o.manifest!));
  }
}

/** Builds the `repo` command and its sub-commands. */
export function repoCommand(): Command {
  const repo = new Command("repo").description(
    "create and keep a TUF repository of releases, modules and deltas",
  );

  repo.command("init")
    .description("create a repository: Ed25519 keys (0600), version 1 of all roles")
    .argument("<dir>", "repository directory")
    .option("--threshold <role=n>", "signature threshold (keys generated) per role", collect)
    .option("--expires <role=duration>", "metadata lifetime per role, e.g. timestamp=1d", collect)
    .option("--root-keys-dir <path>", "keep root keys here (offline) instead of DIR/keys")
    .option("--deltas <k>", "deltas from the previous K releases of a triple", intArg("--deltas"))
    .action(
      async (
        dir: string,
        o: { threshold?: string[]; expires?: string[]; rootKeysDir?: string; deltas?: number },
      ) => {
        try {
          const r = await Repository.init(dir, {
            thresholds: perRole(o.threshold, intArg("threshold"), "--threshold"),
            expires: perRole(o.expires, (v) => v, "--expires"),
            rootKeysDir: o.rootKeysDir,
            deltas: o.deltas,
          });
          console.log(`initialised ${dir}: root v${r.root.version}, consistent snapshots`);
        } catch (err) {
          fail("init", err);
        }
      },
    );

  repo.command("add")
    .description(
      "publish a release binary (with deltas), a module with its manifest, or a model (with deltas)",
    )
    .argument("<dir>", "repository directory")
    .option("--release <file>", "release binary")
    .option("--triple <triple>", "target triple of the release, e.g. x86_64-unknown-linux-gnu")
    .option("--version <version>", "release version")
    .option("--rollout <percent>", "share of devices (0-100) that should take the release", Number)
    .option(
      "--deltas <k>",
      "deltas from the previous K releases (default from repo.json)",
      intArg("--deltas"),
    )
    .option("--module <file>", "WebAssembly module")
    .option("--manifest <file>", "module manifest (JSON)")
    .option("--model <file>", "ONNX model for modules granted nn (with deltas)")
    .option("--name <name>", "model name")
    .action(async (dir: string, o: AddOptions) => {
      const kinds = [o.release, o.module, o.model].filter((x) => x !== undefined).length;
      if (kinds !== 1) {
        usage(
          "add takes either --release FILE --triple T --version V, --module FILE --manifest FILE " +
            "or --model FILE --name NAME --version V",
        );
      }
      if (o.model !== undefined && (!o.name || !o.version)) {
        usage("--model needs --name and --version");
      }
      if (o.release !== undefined && (!o.triple || !o.version)) {
        usage("--release needs --triple and --version");
      }
      if (o.module !== undefined && !o.manifest) usage("--module needs --manifest");
      try {
        await withRepoLock(dir, () => add(dir, o));
      } catch (err) {
        fail("add", err);
      }
    });

  repo.command("refresh")
    .description("re-sign snapshot and timestamp with fresh expiry (run from cron)")
    .argument("<dir>", "repository directory")
    .action(async (dir: string) => {
      try {
        const r = await withRepoLock(dir, async () => {
          const r = await Repository.open(dir);
          await r.refresh();
          return r;
        });
        console.log(`timestamp v${r.timestamp.version} expires ${r.timestamp.expires}`);
      } catch (err) {
        fail("refresh", err);
      }
    });

  repo.command("rotate")
    .description("replace a role's keys and publish a new root signed by old and new root keys")
    .argument("<dir>", "repository directory")
    .requiredOption("--role <role>", `one of ${ROLES.join(", ")}`)
    .option("--threshold <n>", "new threshold (and number of new keys)", intArg("--threshold"))
    .option("--root-keys-dir <path>", "where root keys are kept, if not DIR/keys")
    .action(async (dir: string, o: { role: string; threshold?: number; rootKeysDir?: string }) => {
      if (!ROLES.includes(o.role as RoleName)) {
        usage(`--role must be one of ${ROLES.join(", ")}, got "${o.role}"`);
      }
      try {
        const r = await withRepoLock(dir, async () => {
          const r = await Repository.open(dir, { rootKeysDir: o.rootKeysDir });
          await r.rotate(o.role as RoleName, { threshold: o.threshold });
          return r;
        });
        console.log(`rotated ${o.role} keys: root v${r.root.version}`);
      } catch (err) {
        fail("rotate", err);
      }
    });

  repo.command("serve")
    .description("serve the repository over HTTP (Range, ETag, If-None-Match)")
    .argument("<dir>", "repository directory")
    .option("--listen <host:port>", "address to listen on", "127.0.0.1:8090")
    .action(async (dir: string, o: { listen: string }) => {
      const m = /^(.*):(\d+)$/.exec(o.listen);
      if (!m) usage(`--listen must be HOST:PORT, got "${o.listen}"`);
      const ctrl = new AbortController();
      for (const sig of ["SIGINT", "SIGTERM"] as const) {
        Deno.addSignalListener(sig, () => ctrl.abort());
      }
      try {
        const server = serveRepository(dir, {
          hostname: m[1].replace(/^\[(.*)\]$/, "$1"),
          port: Number(m[2]),
          signal: ctrl.signal,
          onListen: (addr) => console.log(`listening on http://${addr.hostname}:${addr.port}/`),
        });
        await server.finished;
      } catch (err) {
        fail("serve", err);
      }
    });

  return repo;
}
