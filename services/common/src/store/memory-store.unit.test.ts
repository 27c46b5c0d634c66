import { describe, expect, it } from 'vitest';
import { isStoreError } from './errors';
import { MemoryEvidenceStore, MemoryStoreStorage } from './memory-store';
import { evidenceStoreConformance } from './store-conformance';
import { generateEventList } from './testing';

const events = generateEventList({ count: 600, seed: 11, cardRate: 0.5 }).map((g) => g.stored);
const withSightings = events.filter((e) => e.panSightings.length > 0);

// The twin runs no SQL: the suite's insert, retention and close rules, counted from its rows.
evidenceStoreConformance(
  'in-memory twin',
  async () => {
    const storage = new MemoryStoreStorage();
    return {
      open: async (o = {}) => new MemoryEvidenceStore({ retention: o.retention ?? { days: 365 }, storage }),
      dispose: async () => undefined,
    };
  },
  {
    sql: false,
    inspect: async (store) => {
      const m = store as MemoryEvidenceStore;
      return { events: m.events().length, uniqueEvents: new Set(m.events().map((e) => e.eventId)).size, sightings: m.sightings().length };
    },
  },
);

describe('MemoryEvidenceStore', () => {
  it('stores a batch once: redelivery under the same or another token, or re-batched, adds nothing', async () => {
    const store = new MemoryEvidenceStore({ retention: { days: 365 } });
    expect(await store.insertEvents(events.slice(0, 400), 'p0:0-399')).toEqual({
      events: 400,
      duplicates: 0,
      sightings: events.slice(0, 400).reduce((n, e) => n + e.panSightings.length, 0),
    });
    expect((await store.insertEvents(events.slice(0, 400), 'p0:0-399')).duplicates).toBe(400);
    const rebatched = await store.insertEvents(events.slice(300, 600), 'p0:300-599');
    expect(rebatched).toMatchObject({ events: 300, duplicates: 100 });
    expect(store.events().map((e) => e.eventId)).toEqual(events.map((e) => e.eventId));
    expect(store.sightings()).toHaveLength(withSightings.reduce((n, e) => n + e.panSightings.length, 0));
  });

  it('keeps the first of repeated ids inside one batch', async () => {
    const store = new MemoryEvidenceStore({ retention: { days: 365 } });
    const first = events[0];
    if (first === undefined) throw new Error('no events');
    expect(await store.insertEvents([first, first, first], 't')).toMatchObject({ events: 1, duplicates: 0 });
    expect(store.events()).toHaveLength(1);
  });

  it('survives a restart through its storage, and refuses a second open of the same storage', async () => {
    const storage = new MemoryStoreStorage();
    const a = new MemoryEvidenceStore({ retention: { days: 365 }, storage });
    await a.migrate();
    await a.insertEvents(events.slice(0, 100), 't1');
    expect(() => new MemoryEvidenceStore({ retention: { days: 365 }, storage })).toThrow(/already open/);
    await a.close();
    const b = new MemoryEvidenceStore({ retention: { days: 400 }, storage });
    expect((await b.migrate()).retention).toMatchObject({ previousDays: 365, days: 400, changed: true });
    expect((await b.insertEvents(events.slice(0, 100), 't1')).duplicates).toBe(100);
    expect(b.events()).toHaveLength(100);
  });

  it('refuses retention below 365 days unless overridden, like the real store', async () => {
    expect(() => new MemoryEvidenceStore({ retention: { days: 30 } })).toThrow(/365/);
    const store = new MemoryEvidenceStore({ retention: { days: 30, allowBelowMinimum: true } });
    expect((await store.migrate()).retention.configChange).toMatchObject({ override: true, newVersion: '30' });
  });

  it('fails injected inserts before writing anything, then recovers', async () => {
    const store = new MemoryEvidenceStore({ retention: { days: 365 } });
    store.failNextInserts(1);
    await expect(store.insertEvents(events.slice(0, 10), 't')).rejects.toMatchObject({ code: 'store_unavailable', retriable: true });
    expect(store.events()).toHaveLength(0);
    expect((await store.insertEvents(events.slice(0, 10), 't')).duplicates).toBe(0);
  });

  it('checks its arguments and its state', async () => {
    const store = new MemoryEvidenceStore({ retention: { days: 365 } });
    await expect(store.insertEvents(events.slice(0, 1), '')).rejects.toMatchObject({ code: 'store_invalid_argument' });
    await expect(store.query()).rejects.toMatchObject({ code: 'store_unsupported' });
    await store.close();
    await expect(store.insertEvents(events.slice(0, 1), 't')).rejects.toSatisfy((e: unknown) => isStoreError(e, 'store_closed'));
  });
});
