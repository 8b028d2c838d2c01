import assert from "node:assert/strict";
import { globToRegExp, resolveSensorPath } from "../../sandbox/host/edge.ts";

Deno.test("sensor paths: kernel-made links (sysfs class → devices) are followed, others are not", async () => {
  const root = await Deno.realPath(await Deno.makeTempDir({ prefix: "edged-sysfs-" }));
  const outside = await Deno.realPath(await Deno.makeTempDir({ prefix: "edged-outside-" }));
  try {
    // A miniature sysfs: /class/hwmon/hwmon0 -> ../../devices/platform/coretemp.0/hwmon/hwmon0
    await Deno.mkdir(`${root}/devices/platform/coretemp.0/hwmon/hwmon0`, { recursive: true });
    await Deno.writeTextFile(
      `${root}/devices/platform/coretemp.0/hwmon/hwmon0/temp1_input`,
      "42000\n",
    );
    await Deno.mkdir(`${root}/class/hwmon`, { recursive: true });
    await Deno.symlink(
      `${root}/devices/platform/coretemp.0/hwmon/hwmon0`,
      `${root}/class/hwmon/hwmon0`,
    );
    await Deno.writeTextFile(`${root}/secret`, "x");
    await Deno.symlink(
      `${root}/secret`,
      `${root}/devices/platform/coretemp.0/hwmon/hwmon0/temp9_input`,
    );
    await Deno.writeTextFile(`${outside}/shadow`, "x");
    await Deno.symlink(
      `${outside}/shadow`,
      `${root}/devices/platform/coretemp.0/hwmon/hwmon0/temp8_input`,
    );
    const grants = [globToRegExp(`${root}/class/hwmon/*/temp*_input`)];
    const path = `${root}/class/hwmon/hwmon0/temp1_input`;

    // Outside a kernel tree the real path must match a grant itself.
    assert.equal(typeof resolveSensorPath(path, grants, []), "number", "denied without trust");
    // With the tree trusted (as /sys/ is), the class path reads the device file.
    assert.equal(
      resolveSensorPath(path, grants, [`${root}/`]),
      `${root}/devices/platform/coretemp.0/hwmon/hwmon0/temp1_input`,
    );
    // A link leaving the trusted tree is still refused.
    assert.equal(
      typeof resolveSensorPath(`${root}/class/hwmon/hwmon0/temp8_input`, grants, [`${root}/`]),
      "number",
    );
    // '..' cannot climb out of the grant.
    assert.equal(
      typeof resolveSensorPath(`${root}/class/hwmon/hwmon0/../../../secret`, grants, [`${root}/`]),
      "number",
    );
  } finally {
    await Deno.remove(root, { recursive: true });
    await Deno.remove(outside, { recursive: true });
  }
});
