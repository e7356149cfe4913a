/**
 * A stream that one side pushes into and several workers read (runPool over it): items pushed
 * before a reader asks wait for one; a reader that asks first waits for an item or the end.
 */
export class Feed<T> implements AsyncIterable<T> {
  private readonly items: T[] = [];
  private readonly readers: Array<(next: IteratorResult<T>) => void> = [];
  private ended = false;

  /** `onRead`: called each time a reader receives an item (how the pushing side paces itself). */
  constructor(private readonly onRead: () => void = () => undefined) {}

  push(item: T): void {
    if (this.ended) throw new Error('push after end');
    const reader = this.readers.shift();
    if (reader) {
      this.onRead();
      reader({ value: item, done: false });
    } else {
      this.items.push(item);
    }
  }

  end(): void {
    this.ended = true;
    for (const reader of this.readers.splice(0)) reader({ value: undefined, done: true });
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        if (this.items.length > 0) {
          this.onRead();
          return Promise.resolve({ value: this.items.shift() as T, done: false });
        }
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve) => this.readers.push(resolve));
      },
    };
  }
}
