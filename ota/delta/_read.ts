/**
 * Reads a whole file into one buffer of exactly its size. `Deno.readFile`
 * briefly holds the bytes twice, which would double the patcher's peak memory
 * for a 100 MB old file.
 */
export async function readWhole(path: string | URL): Promise<Uint8Array> {
  using file = await Deno.open(path, { read: true });
  const size = (await file.stat()).size;
  const out = new Uint8Array(size);
  let off = 0;
  while (off < size) {
    const n = await file.read(out.subarray(off));
    if (n === null) break;
    off += n;
  }
  // The file may have shrunk meanwhile; never hand out bytes that were not read.
  return off === size ? out : out.subarray(0, off);
}
