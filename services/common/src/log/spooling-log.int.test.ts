import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { FileEventLog, LogError, MemoryEventLog, MemoryLogStorage } from '.';
import { SpoolingEventLog } from './spooling-log';

const logger = pino({ level: 'silent' });
const enc = new TextEncoder();
const dec = new TextDecoder();
const rec = (key: string, v: string) => ({ key, value: enc.encode(v) });
const down = () => new LogError('log_unavailable', 'broker down', { retriable: true });

describe('SpoolingEventLog: spool to local disk while the shared log is down, drain in order', () => {
  const cleanup: Array<() => Promise<void>> = [];
  afterEach(async () => {
    for (const c of cleanup.splice(0).reverse()) await c();
  });

  async function setup(storage = new MemoryLogStorage(2), spoolDir = mkdtempSync(join(tmpdir(), 'attest-spool-'))) {
    const primary = new MemoryEventLog({ storage });
    const spool = await FileEventLog.open({ dir: spoolDir, partitions: 2 });
    const events: string[] = [];
    const windows: Array<{ records: number }> = [];
    const log = await SpoolingEventLog.open({ primary, spool, logger, retryMs: 10, onSpooling: () => events.push('spooling'), onDrained: (w) => (events.push('drained'), windows.push(w)) });
    return { primary, log, events, windows, storage, spoolDir };
  }

  async function all(primary: MemoryEventLog): Promise<Array<[string, string]>> {
    const c = await primary.consumer(`read-${Math.random()}`, { startFrom: 'earliest' });
    const out: Array<[string, string]> = [];
    for (;;) {
      const b = await c.poll(1000, 50);
      if (b.length === 0) break;
      for (const r of b) out.push([r.key, dec.decode(r.value)]);
    }
    await c.close();
    return out;
  }

  it('keeps accepting appends during an outage and delivers them afterwards, each key in order, then appends directly again', async () => {
    const t = await setup();
    cleanup.push(() => t.log.close());
    await t.log.append([rec('s1', 'a1'), rec('s2', 'b1')]);
    t.primary.injectFailure(down());
    await t.log.append([rec('s1', 'a2')]);
    await t.log.append([rec('s2', 'b2'), rec('s1', 'a3')]);
    expect(t.log.isSpooling).toBe(true);
    expect(t.events).toEqual(['spooling']);
    t.primary.injectFailure(undefined);
    // Appended while the drain may be running: still after a3.
    await t.log.append([rec('s1', 'a4')]);
    await t.log.drained();
    await t.log.append([rec('s1', 'a5')]);
    expect(t.log.isSpooling).toBe(false);
    expect(t.events).toEqual(['spooling', 'drained']);
    expect(t.windows[0]?.records).toBeGreaterThanOrEqual(3);
    const got = await all(t.primary);
    expect(got.filter(([k]) => k === 's1').map(([, v]) => v)).toEqual(['a1', 'a2', 'a3', 'a4', 'a5']);
    expect(got.filter(([k]) => k === 's2').map(([, v]) => v)).toEqual(['b1', 'b2']);
  });

  it('a refused record is the caller\'s error, not an outage: nothing is spooled', async () => {
    const t = await setup();
    cleanup.push(() => t.log.close());
    t.primary.injectFailure(new LogError('log_record_too_large', 'too big'));
    await expect(t.log.append([rec('s', 'x')])).rejects.toMatchObject({ code: 'log_record_too_large' });
    expect(t.log.isSpooling).toBe(false);
  });

  it('what a crashed run left in the spool is drained when the log is opened again', async () => {
    const storage = new MemoryLogStorage(2);
    const spoolDir = mkdtempSync(join(tmpdir(), 'attest-spool-'));
    const first = await setup(storage, spoolDir);
    first.primary.injectFailure(down());
    await first.log.append([rec('s', 'x1'), rec('s', 'x2')]);
    await first.log.close(); // the drain never succeeded
    const second = await setup(storage, spoolDir);
    cleanup.push(() => second.log.close());
    await second.log.drained();
    expect((await all(second.primary)).map(([, v]) => v)).toEqual(['x1', 'x2']);
  });
});
