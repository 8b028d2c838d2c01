/**
 * The shape every benchmark section returns, and the one markdown table
 * `deno task bench` prints and writes.
 *
 * @module
 */

/** One measured metric, with its anchor measured side by side in the same run. */
export interface BenchRow {
  /** Section name, e.g. `ingest`. */
  section: string;
  /** What was measured, e.g. `single readings, requests/s`. */
  metric: string;
  /** edged's value. */
  edged: number;
  /** The anchor's value in the same run, or null when there is no anchor. */
  anchor: number | null;
  /** What the anchor is, e.g. `bare Deno.serve parse-only`. */
  anchorName: string;
  /** Unit, e.g. `req/s`, `ms`, `MiB`. */
  unit: string;
  /** The target from the issue, e.g. `>= 0.5x anchor`. */
  target: string;
  /** Optional note (what could not be measured and why). */
  note?: string;
}

/** Options every section receives. */
export interface BenchOptions {
  /** Shorter runs (CI smoke, quick looks). */
  quick: boolean;
  /** Directory for downloads and scratch files. */
  cacheDir: string;
}

function fmt(v: number | null): string {
  if (v === null || Number.isNaN(v)) return "–";
  const abs = Math.abs(v);
  if (abs >= 1000) return Math.round(v).toLocaleString("en-US");
  if (abs >= 10) return v.toFixed(1);
  return v.toPrecision(3);
}

/** Renders rows as one markdown table with the ratio edged/anchor. */
export function renderTable(rows: BenchRow[]): string {
  const head = "| section | metric | edged | anchor | anchor is | ratio | target | note |\n" +
    "|---|---|---:|---:|---|---:|---|---|\n";
  return head + rows.map((r) => {
    const ratio = r.anchor ? r.edged / r.anchor : null;
    return `| ${r.section} | ${r.metric} (${r.unit}) | ${fmt(r.edged)} | ${
      fmt(r.anchor)
    } | ${r.anchorName} | ${ratio === null ? "–" : ratio.toFixed(2) + "×"} | ${r.target} | ${
      r.note ?? ""
    } |`;
  }).join("\n") + "\n";
}
