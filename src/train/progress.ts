// A progress bar (cli-progress) showing step, losses and ETA; silent when not enabled.
import cliProgress from 'cli-progress';

export class Progress {
  private bar: cliProgress.SingleBar | null = null;
  constructor(total: number, o: { enabled?: boolean; label?: string; start?: number } = {}) {
    if (!o.enabled) return;
    this.bar = new cliProgress.SingleBar({
      format: `${o.label ?? 'progress'} |{bar}| {value}/{total} {extra} ETA {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
      etaBuffer: 20,
    }, cliProgress.Presets.shades_classic);
    this.bar.start(total, o.start ?? 0, { extra: '' });
  }
  tick(value: number, info: Record<string, number> = {}): void {
    if (!this.bar) return;
    const extra = Object.entries(info).slice(0, 6).map(([k, v]) => `${k}=${v.toPrecision(4)}`).join(' ');
    this.bar.update(value, { extra });
  }
  stop(): void { this.bar?.stop(); }
}
