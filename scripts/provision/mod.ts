/**
 * Provisioning for `deno task test`: the Debian packages the test suite runs
 * (real peers and toolchains, listed in `debian-packages.txt` beside this
 * file) are checked with `dpkg-query`; missing ones are installed with
 * `apt-get` when running as root, with `sudo -n apt-get` where sudo works
 * without a password, and otherwise nothing runs: the caller gets
 * {@linkcode ProvisionError} whose message ends with the exact one-line
 * command to run.
 *
 * ```sh
 * deno task provision            # install what is missing (what `deno task test` does first)
 * deno task provision --check    # only report; exit 1 when something is missing
 * ```
 *
 * This file imports nothing from npm, so it runs before anything is
 * downloaded and under any user.
 *
 * @module
 */

/** The package list: one Debian package per line, `#` starts a comment. */
export const PACKAGE_LIST: string = new URL("./debian-packages.txt", import.meta.url).pathname;

/** Provisioning cannot go on: the message says why and what to run. */
export class ProvisionError extends Error {
  /** Builds the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ProvisionError";
  }
}

/** A Debian package name (Debian Policy 5.6.1). */
const PACKAGE_NAME = /^[a-z0-9][a-z0-9+.-]+$/;

/**
 * Parses the package list: comments and blank lines dropped, one name per
 * line, duplicates kept once.
 *
 * @throws {ProvisionError} naming the line that is not a package name.
 */
export function parsePackageList(text: string, source = PACKAGE_LIST): string[] {
  const names = new Set<string>();
  text.split("\n").forEach((raw, i) => {
    const line = raw.replace(/#.*/, "").trim();
    if (line === "") return;
    if (!PACKAGE_NAME.test(line)) {
      throw new ProvisionError(
        `${source}:${i + 1}: ${JSON.stringify(line)} is not one Debian package name ` +
          "(one package per line, # for comments)",
      );
    }
    names.add(line);
  });
  return [...names];
}

/** Reads and parses the package list at `path`. */
export async function readPackageList(path = PACKAGE_LIST): Promise<string[]> {
  return parsePackageList(await Deno.readTextFile(path), path);
}

/** Runs a program; `null` when it does not exist. */
async function run(
  cmd: string,
  args: string[],
  env?: Record<string, string>,
): Promise<Deno.CommandOutput | null> {
  try {
    return await new Deno.Command(cmd, {
      args,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    })
      .output();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return null;
    throw err;
  }
}

/**
 * The packages of `packages` that dpkg does not report as installed.
 *
 * @throws {ProvisionError} when there is no `dpkg-query` (not a Debian system).
 */
export async function missingPackages(packages: string[]): Promise<string[]> {
  if (packages.length === 0) return [];
  // Unknown packages make dpkg-query exit 1 and print nothing for them on stdout.
  const out = await run("dpkg-query", [
    "-W",
    "-f",
    "${Package} ${db:Status-Status}\\n",
    ...packages,
  ]);
  if (out === null) {
    throw new ProvisionError(
      "no dpkg-query here: the tests are provisioned for Debian (12, bookworm) and Debian-based " +
        `systems. Install the programs of these Debian packages another way:\n  ${
          packages.join(" ")
        }\nthen run the tests with \`deno task test --no-provision\`.`,
    );
  }
  const installed = new Set(
    new TextDecoder().decode(out.stdout).split("\n").map((l) => l.split(" "))
      // Multi-arch packages print as name:arch.
      .filter(([, status]) => status === "installed").map(([name]) => name.split(":")[0]),
  );
  return packages.filter((p) => !installed.has(p));
}

/** How missing packages get installed. */
export type Installer =
  | { kind: "root" }
  | { kind: "sudo" }
  | { kind: "manual"; command: string };

/** What {@linkcode chooseInstaller} looks at. */
export interface InstallerProbe {
  /** The effective user id (`Deno.uid()`). */
  uid: number | null;
  /** `sudo` exists on PATH. */
  haveSudo: boolean;
  /** `sudo -n true` succeeded (sudo without a password prompt). */
  sudoWorks: boolean;
}

/** The one-line shell command that installs `packages` with apt-get. */
export function aptCommand(packages: string[], prefix = ""): string {
  return `${prefix}apt-get update && ${prefix}apt-get install -y --no-install-recommends ${
    packages.join(" ")
  }`;
}

/**
 * Root installs itself, a user with password-less sudo installs through
 * `sudo -n`; anybody else gets the command to run.
 */
export function chooseInstaller(packages: string[], probe: InstallerProbe): Installer {
  if (probe.uid === 0) return { kind: "root" };
  if (probe.sudoWorks) return { kind: "sudo" };
  if (probe.haveSudo) return { kind: "manual", command: aptCommand(packages, "sudo ") };
  return { kind: "manual", command: `su -c '${aptCommand(packages)}'` };
}

/** Looks at this process: uid, and whether sudo runs without a prompt. */
export async function probeInstaller(): Promise<InstallerProbe> {
  const uid = Deno.uid();
  if (uid === 0) return { uid, haveSudo: false, sudoWorks: false };
  const sudo = await run("sudo", ["-n", "true"]);
  return { uid, haveSudo: sudo !== null, sudoWorks: sudo?.success ?? false };
}

/** Options of {@linkcode provision}. */
export interface ProvisionOptions {
  /** The package list file. @default {PACKAGE_LIST} */
  list?: string;
  /** Only check; throw instead of installing. @default {false} */
  checkOnly?: boolean;
  /** Progress lines. @default {console.error} */
  log?: (line: string) => void;
  /** How to install (tests pass their own). @default {probeInstaller()} */
  probe?: InstallerProbe;
  /** Who needs the packages, in the messages. @default {"the tests"} */
  neededBy?: string;
}

/** What {@linkcode provision} did. */
export interface ProvisionResult {
  /** Every package of the list. */
  packages: string[];
  /** The ones that were missing and are now installed. */
  installed: string[];
  /** Milliseconds spent installing (0 when nothing was missing). */
  installMs: number;
}

/**
 * Makes sure every package of the list is installed, installing what is
 * missing when this process may.
 *
 * @throws {ProvisionError} when something is missing and cannot be installed
 * from here (the message ends with the command to run), or apt-get failed.
 */
export async function provision(options: ProvisionOptions = {}): Promise<ProvisionResult> {
  const { list = PACKAGE_LIST, checkOnly = false, log = console.error } = options;
  const neededBy = options.neededBy ?? "the tests";
  const packages = await readPackageList(list);
  const missing = await missingPackages(packages);
  if (missing.length === 0) return { packages, installed: [], installMs: 0 };
  const what = `${missing.length} of the ${packages.length} Debian packages for ${neededBy} ` +
    `${missing.length === 1 ? "is" : "are"} missing: ${missing.join(" ")}`;
  const installer = chooseInstaller(missing, options.probe ?? await probeInstaller());
  if (checkOnly || installer.kind === "manual") {
    const command = installer.kind === "manual"
      ? installer.command
      : aptCommand(missing, installer.kind === "sudo" ? "sudo " : "");
    throw new ProvisionError(
      `${what}.\nInstall them with:\n\n  ${command}\n\nthen run ${neededBy} again.`,
    );
  }
  const prefix = installer.kind === "sudo" ? ["sudo", "-n"] : [];
  log(`provision: ${what}; installing with ${[...prefix, "apt-get"].join(" ")}`);
  const t0 = performance.now();
  const apt = async (args: string[]) => {
    const [cmd, ...rest] = [...prefix, "apt-get", ...args];
    // apt-get's own progress goes to the terminal: an install can take minutes.
    const out = await new Deno.Command(cmd, {
      args: rest,
      env: { DEBIAN_FRONTEND: "noninteractive" },
      stdin: "null",
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (!out.success) {
      throw new ProvisionError(
        `apt-get ${args.join(" ")} failed (exit ${out.code}, its output is above). ` +
          `Install the packages by hand with:\n\n  ${
            aptCommand(missing, prefix.length ? "sudo " : "")
          }\n`,
      );
    }
  };
  await apt(["update", "-q"]);
  await apt(["install", "-y", "-q", "--no-install-recommends", ...missing]);
  const still = await missingPackages(missing);
  if (still.length > 0) {
    throw new ProvisionError(
      `apt-get finished but these are still not installed: ${still.join(" ")}`,
    );
  }
  const installMs = performance.now() - t0;
  log(`provision: installed ${missing.length} packages in ${(installMs / 1000).toFixed(0)} s`);
  return { packages, installed: missing, installMs };
}

const USAGE = `usage: deno task provision [--check] [--list FILE]

Installs the Debian packages the test suite needs (scripts/provision/debian-packages.txt)
when they are missing: with apt-get as root, with sudo -n where that works without a
password; otherwise prints the one-line command to run. \`deno task test\` does this first.

  --check        only report what is missing (exit 1 when anything is)
  --list FILE    another package list (same format)
  -h, --help     this help

Exit codes: 0 everything installed, 1 something missing or apt-get failed, 2 usage error.`;

/** The command line; resolves with the exit code. */
export async function main(args: string[]): Promise<number> {
  let checkOnly = false, list: string | undefined;
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === "-h" || a === "--help") {
      console.log(USAGE);
      return 0;
    } else if (a === "--check") checkOnly = true;
    else if (a === "--list" && i + 1 < args.length) list = args[++i];
    else {
      console.error(`provision: unknown argument ${JSON.stringify(a)}\n\n${USAGE}`);
      return 2;
    }
  }
  try {
    const r = await provision({ list, checkOnly });
    if (r.installed.length === 0) {
      console.error(`provision: all ${r.packages.length} Debian packages are installed`);
    }
    return 0;
  } catch (err) {
    if (!(err instanceof ProvisionError)) throw err;
    console.error(`provision: ${err.message}`);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
