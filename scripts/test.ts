/**
 * `deno task test`: provisions what the suite needs (scripts/provision), then
 * runs `deno test` over `tests/` (or the paths given) with the flags the
 * suite needs, its temporary files in a directory of its own (`TMPDIR`)
 * removed at the end. Deno's own summary line (`ok | N passed | M failed`) is the
 * last thing printed; the exit code is deno test's.
 *
 * ```sh
 * deno task test                          # provision, then the whole suite
 * deno task test tests/runtime/           # provision, then one folder
 * deno task test --no-provision -- --filter "outbox"   # flags after -- go to deno test
 * deno task test --bundle                 # every edged the tests start runs from the bundle
 * ```
 *
 * @module
 */
import { resolve } from "node:path";
import { provision, ProvisionError } from "./provision/mod.ts";

const ROOT = new URL("../", import.meta.url).pathname;

/** The flags every run of the suite needs. */
export const TEST_FLAGS: readonly string[] = [
  "--allow-all",
  "--unstable-worker-options",
  "--parallel",
  "--quiet",
];

const USAGE = `usage: deno task test [--no-provision] [--bundle] [PATH...] [-- DENO_TEST_FLAGS...]

Installs the Debian packages the suite needs when they are missing (see
\`deno task provision --help\`: as root with apt-get, else sudo -n, else it stops
and prints the command to run), then runs deno test on tests/ (or PATHs).

  --no-provision   skip the package check (on a machine that is not Debian)
  --bundle         build the bundle deno task compile embeds (deno task bundle)
                   and start every edged of the suite from it (TEST_EDGED_BUNDLE);
                   the tests that work by swapping an import of deno.json skip
  -h, --help       this help

Everything after -- goes to deno test as it is (e.g. -- --filter outbox).
Exit codes: deno test's; 1 when provisioning stopped the run; 2 usage error.`;

/** Parsed command line of the test task. */
export interface TestArgs {
  help: boolean;
  provision: boolean;
  /** Run the suite's edged from a freshly built bundle. */
  bundle: boolean;
  paths: string[];
  passThrough: string[];
}

/** Parses the task's arguments. @throws {TypeError} on an unknown flag. */
export function parseTestArgs(args: string[]): TestArgs {
  const r: TestArgs = { help: false, provision: true, bundle: false, paths: [], passThrough: [] };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "--") {
      r.passThrough = args.slice(i + 1);
      break;
    } else if (a === "-h" || a === "--help") r.help = true;
    else if (a === "--no-provision") r.provision = false;
    else if (a === "--bundle") r.bundle = true;
    else if (a.startsWith("-")) throw new TypeError(`unknown flag ${JSON.stringify(a)}`);
    else r.paths.push(a);
  }
  return r;
}

async function main(args: string[]): Promise<number> {
  let o;
  try {
    o = parseTestArgs(args);
  } catch (err) {
    console.error(`test: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (o.help) {
    console.log(USAGE);
    return 0;
  }
  if (o.provision) {
    try {
      await provision();
    } catch (err) {
      if (!(err instanceof ProvisionError)) throw err;
      console.error(`\nNo test ran. ${err.message}`);
      return 1;
    }
  }
  // deno task runs in the project root; paths are the caller's (INIT_CWD).
  const here = Deno.env.get("INIT_CWD") ?? Deno.cwd();
  const paths = o.paths.length > 0 ? o.paths.map((p) => resolve(here, p)) : [`${ROOT}tests/`];
  // Every temporary file and directory of the run (data directories, brokers'
  // files, certificates) goes below one directory, removed when the run ends,
  // passed or failed.
  const tmp = await Deno.makeTempDir({ prefix: "edged-tests-" });
  // As /tmp is: the suite's other users (mosquitto's, an unprivileged test user) write there too.
  await Deno.chmod(tmp, 0o1777);
  const env: Record<string, string> = { TMPDIR: tmp };
  if (o.bundle) env.TEST_EDGED_BUNDLE = await Deno.makeTempDir({ prefix: "edged-bundle-" });
  try {
    // Loaded only here: the bundle task's module brings commander with it.
    if (o.bundle) await (await import("./bundle.ts")).buildBundle(env.TEST_EDGED_BUNDLE);
    const child = new Deno.Command(Deno.execPath(), {
      args: ["test", ...TEST_FLAGS, ...o.passThrough, ...paths],
      cwd: ROOT,
      env,
      stdin: "null",
    }).spawn();
    // Ctrl-C reaches deno test through the terminal's process group: only wait.
    // A SIGTERM for this process (a CI timeout) is passed on.
    Deno.addSignalListener("SIGINT", () => {});
    Deno.addSignalListener("SIGTERM", () => child.kill("SIGTERM"));
    return (await child.status).code;
  } finally {
    if (env.TEST_EDGED_BUNDLE) await Deno.remove(env.TEST_EDGED_BUNDLE, { recursive: true });
    // Never in place of deno test's result: what cannot go is named.
    await Deno.remove(tmp, { recursive: true }).catch((err) =>
      console.error(`test: could not remove ${tmp}: ${err.message}`)
    );
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
