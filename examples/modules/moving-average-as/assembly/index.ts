// deno-fmt-ignore-file
// deno-lint-ignore-file
// AssemblyScript, not TypeScript: its decorators on declarations are not valid TS,
// so Deno's formatter and linter must leave this file alone.

// moving-average: an edged module in AssemblyScript. It averages the last
// WINDOW readings of each message it receives (JSON with a numeric "value")
// and publishes the average on uplink/telemetry/average every WINDOW readings,
// so the cloud gets one message instead of WINDOW.

@external("edge", "publish")
declare function publish(topicPtr: usize, topicLen: i32, payloadPtr: usize, payloadLen: i32): i32;

@external("edge", "log")
declare function log(level: i32, ptr: usize, len: i32): void;

const WINDOW = 10;
const window = new StaticArray<f64>(WINDOW);
let count = 0;
let inbox: usize = 0;
let inboxCap = 0;

function send(topic: string, payload: string): i32 {
  const t = String.UTF8.encode(topic);
  const p = String.UTF8.encode(payload);
  return publish(changetype<usize>(t), t.byteLength, changetype<usize>(p), p.byteLength);
}

function info(message: string): void {
  const m = String.UTF8.encode(message);
  log(1, changetype<usize>(m), m.byteLength);
}

export function edge_alloc(size: i32): usize {
  if (size > inboxCap) {
    inbox = heap.alloc(<usize>size);
    inboxCap = size;
  }
  return inbox;
}

export function edge_init(): i32 {
  info("moving-average ready, window " + WINDOW.toString());
  return 0;
}

export function edge_on_message(_topicPtr: usize, _topicLen: i32, payloadPtr: usize, payloadLen: i32): i32 {
  const payload = String.UTF8.decodeUnsafe(payloadPtr, <usize>payloadLen);
  const key = payload.indexOf("\"value\"");
  if (key < 0) return 1;
  let start = key + 7;
  while (start < payload.length && (payload.charAt(start) == ":" || payload.charAt(start) == " ")) start++;
  let end = start;
  while (end < payload.length && "-+.0123456789eE".includes(payload.charAt(end))) end++;
  const value = parseFloat(payload.substring(start, end));
  if (isNaN(value)) return 1;

  window[count % WINDOW] = value;
  count++;
  if (count % WINDOW != 0) return 0;
  let sum = 0.0;
  for (let i = 0; i < WINDOW; i++) sum += window[i];
  const avg = sum / WINDOW;
  return send("uplink/telemetry/average", '{"average":' + avg.toString() + ',"count":' + count.toString() + "}");
}
