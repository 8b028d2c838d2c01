/** lib/path.ts answers as `node:path` (posix) and `node:url` do. */
import assert from "node:assert/strict";
import { posix } from "node:path";
import { fileURLToPath } from "node:url";
import { joinPath, parentDir, pathFromFileUrl, resolvePath } from "../../lib/mod.ts";

const PATHS = [
  "",
  ".",
  "..",
  "/",
  "//",
  "///a//b",
  "a",
  "a/",
  "/a",
  "/a/",
  "a/b/c",
  "/a/b/c/",
  "./a",
  "../a",
  "a/./b",
  "a/../b",
  "a/../../b",
  "/../a",
  "/a/b/../../..",
  "a/..",
  "a/../..",
  "..a/b..",
  ".../a",
  "a/.../b",
  "/var/lib/edged/update/slots",
  "data",
  "data/./update/../edged.lock",
];

Deno.test("joinPath is node:path's join", () => {
  for (const a of PATHS) {
    assert.equal(joinPath(a), posix.join(a), JSON.stringify(a));
    for (const b of PATHS) {
      assert.equal(joinPath(a, b), posix.join(a, b), JSON.stringify([a, b]));
      assert.equal(joinPath(a, b, "c"), posix.join(a, b, "c"), JSON.stringify([a, b, "c"]));
    }
  }
  assert.equal(joinPath(), posix.join());
});

Deno.test("resolvePath is node:path's resolve", () => {
  for (const a of PATHS) {
    assert.equal(resolvePath(a), posix.resolve(a), JSON.stringify(a));
    for (const b of PATHS) {
      assert.equal(resolvePath(a, b), posix.resolve(a, b), JSON.stringify([a, b]));
    }
  }
  assert.equal(resolvePath(), posix.resolve());
});

Deno.test("parentDir is node:path's dirname", () => {
  for (const a of PATHS) assert.equal(parentDir(a), posix.dirname(a), JSON.stringify(a));
});

Deno.test("pathFromFileUrl is node:url's fileURLToPath", () => {
  for (
    const u of ["file:///a/b.ts", "file:///a%20b/c%C3%A9.ts", "file:///", import.meta.url]
  ) {
    assert.equal(pathFromFileUrl(u), fileURLToPath(u), u);
    assert.equal(pathFromFileUrl(new URL(u)), fileURLToPath(new URL(u)), u);
  }
  for (const u of ["http://x/a", "file://host/a", "file:///a%2Fb"]) {
    assert.throws(() => pathFromFileUrl(u), TypeError, u);
    assert.throws(() => fileURLToPath(u), u);
  }
});
