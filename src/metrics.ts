// Metrics: a few counters and gauges rendered as Prometheus text (exposition format 0.0.4).
// Small on purpose: a client library would be the largest dependency for a dozen series.

type Labels = Readonly<Record<string, string>>;

interface Family {
  readonly help: string;
  readonly type: 'counter' | 'gauge';
  readonly series: Map<string, number>;
}

/** A registry of named counter and gauge families. */
export class Metrics {
  readonly #families = new Map<string, Family>();
  readonly #collectors: (() => void)[] = [];

  /** Declares a family; declaring twice is a no-op. */
  define(name: string, type: 'counter' | 'gauge', help: string): void {
    if (!this.#families.has(name)) this.#families.set(name, { help, type, series: new Map() });
  }

  /** Adds `by` (default 1) to a counter series. */
  inc(name: string, labels?: Labels, by = 1): void {
    const series = this.#family(name).series;
    const key = labelKey(labels);
    series.set(key, (series.get(key) ?? 0) + by);
  }

  /** Sets a gauge (or a counter read from elsewhere) to `value`. */
  set(name: string, value: number, labels?: Labels): void {
    this.#family(name).series.set(labelKey(labels), value);
  }

  /** Registers a function that refreshes gauges right before rendering. */
  collect(fn: () => void): void {
    this.#collectors.push(fn);
  }

  /** The current value of one series (for tests and benchmarks). */
  value(name: string, labels?: Labels): number {
    return this.#family(name).series.get(labelKey(labels)) ?? 0;
  }

  /** Prometheus text exposition. */
  render(): string {
    for (const fn of this.#collectors) fn();
    const lines: string[] = [];
    for (const [name, family] of this.#families) {
      lines.push(`# HELP ${name} ${family.help}`, `# TYPE ${name} ${family.type}`);
      for (const [key, value] of family.series) lines.push(`${name}${key} ${value}`);
    }
    return `${lines.join('\n')}\n`;
  }

  #family(name: string): Family {
    const family = this.#families.get(name);
    if (!family) throw new Error(`metric '${name}' is not defined`);
    return family;
  }
}

function labelKey(labels: Labels | undefined): string {
  if (!labels) return '';
  const parts = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${escapeLabel(labels[k] as string)}"`);
  return parts.length === 0 ? '' : `{${parts.join(',')}}`;
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}
