/**
 * The readable form of `edged update status` (`--json` prints the API's
 * answer as it is, for scripts).
 *
 * @module
 */
import type { UpdateStatus } from "./updater.ts";
import type { BootState, SlotInfo } from "./state.ts";

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

function slotLine(name: string, info: SlotInfo | undefined, marks: string[]): string {
  const what = info
    ? `${info.version} (${info.source}, sha256 ${info.sha256.slice(0, 12)}…, ${info.installed_at})`
    : "empty";
  return `  slot ${name}: ${what}${marks.length ? `  [${marks.join(", ")}]` : ""}`;
}

/** Renders a running edged's update status, or the durable state when it is not running. */
export function renderStatus(
  s: Partial<UpdateStatus> & Partial<BootState>,
  running: boolean,
): string {
  const lines: string[] = [];
  if (running && s.current) {
    lines.push(
      `running   ${s.current.version} from ${
        s.current.slot ? `slot ${s.current.slot}` : "the factory executable"
      }`,
    );
    lines.push(
      `phase     ${s.phase}${s.configured === false ? " (no update repository configured)" : ""}`,
    );
  } else {
    lines.push("running   no (edged does not answer; showing the state on disk)");
  }
  for (const name of ["a", "b"] as const) {
    const marks: string[] = [];
    if (s.active === name) marks.push("active");
    if (s.previous === name) marks.push("previous");
    if (s.trial?.slot === name) marks.push(`on trial, start ${s.trial.attempts}`);
    lines.push(slotLine(name, s.slots?.[name], marks));
  }
  if (s.available) lines.push(`available ${JSON.stringify(s.available)}`);
  if (s.progress) {
    const p = s.progress;
    const pct = p.total > 0 ? ((100 * p.received) / p.total).toFixed(1) : "?";
    lines.push(
      `download  ${p.target}: ${mib(p.received)} of ${mib(p.total)} (${pct} %), ${
        mib(p.bytes_per_second)
      }/s${p.resumed_from > 0 ? `, resumed from ${mib(p.resumed_from)}` : ""}`,
    );
  }
  if (s.last_check) lines.push(`checked   ${s.last_check}`);
  if (s.last_error) lines.push(`error     ${s.last_error}`);
  if (s.last_rollback) {
    const r = s.last_rollback;
    lines.push(`rollback  ${r.from} → ${r.to} at ${r.at}: ${r.reason}`);
  }
  return lines.join("\n");
}
