/**
 * A small Prometheus registry rendering the text exposition format 0.0.4
 * (https://prometheus.io/docs/instrumenting/exposition_formats/).
 *
 * @module
 */

type Labels = Record<string, string>;

/** Thrown for a metric or label name that Prometheus would reject. */
export class MetricError extends TypeError {
  /** Builds the error. */
  constructor(message: string) {
    super(message);
    this.name = "MetricError";
  }
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

// Exposition format: label values escape backslash, double quote and newline.
const NEEDS_ESCAPE = /[\\"\n]/;
function escapeLabel(v: string): string {
  if (!NEEDS_ESCAPE.test(v)) return v; // the common case, on every request
  return v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

// HELP text escapes backslash and newline.
function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function labelKey(names: readonly string[], labels: Labels | undefined): string {
  if (names.length === 0) return "";
  const given = labels ?? {};
  for (const k in given) {
    if (!names.includes(k)) throw new MetricError(`unknown label '${k}' (declared: ${names})`);
  }
  let key = "";
  for (let i = 0; i < names.length; i++) {
    key += `${i > 0 ? "," : ""}${names[i]}="${escapeLabel(String(given[names[i]] ?? ""))}"`;
  }
  return key;
}

/** `name{labels} value` lines of a counter or gauge. */
function seriesLines(name: string, values: ReadonlyMap<string, number>): string[] {
  return [...values].map(([k, v]) => `${name}${k ? `{${k}}` : ""} ${formatValue(v)}\n`);
}

abstract class Metric {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: "counter" | "gauge" | "histogram",
    readonly labelNames: readonly string[],
  ) {
    if (!NAME.test(name)) throw new MetricError(`invalid metric name '${name}'`);
    for (const l of labelNames) {
      if (!LABEL.test(l) || l.startsWith("__")) throw new MetricError(`invalid label '${l}'`);
    }
  }
  /**
   * Current values by label key (`a="x",b="y"` in declared order, `""`
   * without labels): what `samples()` renders, as numbers. Histograms have none.
   */
  abstract values(): ReadonlyMap<string, number>;
  abstract samples(): string[];
  render(): string {
    const lines = this.samples();
    return `# HELP ${this.name} ${escapeHelp(this.help)}\n# TYPE ${this.name} ${this.type}\n` +
      lines.join("");
  }
}

/** A monotonically increasing counter. Names should end in `_total`. */
export class Counter extends Metric {
  #values = new Map<string, number>();
  /** Builds a counter; prefer {@linkcode Metrics.counter}. */
  constructor(name: string, help: string, labelNames: readonly string[] = []) {
    super(name, help, "counter", labelNames);
    if (labelNames.length === 0) this.#values.set("", 0);
  }
  /** Adds `n` (default 1, never negative). */
  inc(labels?: Labels, n = 1): void {
    this.#add(labelKey(this.labelNames, labels), n);
  }
  /**
   * The incrementer of one series, its labels resolved once: for hot paths
   * that count the same labels many times.
   */
  series(labels?: Labels): (n?: number) => void {
    const k = labelKey(this.labelNames, labels);
    return (n = 1) => this.#add(k, n);
  }
  #add(k: string, n: number): void {
    if (!(n >= 0)) throw new RangeError(`counter increment must be >= 0, got ${n}`);
    this.#values.set(k, (this.#values.get(k) ?? 0) + n);
  }
  /** Current value for `labels`. */
  get(labels?: Labels): number {
    return this.#values.get(labelKey(this.labelNames, labels)) ?? 0;
  }
  /** Current values by label key. */
  values(): ReadonlyMap<string, number> {
    return this.#values;
  }
  /** Sample lines. */
  samples(): string[] {
    return seriesLines(this.name, this.#values);
  }
}

/** A counter whose value is read from a callback at scrape time (e.g. CPU seconds). */
export class CounterFunc extends Metric {
  #read: () => number | undefined;
  /** Builds it; prefer {@linkcode Metrics.counterFunc}. */
  constructor(name: string, help: string, read: () => number | undefined) {
    super(name, help, "counter", []);
    this.#read = read;
  }
  /** The value read now (none when the callback returns undefined). */
  values(): ReadonlyMap<string, number> {
    const v = this.#read();
    return v === undefined ? new Map() : new Map([["", v]]);
  }
  /** Sample lines. */
  samples(): string[] {
    return seriesLines(this.name, this.values());
  }
}

/** A value that goes up and down, set directly or read from a callback at scrape time. */
export class Gauge extends Metric {
  #values = new Map<string, number>();
  #collect?: (set: (v: number, labels?: Labels) => void) => void;
  /** Builds a gauge; prefer {@linkcode Metrics.gauge}. */
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    collect?: (set: (v: number, labels?: Labels) => void) => void,
    /** `counter` for monotonic values read at scrape time ({@linkcode Metrics.collectedCounter}). */
    type: "gauge" | "counter" = "gauge",
  ) {
    super(name, help, type, labelNames);
    this.#collect = collect;
  }
  /** Sets the value for `labels`. */
  set(v: number, labels?: Labels): void {
    this.#values.set(labelKey(this.labelNames, labels), v);
  }
  /** Adds `n` (may be negative). */
  inc(labels?: Labels, n = 1): void {
    const k = labelKey(this.labelNames, labels);
    this.#values.set(k, (this.#values.get(k) ?? 0) + n);
  }
  /** Forgets the series for `labels` (e.g. an unloaded module). */
  remove(labels?: Labels): void {
    this.#values.delete(labelKey(this.labelNames, labels));
  }
  /** Current value for `labels`. */
  get(labels?: Labels): number | undefined {
    return this.#values.get(labelKey(this.labelNames, labels));
  }
  /** Current values by label key (runs the collect callback first). */
  values(): ReadonlyMap<string, number> {
    if (this.#collect) {
      this.#values.clear();
      this.#collect((v, labels) => this.set(v, labels));
    }
    return this.#values;
  }
  /** Sample lines (runs the collect callback first). */
  samples(): string[] {
    return seriesLines(this.name, this.values());
  }
}

/** Default buckets in seconds, from 100 µs to 10 s. */
export const DEFAULT_BUCKETS: readonly number[] = [
  0.0001,
  0.00025,
  0.0005,
  0.001,
  0.0025,
  0.005,
  0.01,
  0.025,
  0.05,
  0.1,
  0.25,
  0.5,
  1,
  2.5,
  5,
  10,
];

interface HistogramSeries {
  counts: number[];
  sum: number;
  count: number;
}

/** A histogram with cumulative buckets (`_bucket`, `_sum`, `_count`). */
export class Histogram extends Metric {
  #buckets: readonly number[];
  #series = new Map<string, HistogramSeries>();
  /** Builds a histogram; prefer {@linkcode Metrics.histogram}. */
  constructor(
    name: string,
    help: string,
    buckets: readonly number[] = DEFAULT_BUCKETS,
    labelNames: readonly string[] = [],
  ) {
    super(name, help, "histogram", labelNames);
    if (labelNames.includes("le")) throw new MetricError("'le' is reserved in histograms");
    for (let i = 1; i < buckets.length; i++) {
      if (!(buckets[i] > buckets[i - 1])) {
        throw new RangeError(`histogram buckets must increase, got ${buckets}`);
      }
    }
    this.#buckets = buckets;
  }
  /** Records one observation. */
  observe(v: number, labels?: Labels): void {
    this.#observeIn(this.#seriesOf(labelKey(this.labelNames, labels)), v);
  }

  /**
   * The observer of one series, its labels resolved once: for hot paths
   * that observe the same labels many times (observing after `remove` of
   * those labels starts the series again).
   */
  series(labels?: Labels): (v: number) => void {
    const k = labelKey(this.labelNames, labels);
    return (v) => this.#observeIn(this.#seriesOf(k), v);
  }

  #seriesOf(k: string): HistogramSeries {
    let s = this.#series.get(k);
    if (!s) {
      s = { counts: new Array(this.#buckets.length).fill(0), sum: 0, count: 0 };
      this.#series.set(k, s);
    }
    return s;
  }

  #observeIn(s: HistogramSeries, v: number): void {
    const b = this.#buckets;
    // Counts are cumulative (le): every bucket from the first that holds v.
    let i = 0;
    while (i < b.length && v > b[i]) i++;
    for (; i < b.length; i++) s.counts[i]++;
    s.sum += v;
    s.count++;
  }
  /** Forgets the series for `labels`. */
  remove(labels?: Labels): void {
    this.#series.delete(labelKey(this.labelNames, labels));
  }
  /** None: a histogram is not one number (read its lines in `/metrics`). */
  values(): ReadonlyMap<string, number> {
    return new Map();
  }
  /** Sample lines. */
  samples(): string[] {
    const out: string[] = [];
    for (const [k, s] of this.#series) {
      const sep = k ? `${k},` : "";
      this.#buckets.forEach((b, i) =>
        out.push(`${this.name}_bucket{${sep}le="${formatValue(b)}"} ${s.counts[i]}\n`)
      );
      out.push(`${this.name}_bucket{${sep}le="+Inf"} ${s.count}\n`);
      out.push(`${this.name}_sum${k ? `{${k}}` : ""} ${formatValue(s.sum)}\n`);
      out.push(`${this.name}_count${k ? `{${k}}` : ""} ${s.count}\n`);
    }
    return out;
  }
}

/**
 * The registry every component registers its metrics in.
 *
 * @example
 * ```ts
 * const m = new Metrics();
 * m.counter("edged_example_total", "Examples seen.").inc();
 * console.log(m.render());
 * ```
 */
export class Metrics {
  #metrics = new Map<string, Metric>();

  #add<T extends Metric>(m: T): T {
    if (this.#metrics.has(m.name)) throw new MetricError(`metric '${m.name}' registered twice`);
    this.#metrics.set(m.name, m);
    return m;
  }

  /** Registers a counter. */
  counter(name: string, help: string, labelNames: readonly string[] = []): Counter {
    return this.#add(new Counter(name, help, labelNames));
  }

  /** Registers a counter read from `read` at scrape time. */
  counterFunc(name: string, help: string, read: () => number | undefined): CounterFunc {
    return this.#add(new CounterFunc(name, help, read));
  }

  /** Registers a gauge, optionally computed at scrape time by `collect`. */
  gauge(
    name: string,
    help: string,
    labelNames: readonly string[] = [],
    collect?: (set: (v: number, labels?: Labels) => void) => void,
  ): Gauge {
    return this.#add(new Gauge(name, help, labelNames, collect));
  }

  /**
   * Registers a counter whose labelled values are read by `collect` at scrape
   * time (e.g. per-module totals kept by the component itself). A value that
   * goes down (a module reloaded) is a counter reset, which Prometheus handles.
   */
  collectedCounter(
    name: string,
    help: string,
    labelNames: readonly string[],
    collect: (set: (v: number, labels?: Labels) => void) => void,
  ): Gauge {
    return this.#add(new Gauge(name, help, labelNames, collect, "counter"));
  }

  /** Registers a histogram. */
  histogram(
    name: string,
    help: string,
    buckets: readonly number[] = DEFAULT_BUCKETS,
    labelNames: readonly string[] = [],
  ): Histogram {
    return this.#add(new Histogram(name, help, buckets, labelNames));
  }

  /**
   * The current value of the series of `name` with `labels` (every declared
   * label; one left out counts as ""), or null when that series is not
   * exported (yet) or `name` is a histogram: the number `/metrics` shows,
   * without rendering the registry. Gauges with a collect callback and
   * counters read at scrape time are read now.
   */
  value(name: string, labels?: Labels): number | null {
    const m = this.#metrics.get(name);
    if (!m) return null;
    return m.values().get(labelKey(m.labelNames, labels)) ?? null;
  }

  /** The sum over every series of `name`, or null when it has none (see {@linkcode value}). */
  sum(name: string): number | null {
    const values = this.#metrics.get(name)?.values();
    if (!values || values.size === 0) return null;
    let total = 0;
    for (const v of values.values()) total += v;
    return total;
  }

  /** The whole registry in the text exposition format. */
  render(): string {
    return [...this.#metrics.values()].map((m) => m.render()).join("");
  }
}

/** Content type of the text exposition format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
