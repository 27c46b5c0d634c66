import { describe, expect, it } from 'vitest';
import { LogError } from './errors';
import { eventLogConformance } from './log-conformance';
import { MemoryEventLog, MemoryLogStorage } from './memory-log';

eventLogConformance('memory twin', async () => {
  let storage: MemoryLogStorage | undefined;
  return {
    open: async (opts) => {
      storage ??= new MemoryLogStorage(opts?.partitions ?? 4);
      return new MemoryEventLog({ storage, ...opts });
    },
    dispose: async () => undefined,
  };
});

describe('MemoryEventLog', () => {
  it('fails appends with an injected error until healed, so callers can test failing closed', async () => {
    const log = new MemoryEventLog();
    log.injectFailure(new LogError('log_unavailable', 'disk on fire', { retriable: true }));
    await expect(log.append([{ key: 'k', value: new Uint8Array(1) }])).rejects.toMatchObject({ code: 'log_unavailable', retriable: true });
    expect((await log.endOffsets()).every((o) => o === 0)).toBe(true);
    log.injectFailure(undefined);
    await expect(log.append([{ key: 'k', value: new Uint8Array(1) }])).resolves.toHaveLength(1);
    await log.close();
  });

  it('allows one open consumer per group and one open log per storage, like the embedded log', async () => {
    const storage = new MemoryLogStorage(2);
    const log = new MemoryEventLog({ storage });
    expect(() => new MemoryEventLog({ storage })).toThrow(expect.objectContaining({ code: 'log_locked' }));
    const c = await log.consumer('g');
    await expect(log.consumer('g')).rejects.toMatchObject({ code: 'log_group_busy' });
    await c.close();
    await (await log.consumer('g')).close();
    await log.close();
    expect(() => new MemoryEventLog({ storage, partitions: 3 })).toThrow(expect.objectContaining({ code: 'log_config_mismatch' }));
  });

  it('keeps nothing of an ephemeral group once its consumer closes', async () => {
    const storage = new MemoryLogStorage(1);
    const log = new MemoryEventLog({ storage });
    await log.append([{ key: 'k', value: new Uint8Array(1) }, { key: 'k', value: new Uint8Array(2) }]);
    const c = await log.consumer('throwaway', { ephemeral: true });
    expect(await c.poll(10, 100)).toHaveLength(2);
    await c.commit();
    expect(storage.groups.get('throwaway')).toEqual([2]);
    await c.close();
    expect(storage.groups.has('throwaway')).toBe(false);
    const again = await log.consumer('throwaway', { ephemeral: true });
    expect(await again.poll(10, 100)).toHaveLength(2);
    await log.close();
  });
});
