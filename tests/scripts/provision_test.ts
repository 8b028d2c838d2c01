/**
 * Provisioning (scripts/provision): the package list parses, the installer
 * follows root / sudo -n / print-the-command, and a user who cannot install
 * gets the exact command before any test runs (checked as a real
 * unprivileged user, with the real dpkg-query).
 */
import assert from "node:assert/strict";
import {
  aptCommand,
  chooseInstaller,
  missingPackages,
  PACKAGE_LIST,
  parsePackageList,
  provision,
  ProvisionError,
  readPackageList,
} from "../../scripts/provision/mod.ts";
import { parseTestArgs } from "../../scripts/test.ts";

const ROOT = new URL("../../", import.meta.url).pathname;

Deno.test("provision: the package list is names, comments and blank lines", () => {
  assert.deepEqual(
    parsePackageList("# why\nmosquitto   # broker\n\n  bsdiff\nmosquitto\nlibc6-arm64-cross\n"),
    ["mosquitto", "bsdiff", "libc6-arm64-cross"],
  );
  assert.throws(
    () => parsePackageList("clang\nwabt lld\n", "list.txt"),
    (e: unknown) => e instanceof ProvisionError && /list\.txt:2: "wabt lld"/.test(e.message),
  );
});

Deno.test("provision: the project's list is valid and every package on it is installed here", async () => {
  const packages = await readPackageList();
  for (const p of ["mosquitto", "bsdiff", "wabt", "chromium", "procps"]) {
    assert.ok(packages.includes(p), `${p} is on the list`);
  }
  // `deno task test` provisioned this machine before this test ran.
  assert.deepEqual(await missingPackages(packages), []);
  const r = await provision({ log: () => {} });
  assert.deepEqual(r.installed, []);
});

Deno.test("provision: dpkg-query tells installed from missing and unknown packages", async () => {
  assert.deepEqual(
    await missingPackages(["dpkg", "edged-no-such-package", "bash"]),
    ["edged-no-such-package"],
  );
});

Deno.test("provision: root installs, password-less sudo installs, anybody else gets the command", () => {
  const pkgs = ["mosquitto", "bsdiff"];
  assert.deepEqual(chooseInstaller(pkgs, { uid: 0, haveSudo: false, sudoWorks: false }), {
    kind: "root",
  });
  assert.deepEqual(chooseInstaller(pkgs, { uid: 1000, haveSudo: true, sudoWorks: true }), {
    kind: "sudo",
  });
  assert.deepEqual(chooseInstaller(pkgs, { uid: 1000, haveSudo: true, sudoWorks: false }), {
    kind: "manual",
    command:
      "sudo apt-get update && sudo apt-get install -y --no-install-recommends mosquitto bsdiff",
  });
  assert.deepEqual(chooseInstaller(pkgs, { uid: 1000, haveSudo: false, sudoWorks: false }), {
    kind: "manual",
    command: `su -c '${aptCommand(pkgs)}'`,
  });
});

Deno.test("provision: --check reports what is missing and installs nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/list.txt`, "bash\nedged-no-such-package  # never exists\n");
    await assert.rejects(
      provision({
        list: `${dir}/list.txt`,
        checkOnly: true,
        probe: { uid: 0, haveSudo: false, sudoWorks: false },
      }),
      (e: unknown) =>
        e instanceof ProvisionError &&
        e.message.includes("1 of the 2 Debian packages for the tests is missing") &&
        e.message.includes("apt-get install -y --no-install-recommends edged-no-such-package"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "provision: an unprivileged user gets the one-line command and exit 1, nothing else runs",
  ignore: Deno.uid() !== 0, // needs root to become another user
  async fn() {
    // A directory `nobody` can read: the deno binary and the script (it imports nothing).
    const dir = await Deno.makeTempDir();
    try {
      await Deno.chmod(dir, 0o755);
      await Deno.copyFile(Deno.execPath(), `${dir}/deno`);
      await Deno.copyFile(`${ROOT}scripts/provision/mod.ts`, `${dir}/mod.ts`);
      await Deno.writeTextFile(`${dir}/list.txt`, "bash\nedged-no-such-package\n");
      await Deno.mkdir(`${dir}/home`, { mode: 0o777 });
      await Deno.chmod(`${dir}/home`, 0o777);
      for (const f of ["deno", "mod.ts", "list.txt"]) await Deno.chmod(`${dir}/${f}`, 0o755);
      const out = await new Deno.Command("setpriv", {
        args: [
          "--reuid=nobody",
          "--regid=nogroup",
          "--clear-groups",
          `${dir}/deno`,
          "run",
          "--allow-all",
          "--no-config",
          `${dir}/mod.ts`,
          "--list",
          `${dir}/list.txt`,
        ],
        // Not the checkout: under /root (a fresh clone as root) nobody may not enter it.
        cwd: dir,
        clearEnv: true,
        env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", HOME: `${dir}/home` },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 1, stderr);
      const haveSudo = await new Deno.Command("sh", { args: ["-c", "command -v sudo"] }).output();
      const command = haveSudo.success
        ? "sudo apt-get update && sudo apt-get install -y --no-install-recommends " +
          "edged-no-such-package"
        : "su -c 'apt-get update && apt-get install -y --no-install-recommends " +
          "edged-no-such-package'";
      assert.ok(stderr.split("\n").includes(`  ${command}`), stderr);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("test task: paths, --no-provision, --bundle, flags after --, and unknown flags refused", () => {
  assert.deepEqual(parseTestArgs([]), {
    help: false,
    provision: true,
    bundle: false,
    paths: [],
    passThrough: [],
  });
  assert.deepEqual(parseTestArgs(["--no-provision", "tests/runtime/", "--", "--filter", "x"]), {
    help: false,
    provision: false,
    bundle: false,
    paths: ["tests/runtime/"],
    passThrough: ["--filter", "x"],
  });
  assert.equal(parseTestArgs(["--bundle", "--no-provision"]).bundle, true);
  assert.throws(() => parseTestArgs(["--fast"]), /unknown flag "--fast"/);
  assert.equal(PACKAGE_LIST, `${ROOT}scripts/provision/debian-packages.txt`);
});

Deno.test("test task: what the tests leave in the temporary directory is removed when the run ends", async () => {
  const report = await Deno.makeTempFile();
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        `${ROOT}scripts/test.ts`,
        "--no-provision",
        "tests/scripts/_temp_leaver.ts",
      ],
      cwd: ROOT,
      env: { LEAVER_REPORT: report, INIT_CWD: ROOT },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const left = (await Deno.readTextFile(report)).trim();
    assert.match(left, /\/edged-tests-[^/]+\/edged-left-[^/]+$/);
    await assert.rejects(Deno.stat(left), Deno.errors.NotFound);
    await assert.rejects(Deno.stat(left.slice(0, left.lastIndexOf("/"))), Deno.errors.NotFound);
  } finally {
    await Deno.remove(report);
  }
});
