/** Fan-out of agent events to WatchEvents streams; slow subscribers lose the oldest events. */
export interface AgentEventRecord {
  type: 'keystore-changed' | 'config-changed' | 'renewal' | 'service' | 'started';
  at: string;
  message: string;
}

type Subscriber = (event: AgentEventRecord) => void;

export class EventHub {
  private readonly subscribers = new Set<Subscriber>();

  publish(type: AgentEventRecord['type'], message: string): void {
    const event = { type, at: new Date().toISOString(), message };
    for (const subscriber of this.subscribers) subscriber(event);
  }

  /** Yields events until the signal aborts; keeps at most `maxQueued` unread events. */
  async *subscribe(signal: AbortSignal, maxQueued = 256): AsyncGenerator<AgentEventRecord> {
    const queue: AgentEventRecord[] = [];
    let wake: (() => void) | undefined;
    const subscriber: Subscriber = (event) => {
      queue.push(event);
      if (queue.length > maxQueued) queue.shift();
      wake?.();
    };
    const onAbort = (): void => wake?.();
    this.subscribers.add(subscriber);
    signal.addEventListener('abort', onAbort);
    try {
      while (!signal.aborted) {
        const next = queue.shift();
        if (next) {
          yield next;
          continue;
        }
        await new Promise<void>((resolve) => { wake = resolve; });
        wake = undefined;
      }
    } finally {
      this.subscribers.delete(subscriber);
      signal.removeEventListener('abort', onAbort);
    }
  }
}

/**
 * Turns a callback-style operation (progress callbacks, then a final value) into an async
 * iterable: each progress item as it happens, then the final item.
 */
export async function* streamOf<P, R>(run: (emit: (item: P) => void) => Promise<R>, finalItem: (result: R) => P): AsyncGenerator<P> {
  const queue: P[] = [];
  let wake: (() => void) | undefined;
  let done = false;
  let failure: unknown;
  const finished = run((item) => { queue.push(item); wake?.(); })
    .then((result) => { queue.push(finalItem(result)); })
    .catch((err: unknown) => { failure = err; })
    .finally(() => { done = true; wake?.(); });
  for (;;) {
    const next = queue.shift();
    if (next !== undefined) {
      yield next;
      continue;
    }
    if (done) break;
    await new Promise<void>((resolve) => { wake = resolve; });
    wake = undefined;
  }
  await finished;
  if (failure !== undefined) throw failure;
}
