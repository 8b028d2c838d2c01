/**
 * A test file for `deno task test` itself (tests/scripts/provision_test.ts
 * runs the task on it): it leaves a temporary directory behind on purpose and
 * reports its path in the file named by `LEAVER_REPORT`.
 */
Deno.test("leaves a temporary directory behind", () => {
  const dir = Deno.makeTempDirSync({ prefix: "edged-left-" });
  Deno.writeTextFileSync(`${dir}/data`, "x");
  Deno.writeTextFileSync(Deno.env.get("LEAVER_REPORT")!, dir);
});
