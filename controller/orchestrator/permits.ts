/** One holder's share of a Permits pool; release is idempotent (it may be called at a step and again in a finally). */
export interface Permit {
  release(): void;
}

/**
 * A counting semaphore, first come first served: at most `limit` permits out at once. Taken at
 * one point of a MID's rotation and given back at another (run-rotation.ts: its preparation).
 */
export class Permits {
  private free: number;
  private readonly waiting: Array<(permit: Permit) => void> = [];

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`permits: limit must be a positive integer, not ${limit}`);
    this.free = limit;
  }

  /** Resolves with a permit once one is free (at once when one is). */
  acquire(): Promise<Permit> {
    if (this.free > 0) {
      this.free -= 1;
      return Promise.resolve(this.permit());
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Permits out now. */
  get inUse(): number {
    return this.limit - this.free;
  }

  private permit(): Permit {
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        const next = this.waiting.shift();
        // Handed straight to the next waiter, so a newcomer cannot take it in between.
        if (next) next(this.permit());
        else this.free += 1;
      },
    };
  }
}
