/**
 * Test helper: a loopback TCP proxy in front of an OPC UA server that hands
 * the client one chosen server response together with the Publish response
 * after it, in a single write, as TCP does when the client reads late (a
 * busy gateway, a slow link): the client then decodes both in one turn.
 *
 * It reads the chunk framing of OPC UA Connection Protocol messages
 * (OPC 10000-6 7.1.2) and the encoding NodeId at the start of a message
 * body, which is plain bytes only with security mode `None`.
 *
 * @module
 */

import { concatBytes } from "../../lib/mod.ts";

/** Encoding ids (numeric NodeIds in namespace 0) of some service responses. */
export const ENCODING = {
  CreateMonitoredItemsResponse: 754,
  PublishResponse: 829,
} as const;

/** A running proxy. */
export interface OpcuaProxy {
  /** `opc.tcp://127.0.0.1:PORT/UA/Test` through the proxy. */
  endpoint: string;
  /** Responses held and delivered with the next Publish response so far. */
  merged(): number;
  /** Closes the listener and every connection, and waits until they are done. */
  close(): Promise<void>;
}

/** Secure conversation MSG chunk, security mode None: header, channel, token, sequence, request. */
const BODY_OFFSET = 8 + 4 + 4 + 4 + 4;

/** The encoding id of a final MSG chunk's body, or undefined. */
function encodingOf(chunk: Uint8Array): number | undefined {
  const type = String.fromCharCode(chunk[0], chunk[1], chunk[2]);
  if (type !== "MSG" || chunk[3] !== 0x46 /* F */ || chunk.length < BODY_OFFSET + 4) return;
  const view = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  // FourByte NodeId: 0x01, namespace byte, UInt16 identifier.
  if (chunk[BODY_OFFSET] !== 0x01 || chunk[BODY_OFFSET + 1] !== 0) return;
  return view.getUint16(BODY_OFFSET + 2, true);
}

/**
 * Listens on an ephemeral loopback port and forwards to `serverPort`; a
 * server response whose encoding id is `hold` is kept back until the next
 * Publish response, and both are written to the client at once.
 */
export function startOpcuaProxy(serverPort: number, hold: number): OpcuaProxy {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const tasks: Promise<unknown>[] = [];
  let merged = 0;

  async function serverToClient(up: Deno.Conn, down: Deno.Conn) {
    const writer = down.writable.getWriter();
    let buf: Uint8Array = new Uint8Array(0);
    let held: Uint8Array | undefined;
    try {
      for await (const data of up.readable) {
        buf = concatBytes([buf, data]);
        const out: Uint8Array[] = [];
        while (buf.length >= 8) {
          const size = new DataView(buf.buffer, buf.byteOffset).getUint32(4, true);
          if (buf.length < size) break;
          const chunk = buf.slice(0, size);
          buf = buf.slice(size);
          const encoding = encodingOf(chunk);
          if (encoding === hold && !held) {
            held = chunk;
          } else if (held && encoding === ENCODING.PublishResponse) {
            out.push(held, chunk);
            held = undefined;
            merged++;
          } else if (held) {
            held = concatBytes([held, chunk]);
          } else {
            out.push(chunk);
          }
        }
        if (out.length > 0) await writer.write(concatBytes(out));
      }
    } catch { /* either side closed */ }
    await writer.close().catch(() => {});
  }

  const accepting = (async () => {
    for await (const down of listener) {
      conns.add(down);
      let up: Deno.Conn;
      try {
        up = await Deno.connect({ hostname: "127.0.0.1", port: serverPort });
      } catch {
        down.close();
        conns.delete(down);
        continue;
      }
      conns.add(up);
      tasks.push(down.readable.pipeTo(up.writable).catch(() => {}));
      tasks.push(serverToClient(up, down));
    }
  })().catch(() => {});

  const port = (listener.addr as Deno.NetAddr).port;
  return {
    endpoint: `opc.tcp://127.0.0.1:${port}/UA/Test`,
    merged: () => merged,
    async close() {
      listener.close();
      await accepting;
      for (const c of conns) {
        try {
          c.close();
        } catch { /* already closed */ }
      }
      await Promise.all(tasks);
    },
  };
}
