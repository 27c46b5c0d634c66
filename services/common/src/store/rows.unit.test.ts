import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EVENT_TYPES, encodeEvent, type AttestEvent } from '../events';
import { sampleEvent } from '../events/fixtures';
import { isStoreError } from './errors';
import { RowBinaryWriter, writeEventRow } from './rowbinary';
import { cardDataPresent, EVENT_COLUMNS, PAN_SIGHTING_COLUMNS, payloadJson, toStoredEvent } from './rows';

const hashOf = (b: Uint8Array): Buffer => createHash('sha256').update(b).digest();

function stored(type: (typeof EVENT_TYPES)[number]) {
  const event = sampleEvent(type) as AttestEvent;
  const bytes = encodeEvent(event);
  return { event, bytes, row: toStoredEvent(event, bytes, hashOf(bytes)) };
}

describe('toStoredEvent', () => {
  it.each(EVENT_TYPES)('flattens every envelope field of %s into its column', (type) => {
    const { event, bytes, row } = stored(type);
    const { metadata: m, actor: a, source: s, target: t, outcome: o, correlation: c } = event;
    expect(row).toMatchObject({
      eventId: m.eventId,
      type: m.type,
      code: m.code,
      schemaVersion: m.schemaVersion,
      timeUs: m.timeUs,
      producer: m.producer,
      producerEpoch: m.producerEpoch,
      sequence: m.sequence,
      tenantId: m.tenantId,
      pciRequirements: m.pciRequirements,
      actorSubject: a.subject,
      actorIssuer: a.issuer,
      actorClientId: a.clientId,
      actorGroups: a.groups,
      actorKind: a.kind,
      actorOnBehalfOf: a.onBehalfOf,
      actorDev: a.dev,
      sourceAddress: s.address,
      sourceUserAgent: s.userAgent,
      targetProtocol: t.protocol,
      targetService: t.service,
      targetResource: t.resource,
      targetModel: t.model,
      outcomeResult: o.result,
      outcomeStatus: o.status,
      outcomeReason: o.reason,
      sessionId: c.sessionId,
      requestId: c.requestId,
      upstreamRequestId: c.upstreamRequestId,
    });
    expect(Buffer.from(row.prevHash).equals(m.prevHash)).toBe(true);
    expect(Buffer.from(row.eventHash).equals(hashOf(bytes))).toBe(true);
    // The log's bytes, untouched: verification reads them from the store.
    expect(row.eventBytes).toBe(bytes);
  });

  it('keeps the payload as JSON with binary fields in lowercase hex', () => {
    const { event, row } = stored('gateway.request.received');
    const payload = JSON.parse(row.payload) as Record<string, unknown>;
    expect(payload['bodyDigest']).toBe((event as AttestEvent<'gateway.request.received'>).payload.bodyDigest.toString('hex'));
    expect(payload['method']).toBe('POST');
    expect(payloadJson({ a: Buffer.from([0xab, 0x01]), b: [new Uint8Array([0xff])], c: null, d: 1.5 })).toBe('{"a":"ab01","b":["ff"],"c":null,"d":1.5}');
  });

  it('extracts one PAN sighting per data.masked hit that carries a fingerprint, and none from other types', () => {
    const { event, row } = stored('data.masked');
    const hits = (event as AttestEvent<'data.masked'>).payload.hits.filter((h) => h.panHmac !== null);
    expect(hits.length).toBeGreaterThan(0);
    expect(row.panSightings).toHaveLength(hits.length);
    const [first] = row.panSightings;
    const hit = hits[0];
    expect(first).toMatchObject({
      bin: hit?.bin,
      last4: hit?.last4,
      panHmacKeyId: hit?.panHmacKeyId,
      eventId: event.metadata.eventId,
      direction: hit?.direction,
      location: hit?.location.jsonPath,
      actorSubject: event.actor.subject,
      sessionId: event.correlation.sessionId,
    });
    expect(Buffer.from(first?.panHmac ?? []).equals(hit?.panHmac ?? Buffer.alloc(0))).toBe(true);
    // The response summary counts hits per rule; the per-card detail lives in data.masked only.
    expect(stored('gateway.response.completed').row.panSightings).toEqual([]);
  });

  it('flags exchanges that carried card data', () => {
    expect(cardDataPresent(sampleEvent('gateway.response.completed') as AttestEvent)).toBe(true);
    expect(cardDataPresent(sampleEvent('data.masked') as AttestEvent)).toBe(true);
    expect(cardDataPresent(sampleEvent('db.query.executed') as AttestEvent)).toBe(false);
    expect(cardDataPresent(sampleEvent('config.changed') as AttestEvent)).toBe(false);
  });

  it('refuses a hash that is not 32 bytes', () => {
    const event = sampleEvent('audit.started') as AttestEvent;
    try {
      toStoredEvent(event, encodeEvent(event), new Uint8Array(31));
      expect.fail('expected store_row_invalid');
    } catch (err) {
      expect(isStoreError(err, 'store_row_invalid')).toBe(true);
    }
  });

  it('has no full-PAN column anywhere, by construction', () => {
    const names = [...EVENT_COLUMNS, ...PAN_SIGHTING_COLUMNS].map(([n]) => n);
    expect(names.filter((n) => /pan/.test(n))).toEqual(['pan_hmac', 'pan_hmac_key_id']);
  });
});

describe('RowBinaryWriter', () => {
  it('writes a UUID as ClickHouse does: each 64-bit half little-endian', () => {
    const w = new RowBinaryWriter(8);
    w.uuid('00112233-4455-6677-8899-aabbccddeeff', 'id');
    expect(w.bytes().toString('hex')).toBe('7766554433221100ffeeddccbbaa9988');
  });

  it('refuses a malformed UUID or a wrong-size hash instead of writing a corrupt row', () => {
    const w = new RowBinaryWriter(8);
    for (const bad of ['0011223344556677-8899-aabbccddeeff', '00112233-4455-6677-8899-aabbccddeefg', '']) {
      expect(() => w.uuid(bad, 'id')).toThrow(/not a UUID/);
    }
    expect(() => w.fixed(new Uint8Array(31), 32, 'prevHash')).toThrow(/32 bytes/);
  });

  it('writes strings with LEB128 lengths, short, long and multi-byte alike, and grows its buffer', () => {
    const w = new RowBinaryWriter(4);
    const long = 'é'.repeat(100);
    w.string('ab');
    w.string(long);
    w.lcString('gateway.request.received');
    w.lcString('gateway.request.received');
    const b = w.bytes();
    expect(b[0]).toBe(2);
    expect(b.subarray(1, 3).toString()).toBe('ab');
    // 200 bytes of UTF-8: 0xc8 0x01 in LEB128.
    expect([b[3], b[4]]).toEqual([0xc8, 0x01]);
    expect(b.subarray(5, 205).toString('utf8')).toBe(long);
    expect(b[205]).toBe(24);
    expect(b.subarray(206, 230).toString()).toBe('gateway.request.received');
    expect(b.subarray(230).equals(b.subarray(205, 230))).toBe(true);
  });

  it('encodes a whole sample row of every type', () => {
    const w = new RowBinaryWriter(16);
    for (const type of EVENT_TYPES) writeEventRow(w, stored(type).row);
    expect(w.length).toBeGreaterThan(EVENT_TYPES.length * 100);
  });
});
