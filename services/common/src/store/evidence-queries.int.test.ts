/**
 * Every evidence query against the real engine, over realistic events from the generator. The
 * expected rows are computed from the generated events in JavaScript (the oracle), independently
 * of the SQL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainEvent, encodeEvent, newEvent, type AttestEvent, type EventType } from '../events';
import { SAMPLE_PARTS } from '../events/fixtures';
import { groupDigits, luhnNumber } from '../events/testing';
import { sha256 } from '../integrity/hash';
import { ChdbEvidenceStore } from './chdb-store';
import { isStoreError } from './errors';
import { EVIDENCE_QUERIES, runEvidenceQuery, type EvidenceResult } from './evidence-queries';
import type { Row } from './port';
import { render } from './render';
import { toStoredEvent, type StoredEvent } from './rows';
import { cardFingerprint, freshStoreDir, generateEventList, type GeneratedEvent } from './testing';

const DAY_US = 86_400_000_000;
const NOW_US = Date.now() * 1000;
// Relative to now: the TTL counts from the wall clock. 120 to 20 days ago, so some events are
// older than 90 days (10.5.1's "immediately available" sample).
const START_US = NOW_US - 120 * DAY_US;
const ALL = { maxRows: 1_000_000 };

/** Events of types the generator does not produce, built the same way (newEvent, chain, codec). */
function extraEvents(types: readonly EventType[], timeUs: number): GeneratedEvent[] {
  let prevHash: Uint8Array = new Uint8Array(32);
  return types.map((type, i) => {
    const unchained = newEvent(type, SAMPLE_PARTS[type] as never, {
      producer: { id: 'console-extra', epoch: '019b76da-a800-7000-8000-000000000001' },
      clock: { nowUs: () => timeUs + i * 1_000_000 },
    });
    const event = chainEvent(unchained, { sequence: i + 1, prevHash }) as unknown as AttestEvent;
    const bytes = encodeEvent(event);
    const hash = sha256(bytes);
    prevHash = hash;
    return { event, bytes, hash, stored: toStoredEvent(event, bytes, hash) };
  });
}

const ids = (rows: readonly Row[], column: number): string[] => rows.map((r) => String(r[column])).sort();
const colIndex = (r: EvidenceResult, name: string): number => {
  const i = r.columns.findIndex((c) => c.name === name);
  if (i < 0) throw new Error(`no column ${name}`);
  return i;
};
const payloadOf = <K extends EventType>(g: GeneratedEvent, _type: K): AttestEvent<K>['payload'] => g.event.payload as AttestEvent<K>['payload'];

describe('evidence queries over realistic events', () => {
  let store: ChdbEvidenceStore;
  let remove: () => Promise<void>;
  let gen: GeneratedEvent[];

  beforeAll(async () => {
    const fresh = await freshStoreDir('evidence');
    remove = fresh.remove;
    gen = [
      ...generateEventList({ count: 4_000, seed: 42, startUs: START_US, spanUs: 100 * DAY_US, cardRate: 0.3, cardPool: 20 }),
      ...extraEvents(['identity.suspended', 'identity.restored', 'audit.stopped'], START_US + DAY_US),
    ];
    store = await ChdbEvidenceStore.open({ dataDir: fresh.dir, retention: { days: 365 } });
    await store.migrate();
    for (let i = 0; i < gen.length; i += 1_500) await store.insertEvents(gen.slice(i, i + 1_500).map((g) => g.stored), `batch-${i}`);
  });

  afterAll(async () => {
    await store.close();
    await remove();
  });

  const argsFor = (id: string): unknown => {
    if (id === 'pan-lookup') return { fingerprint: cardFingerprint(1).toString('hex') };
    if (id === 'session-replay') return { sessionId: gen.find((g) => g.event.metadata.type === 'session.started')?.event.correlation.sessionId };
    return undefined;
  };

  it.each(Object.keys(EVIDENCE_QUERIES))('%s returns the documented columns and renders as table, JSON and CSV', async (id) => {
    const q = EVIDENCE_QUERIES[id];
    const r = await runEvidenceQuery(store, id, {}, argsFor(id), { maxRows: 50 });
    expect(r.queryId).toBe(id);
    expect(r.requirement).toBe(q?.requirement);
    expect(r.columns.map((c) => c.name)).toEqual(q?.columns.map((c) => c.name));
    expect(render(r, 'table')).toContain(q?.title);
    const json = JSON.parse(render(r, 'json')) as { rows: unknown[]; query: string };
    expect(json.query).toBe(id);
    expect(json.rows).toHaveLength(r.rows.length);
    expect(render(r, 'csv').split('\r\n')[0]).toBe(q?.columns.map((c) => c.name).join(','));
  });

  it('10.2.1.1: one row per exchange, attributed, flagged exactly when card data was in it', async () => {
    const access = new Set(['gateway.request.received', 'gateway.request.forwarded', 'gateway.response.completed', 'gateway.request.blocked', 'data.masked', 'db.query.executed']);
    const expected = new Map<string, { card: boolean; actor: string; events: number }>();
    for (const g of gen) {
      if (!access.has(g.event.metadata.type)) continue;
      const key = g.event.correlation.requestId;
      const cur = expected.get(key) ?? { card: false, actor: g.event.actor.subject, events: 0 };
      cur.card ||= g.stored.cardDataPresent;
      cur.events += 1;
      expected.set(key, cur);
    }
    const r = await runEvidenceQuery(store, 'pci.10.2.1.1', {}, undefined, ALL);
    expect(r.rows).toHaveLength(expected.size);
    const [req, actor, card, count] = ['request_id', 'actor_subject', 'card_data_present', 'events'].map((n) => colIndex(r, n)) as [number, number, number, number];
    let flagged = 0;
    for (const row of r.rows) {
      const e = expected.get(String(row[req]));
      expect(e, String(row[req])).toBeDefined();
      expect(row[actor]).toBe(e?.actor);
      expect(row[card]).toBe(e?.card);
      expect(Number(row[count])).toBe(e?.events);
      if (row[card] === true) flagged += 1;
    }
    expect(flagged).toBe([...expected.values()].filter((e) => e.card).length);
    expect(flagged).toBeGreaterThan(0);
  });

  it('10.2.1.2: every config and key change with its object and versions', async () => {
    const expected = gen.filter((g) => g.event.metadata.type === 'config.changed' || g.event.metadata.type === 'key.rotated');
    const r = await runEvidenceQuery(store, 'pci.10.2.1.2', {}, undefined, ALL);
    expect(ids(r.rows, colIndex(r, 'event_id'))).toEqual(expected.map((g) => g.event.metadata.eventId).sort());
    const cfg = expected.find((g) => g.event.metadata.type === 'config.changed');
    const row = r.rows.find((x) => x[colIndex(r, 'event_id')] === cfg?.event.metadata.eventId);
    const p = cfg === undefined ? undefined : payloadOf(cfg, 'config.changed');
    expect(row?.[colIndex(r, 'object')]).toBe(`${p?.objectKind}:${p?.what}`);
    expect(row?.[colIndex(r, 'new_version')]).toBe(p?.newVersion);
    expect(row?.[colIndex(r, 'actor_subject')]).toBe(cfg?.event.actor.subject);
  });

  it('10.2.1.3: every read of the evidence', async () => {
    const expected = gen.filter((g) => g.event.metadata.type === 'evidence.accessed').map((g) => g.event.metadata.eventId);
    const r = await runEvidenceQuery(store, 'pci.10.2.1.3', {}, undefined, ALL);
    expect(ids(r.rows, colIndex(r, 'event_id'))).toEqual(expected.sort());
  });

  const invalidAttempts = (): GeneratedEvent[] =>
    gen.filter((g) => {
      const { type } = g.event.metadata;
      if (type === 'auth.failed' || type === 'gateway.request.blocked') return g.event.outcome.result === 'failure';
      if (type === 'policy.decided') return payloadOf(g, 'policy.decided').decision === 'deny';
      if (type === 'db.query.executed') return payloadOf(g, 'db.query.executed').decision === 'deny';
      return false;
    });

  it('10.2.1.4: auth failures, policy denials, blocked requests and denied SQL, nothing else', async () => {
    const expected = invalidAttempts();
    expect(new Set(expected.map((g) => g.event.metadata.type))).toEqual(new Set(['auth.failed', 'policy.decided', 'gateway.request.blocked', 'db.query.executed']));
    const r = await runEvidenceQuery(store, 'pci.10.2.1.4', {}, undefined, ALL);
    expect(ids(r.rows, colIndex(r, 'event_id'))).toEqual(expected.map((g) => g.event.metadata.eventId).sort());
  });

  it('filters by time range, tenant, identity (subject or on-behalf-of) and session', async () => {
    const from = START_US + 10 * DAY_US;
    const to = START_US + 40 * DAY_US;
    const inRange = invalidAttempts().filter((g) => g.event.metadata.timeUs >= from && g.event.metadata.timeUs < to && g.event.metadata.tenantId === 'acme');
    const r = await runEvidenceQuery(store, 'pci.10.2.1.4', { from: new Date(from / 1000), to: to, tenantId: 'acme' }, undefined, ALL);
    expect(ids(r.rows, colIndex(r, 'event_id'))).toEqual(inRange.map((g) => g.event.metadata.eventId).sort());
    expect(r.parameters).toMatchObject({ tenant: 'acme', from: new Date(from / 1000).toISOString() });

    const person = gen.find((g) => g.event.actor.onBehalfOf !== null)?.event.actor.onBehalfOf ?? '';
    const byPerson = await runEvidenceQuery(store, 'pci.10.2.1.1', { actor: person }, undefined, ALL);
    const expectedRequests = new Set(
      gen.filter((g) => (g.event.actor.subject === person || g.event.actor.onBehalfOf === person) && ['gateway.request.received', 'db.query.executed'].includes(g.event.metadata.type)).map((g) => g.event.correlation.requestId),
    );
    expect(new Set(byPerson.rows.map((row) => String(row[colIndex(byPerson, 'request_id')])))).toEqual(expectedRequests);

    const session = gen.find((g) => g.event.metadata.type === 'policy.decided')?.event.correlation.sessionId ?? '';
    const bySession = await runEvidenceQuery(store, 'pci.10.2.1.1', { sessionId: session }, undefined, ALL);
    expect(bySession.rows.length).toBeGreaterThan(0);
    expect(new Set(bySession.rows.map((row) => row[colIndex(bySession, 'session_id')]))).toEqual(new Set([session]));
  });

  it('10.2.1.5: identity suspensions and restorations, and key rotations', async () => {
    const expected = gen.filter((g) => ['identity.suspended', 'identity.restored', 'key.rotated'].includes(g.event.metadata.type));
    const r = await runEvidenceQuery(store, 'pci.10.2.1.5', {}, undefined, ALL);
    expect(ids(r.rows, colIndex(r, 'event_id'))).toEqual(expected.map((g) => g.event.metadata.eventId).sort());
    const suspended = r.rows.find((row) => row[colIndex(r, 'type')] === 'identity.suspended');
    expect(suspended?.[colIndex(r, 'subject')]).toBe(SAMPLE_PARTS['identity.suspended'].payload.principal.subject);
  });

  it('10.2.1.6: audit logging started and stopped, and retention changes', async () => {
    const expected = gen.filter(
      (g) => g.event.metadata.type === 'audit.started' || g.event.metadata.type === 'audit.stopped' || (g.event.metadata.type === 'config.changed' && payloadOf(g, 'config.changed').objectKind === 'retention'),
    );
    const r = await runEvidenceQuery(store, 'pci.10.2.1.6', {}, undefined, ALL);
    expect(ids(r.rows, colIndex(r, 'event_id'))).toEqual(expected.map((g) => g.event.metadata.eventId).sort());
    const stopped = r.rows.find((row) => row[colIndex(r, 'type')] === 'audit.stopped');
    expect(stopped?.[colIndex(r, 'reason')]).toBe(SAMPLE_PARTS['audit.stopped'].payload.reason);
  });

  it('10.2.2: every event has every required field (zero rows), and says how many it checked', async () => {
    const r = await runEvidenceQuery(store, 'pci.10.2.2', {}, undefined, ALL);
    expect(r.rows).toEqual([]);
    expect(r.summary).toMatchObject({ checked: String(gen.length), missing: '0' });
  });

  it('3.4.1: masking hits by rule, detector, direction and action', async () => {
    const expected = new Map<string, number>();
    for (const g of gen) {
      if (g.event.metadata.type !== 'data.masked') continue;
      for (const h of payloadOf(g, 'data.masked').hits) {
        const key = [h.ruleId, h.detector, h.direction, h.action].join('|');
        expected.set(key, (expected.get(key) ?? 0) + 1);
      }
    }
    const r = await runEvidenceQuery(store, 'pci.3.4.1.masking', {}, undefined, ALL);
    const got = new Map(r.rows.map((row) => [[row[0], row[1], row[2], row[3]].join('|'), Number(row[colIndex(r, 'hits')])]));
    expect(got).toEqual(expected);
  });

  it('3.4.1 scan: no text column of a clean store holds a card number', async () => {
    const r = await runEvidenceQuery(store, 'pci.3.4.1.pan-scan', {}, undefined, ALL);
    expect(r.rows).toEqual([]);
    expect(r.summary).toMatchObject({ pan_findings: 0 });
    expect(Number(r.summary['rows_scanned'])).toBe(gen.length + gen.reduce((n, g) => n + g.stored.panSightings.length, 0));
  });

  it('10.5.1: TTL of at least 365 days on each table, the oldest event, and a 90-day-old event retrieved', async () => {
    const r = await runEvidenceQuery(store, 'pci.10.5.1', {}, undefined, { nowUs: NOW_US });
    const events = r.rows.find((row) => row[0] === 'events');
    expect(events?.[colIndex(r, 'ttl_days')]).toBe(365);
    expect(Number(events?.[colIndex(r, 'rows')])).toBe(gen.length);
    const oldestUs = Math.min(...gen.map((g) => g.event.metadata.timeUs));
    expect(events?.[colIndex(r, 'retained_days')]).toBe(Math.floor((NOW_US - oldestUs) / DAY_US));
    const sampleId = events?.[colIndex(r, 'sample_event_id')];
    const sample = gen.find((g) => g.event.metadata.eventId === sampleId);
    expect(sample).toBeDefined();
    expect(NOW_US - (sample?.event.metadata.timeUs ?? NOW_US)).toBeGreaterThanOrEqual(90 * DAY_US);
    // Nothing newer than the sample is also at least 90 days old.
    expect(gen.filter((g) => g.event.metadata.timeUs <= NOW_US - 90 * DAY_US && g.event.metadata.timeUs > (sample?.event.metadata.timeUs ?? 0))).toEqual([]);
    expect(typeof events?.[colIndex(r, 'retrieval_ms')]).toBe('number');
    expect(r.rows.find((row) => row[0] === 'pan_sightings')?.[colIndex(r, 'ttl_days')]).toBe(365);
    expect(r.summary).toEqual({ min_ttl_days: 365, meets_365_days: true });
  });

  it('pan-lookup: every sighting of one card by its fingerprint, and nothing for an unknown one', async () => {
    const fp = cardFingerprint(1);
    const expected = gen.flatMap((g) => g.stored.panSightings.filter((s) => Buffer.from(s.panHmac).equals(fp)).map((s) => `${s.eventId}|${s.location}`));
    expect(expected.length).toBeGreaterThan(0);
    const r = await runEvidenceQuery(store, 'pan-lookup', {}, { fingerprint: fp.toString('hex').toUpperCase() }, ALL);
    expect(r.rows.map((row) => `${String(row[colIndex(r, 'event_id')])}|${String(row[colIndex(r, 'location')])}`).sort()).toEqual(expected.sort());
    expect(new Set(r.rows.map((row) => row[colIndex(r, 'last4')])).size).toBe(1);
    expect(r.parameters['fingerprint']).toBe(fp.toString('hex'));
    const none = await runEvidenceQuery(store, 'pan-lookup', {}, { fingerprint: 'ab'.repeat(32) }, ALL);
    expect(none.rows).toEqual([]);
  });

  it('pan-lookup refuses anything but a fingerprint, and never echoes what it was given', async () => {
    const pan = luhnNumber('4', 16);
    const err = await runEvidenceQuery(store, 'pan-lookup', {}, { fingerprint: pan }).catch((e: unknown) => e);
    expect(isStoreError(err, 'store_invalid_argument')).toBe(true);
    expect(JSON.stringify({ message: (err as Error).message, where: (err as { where?: string }).where })).not.toContain(pan);
  });

  it('session replay: one session, every event, in order', async () => {
    const session = gen.find((g) => g.event.metadata.type === 'gateway.response.completed')?.event.correlation.sessionId ?? '';
    const expected = gen
      .filter((g) => g.event.correlation.sessionId === session)
      .sort((a, b) => a.event.metadata.timeUs - b.event.metadata.timeUs || a.event.metadata.producer.localeCompare(b.event.metadata.producer) || a.event.metadata.sequence - b.event.metadata.sequence)
      .map((g) => g.event.metadata.eventId);
    const r = await runEvidenceQuery(store, 'session-replay', {}, { sessionId: session }, ALL);
    expect(r.rows.map((row) => row[colIndex(r, 'event_id')])).toEqual(expected);
    const payload = JSON.parse(String(r.rows[0]?.[colIndex(r, 'payload')])) as unknown;
    expect(payload).toBeTypeOf('object');
  });

  it('caps rows and says so; refuses an unknown query', async () => {
    const r = await runEvidenceQuery(store, 'pci.10.2.1.1', {}, undefined, { maxRows: 5 });
    expect(r.rows).toHaveLength(5);
    expect(r.truncated).toBe(true);
    await expect(runEvidenceQuery(store, 'pci.99', {})).rejects.toMatchObject({ code: 'store_invalid_argument' });
    await expect(runEvidenceQuery(store, 'pci.10.2.1.4', { from: 'last tuesday' })).rejects.toMatchObject({ code: 'store_invalid_argument', where: 'from' });
  });
});

describe('evidence queries over deliberately bad rows', () => {
  let store: ChdbEvidenceStore;
  let remove: () => Promise<void>;
  let clean: StoredEvent[];

  beforeAll(async () => {
    const fresh = await freshStoreDir('bad-rows');
    remove = fresh.remove;
    clean = generateEventList({ count: 300, seed: 9, startUs: START_US, spanUs: DAY_US }).map((g) => g.stored);
    store = await ChdbEvidenceStore.open({ dataDir: fresh.dir, retention: { days: 365 } });
    await store.migrate();
    await store.insertEvents(clean, 'clean');
  });

  afterAll(async () => {
    await store.close();
    await remove();
  });

  /** A copy of a clean row under a new id: bad rows bypass the codec, as a buggy writer would. */
  const variant = (n: number, change: Partial<StoredEvent>): StoredEvent => {
    const base = clean[n] as StoredEvent;
    return { ...base, eventId: `${base.eventId.slice(0, 24)}${String(900_000_000_000 + n)}`, panSightings: [], ...change };
  };

  it('10.2.2 lists the events missing a required field, naming the fields', async () => {
    const bad = variant(10, { actorSubject: '', sourceAddress: '   ', targetResource: '' });
    await store.insertEvents([bad], 'bad-10.2.2');
    const r = await runEvidenceQuery(store, 'pci.10.2.2', {}, undefined, ALL);
    expect(r.rows).toHaveLength(1);
    expect(r.rows[0]?.[colIndex(r, 'event_id')]).toBe(bad.eventId);
    expect(r.rows[0]?.[colIndex(r, 'missing')]).toEqual(['actor.subject', 'source.address', 'target.resource']);
    expect(r.summary).toMatchObject({ checked: String(clean.length + 1), missing: '1' });
  });

  it('3.4.1 scan finds card numbers planted in payload text, envelope text and encoded bytes, and shows only BIN and last four', async () => {
    const visa = luhnNumber('411111', 16);
    const mc = luhnNumber('550000', 16);
    const amex = luhnNumber('378282', 15);
    const json = luhnNumber('45', 16);
    // A Luhn-valid number that is a JSON number (a time, a size) is not text: no finding.
    const numeric = luhnNumber('17', 16);
    const planted = [
      variant(20, { payload: JSON.stringify({ content: `card ${groupDigits(visa, [4, 4, 4, 4])} exp 12/29`, latencyUs: Number(numeric) }) }),
      variant(21, { actorSubject: `user ${mc}` }),
      variant(22, { eventBytes: Buffer.concat([Buffer.from((clean[22] as StoredEvent).eventBytes), Buffer.from(` ${groupDigits(amex, [4, 6, 5], '-')}`)]) }),
      // Digits in JSON-number position inside a string must still be found.
      variant(23, { payload: JSON.stringify({ note: `k:${json},v` }) }),
    ];
    await store.insertEvents(planted, 'bad-pans');
    const r = await runEvidenceQuery(store, 'pci.3.4.1.pan-scan', {}, undefined, ALL);
    const found = r.rows.map((row) => `${String(row[colIndex(r, 'column_name')])}|${String(row[colIndex(r, 'event_id')])}|${String(row[colIndex(r, 'masked')])}`).sort();
    expect(found).toEqual(
      [
        `payload|${planted[0]?.eventId}|${visa.slice(0, 6)}******${visa.slice(-4)}`,
        `actor_subject|${planted[1]?.eventId}|${mc.slice(0, 6)}******${mc.slice(-4)}`,
        `event_bytes|${planted[2]?.eventId}|${amex.slice(0, 6)}*****${amex.slice(-4)}`,
        `payload|${planted[3]?.eventId}|${json.slice(0, 6)}******${json.slice(-4)}`,
      ].sort(),
    );
    expect(r.summary).toMatchObject({ pan_findings: 4 });
    for (const format of ['table', 'json', 'csv'] as const) {
      const text = render(r, format);
      for (const pan of [visa, mc, amex, json]) expect(text).not.toContain(pan);
    }
  });
});
