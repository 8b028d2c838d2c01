import assert from "node:assert/strict";
import { deviceMemoryBytes } from "../../lib/mod.ts";

const GIB = 2 ** 30;

/** A /proc and /sys of `files`; any other path is missing. */
function fs(files: Record<string, string>) {
  return (path: string) => {
    if (!(path in files)) throw new Deno.errors.NotFound(path);
    return files[path];
  };
}

Deno.test("deviceMemoryBytes: the physical memory, or a lower cgroup limit (v2, v1, an ancestor's)", () => {
  const total = () => 8 * GIB;
  // No cgroup limit: "max" (v2), or none written.
  assert.equal(
    deviceMemoryBytes({
      total,
      readFile: fs({
        "/proc/self/cgroup": "0::/system.slice/edged.service\n",
        "/sys/fs/cgroup/system.slice/edged.service/memory.max": "max\n",
      }),
    }),
    8 * GIB,
  );
  // systemd's MemoryMax= on the service (v2).
  assert.equal(
    deviceMemoryBytes({
      total,
      readFile: fs({
        "/proc/self/cgroup": "0::/system.slice/edged.service\n",
        "/sys/fs/cgroup/system.slice/edged.service/memory.max": `${GIB}\n`,
      }),
    }),
    GIB,
  );
  // A limit on the slice holds for the service inside it.
  assert.equal(
    deviceMemoryBytes({
      total,
      readFile: fs({
        "/proc/self/cgroup": "0::/system.slice/edged.service\n",
        "/sys/fs/cgroup/system.slice/memory.max": `${2 * GIB}\n`,
        "/sys/fs/cgroup/system.slice/edged.service/memory.max": "max\n",
      }),
    }),
    2 * GIB,
  );
  // cgroup v1 (docker --memory on an older host); "unlimited" is 2^63 rounded to a page.
  const v1 = (limit: string) =>
    deviceMemoryBytes({
      total,
      readFile: fs({
        "/proc/self/cgroup": "9:name=systemd:/docker/abc\n4:memory:/docker/abc\n0::/\n",
        "/sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": limit,
      }),
    });
  assert.equal(v1(`${512 * 2 ** 20}\n`), 512 * 2 ** 20);
  assert.equal(v1("9223372036854771712\n"), 8 * GIB);
  // A limit above the physical memory changes nothing.
  assert.equal(v1(`${64 * GIB}\n`), 8 * GIB);
  // Nothing readable: what the system says, or nothing.
  assert.equal(deviceMemoryBytes({ total, readFile: fs({}) }), 8 * GIB);
  assert.equal(
    deviceMemoryBytes({
      total: () => {
        throw new Deno.errors.NotCapable("sys");
      },
      readFile: fs({}),
    }),
    undefined,
  );
  // This machine: something, at most its physical memory.
  const here = deviceMemoryBytes();
  assert.ok(here !== undefined && here > 0 && here <= Deno.systemMemoryInfo().total);
});
