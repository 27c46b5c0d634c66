import { describe, expect, it } from 'vitest';
import { CheckpointScheduler, checkpointDue, maxGapUsFor } from './scheduler';
import type { DueReason, Timer } from './scheduler';
import { FakeClock } from './testkit';

/** Timers driven by the fake clock: `advance` fires what falls due, in time order. */
class FakeTimer implements Timer {
  private queue: Array<{ at: number; fn: () => void; id: number }> = [];
  private next = 1;
  constructor(private readonly clock: FakeClock) {}
  set(fn: () => void, delayMs: number): unknown {
    const id = this.next++;
    this.queue.push({ at: this.clock.us + delayMs * 1000, fn, id });
    return id;
  }
  clear(handle: unknown): void {
    this.queue = this.queue.filter((t) => t.id !== handle);
  }
  get armed(): number {
    return this.queue.length;
  }
  advance(us: number): void {
    const end = this.clock.us + us;
    for (;;) {
      this.queue.sort((a, b) => a.at - b.at);
      const t = this.queue[0];
      if (t === undefined || t.at > end) break;
      this.queue.shift();
      this.clock.us = Math.max(this.clock.us, t.at);
      t.fn();
    }
    this.clock.us = end;
  }
}

function setup(everyEvents = 3, everyMs = 1000) {
  const clock = new FakeClock(10_000_000);
  const timer = new FakeTimer(clock);
  const due: Array<{ reason: DueReason; atUs: number }> = [];
  const s = new CheckpointScheduler({ everyEvents, everyMs, clock, timer, onDue: (reason) => due.push({ reason, atUs: clock.us }) });
  return { clock, timer, due, s };
}

describe('checkpoint cadence', () => {
  it('Given the pure rule, When events or time reach the cadence, Then a checkpoint is due for that reason', () => {
    const c = { everyEvents: 10, everyMs: 1000 };
    expect(checkpointDue(c, { eventsSinceCheckpoint: 9, lastCheckpointUs: 0 }, 999_999)).toBeNull();
    expect(checkpointDue(c, { eventsSinceCheckpoint: 10, lastCheckpointUs: 0 }, 0)).toBe('events');
    expect(checkpointDue(c, { eventsSinceCheckpoint: 0, lastCheckpointUs: 0 }, 1_000_000)).toBe('time');
    expect(maxGapUsFor(c, 5)).toBe(1_000_005);
  });

  it('Given a running scheduler, When N events arrive, Then one checkpoint is due at once, for events', () => {
    const { s, due } = setup(3);
    s.start();
    s.recordEvent();
    s.recordEvent();
    expect(due).toEqual([]);
    s.recordEvent();
    expect(due.map((d) => d.reason)).toEqual(['events']);
  });

  it('Given an idle producer, When time passes, Then a checkpoint is due every interval even with no events', () => {
    const { s, due, timer, clock } = setup(3, 1000);
    s.start();
    for (let i = 0; i < 3; i++) {
      timer.advance(1_000_000);
      s.checkpointed(clock.us);
    }
    expect(due).toEqual([
      { reason: 'time', atUs: 11_000_000 },
      { reason: 'time', atUs: 12_000_000 },
      { reason: 'time', atUs: 13_000_000 },
    ]);
  });

  it('Given a checkpoint being signed, When more events or time arrive, Then it is not offered twice until reported', () => {
    const { s, due, timer, clock } = setup(2, 1000);
    s.start();
    s.recordEvent();
    s.recordEvent();
    s.recordEvent();
    s.recordEvent();
    timer.advance(5_000_000);
    expect(due).toHaveLength(1);
    s.checkpointed(clock.us);
    expect(s.state.eventsSinceCheckpoint).toBe(0);
    timer.advance(1_000_000);
    expect(due).toHaveLength(2);
  });

  it('Given a failed checkpoint, When failure is reported, Then it is offered again', () => {
    const { s, due, timer } = setup(100, 1000);
    s.start();
    timer.advance(1_000_000);
    expect(due).toHaveLength(1);
    s.failed();
    timer.advance(0);
    expect(due).toHaveLength(2);
  });

  it('Given a stopped scheduler, When time passes, Then nothing is due and no timer stays armed', () => {
    const { s, due, timer } = setup();
    s.start();
    s.stop();
    timer.advance(10_000_000);
    expect(due).toEqual([]);
    expect(timer.armed).toBe(0);
  });

  it('Given invalid cadence, When constructing, Then it is refused', () => {
    const clock = new FakeClock(0);
    expect(() => new CheckpointScheduler({ everyEvents: 0, everyMs: 1, clock, onDue: () => undefined })).toThrow();
    expect(() => new CheckpointScheduler({ everyEvents: 1, everyMs: 0, clock, onDue: () => undefined })).toThrow();
  });
});
