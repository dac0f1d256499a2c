// A bounded job queue: at most `concurrency` jobs run at once (1 for inference: one ONNX Runtime
// session set, all cores), at most `limit` wait; a job offered when both are full is refused at
// once with QueueFullError (the server answers 503 with Retry-After), so memory stays bounded
// however many clients call.
export class QueueFullError extends Error {
  override name = 'QueueFullError';
}

export class JobQueue {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(readonly concurrency = 1, readonly limit = 8) {
    if (!(concurrency >= 1)) throw new RangeError('concurrency must be >= 1');
    if (!(limit >= 0)) throw new RangeError('queue limit must be >= 0');
  }

  get size(): { running: number; waiting: number; limit: number; concurrency: number } {
    return { running: this.running, waiting: this.waiting.length, limit: this.limit, concurrency: this.concurrency };
  }

  /** true when a job offered now would be refused */
  get full(): boolean {
    return this.running >= this.concurrency && this.waiting.length >= this.limit;
  }

  /** Runs `job` when a slot is free; throws QueueFullError when the queue is full. */
  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.full) throw new QueueFullError(`the server is busy (${this.running} running, ${this.waiting.length} waiting); try again shortly`);
    // a finished job hands its slot straight to the next waiter (running stays counted), so no
    // newcomer can slip in between
    if (this.running >= this.concurrency) await new Promise<void>((r) => this.waiting.push(r));
    else this.running++;
    try {
      return await job();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
