import { describe, expect, it } from 'vitest';
import { chainEvent, createSystemClock, genesisPrevHash, newEvent, uuidv7 } from './builder';
import { EVENT_CATALOG, EVENT_TYPES } from './catalog';
import { isEventError } from './errors';
import { SAMPLE_PARTS } from './fixtures';
import { PCI_REQUIREMENTS_BY_TYPE } from './pci';
import type { EventParts } from './types';

const deps = {
  producer: { id: 'gateway-test', epoch: '0196b1f2-6c1e-7a3b-9d4e-5f6a7b8c9d0e' },
  clock: { nowUs: () => 1_764_061_200_123_456 },
  idGen: () => '0196b1f2-6c1e-7a3b-9d4e-000000000001',
};

function expectEventError(fn: () => unknown, code: string, where?: string): void {
  try {
    fn();
  } catch (err) {
    expect(isEventError(err)).toBe(true);
    if (isEventError(err)) {
      expect(err.code).toBe(code);
      if (where !== undefined) expect(err.where).toBe(where);
    }
    return;
  }
  expect.fail(`expected ${code}`);
}

describe('newEvent', () => {
  it.each(EVENT_TYPES)('fills the metadata of %s from the catalog, the PCI table and the deps', (type) => {
    const event = newEvent(type, SAMPLE_PARTS[type] as EventParts<typeof type>, deps);
    expect(event.metadata).toEqual({
      eventId: '0196b1f2-6c1e-7a3b-9d4e-000000000001',
      type,
      code: EVENT_CATALOG[type].code,
      schemaVersion: EVENT_CATALOG[type].version,
      timeUs: 1_764_061_200_123_456,
      producer: 'gateway-test',
      producerEpoch: '0196b1f2-6c1e-7a3b-9d4e-5f6a7b8c9d0e',
      tenantId: SAMPLE_PARTS[type].tenantId,
      pciRequirements: [...PCI_REQUIREMENTS_BY_TYPE[type]],
    });
    expect(event.metadata).not.toHaveProperty('sequence');
    expect(event.metadata).not.toHaveProperty('prevHash');
    expect(event.payload).toBe(SAMPLE_PARTS[type].payload);
  });

  it('defaults the epoch to null, the clock to the system clock and ids to UUIDv7', () => {
    const before = Date.now() * 1000;
    const event = newEvent('audit.started', SAMPLE_PARTS['audit.started'], { producer: { id: 'p' } });
    expect(event.metadata.producerEpoch).toBeNull();
    expect(event.metadata.timeUs).toBeGreaterThanOrEqual(before - 2_000);
    expect(event.metadata.timeUs).toBeLessThanOrEqual(Date.now() * 1000 + 2_000);
    expect(event.metadata.eventId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  it('refuses an unknown type', () => {
    expectEventError(() => newEvent('nope.happened' as 'audit.started', SAMPLE_PARTS['audit.started'], deps), 'event_unknown_type');
  });

  it.each([
    ['actor.subject', { actor: { ...SAMPLE_PARTS['session.started'].actor, subject: ' ' } }],
    ['actor.issuer', { actor: { ...SAMPLE_PARTS['session.started'].actor, issuer: '' } }],
    ['source.address', { source: { address: '', userAgent: null } }],
    ['target.service', { target: { ...SAMPLE_PARTS['session.started'].target, service: '' } }],
    ['target.resource', { target: { ...SAMPLE_PARTS['session.started'].target, resource: '' } }],
  ])('refuses an empty 10.2.2 field: %s', (path, override) => {
    expectEventError(() => newEvent('session.started', { ...SAMPLE_PARTS['session.started'], ...override }, deps), 'event_invalid', path);
  });

  it('refuses an empty producer or a clock that reads zero', () => {
    expectEventError(() => newEvent('session.started', SAMPLE_PARTS['session.started'], { ...deps, producer: { id: '' } }), 'event_invalid', 'metadata.producer');
    expectEventError(() => newEvent('session.started', SAMPLE_PARTS['session.started'], { ...deps, clock: { nowUs: () => 0 } }), 'event_invalid', 'metadata.timeUs');
  });

  it('refuses an empty tenant and ids that are not UUIDv7', () => {
    expectEventError(() => newEvent('session.started', { ...SAMPLE_PARTS['session.started'], tenantId: '' }, deps), 'event_invalid', 'metadata.tenantId');
    expectEventError(() => newEvent('session.started', SAMPLE_PARTS['session.started'], { ...deps, idGen: () => crypto.randomUUID() }), 'event_invalid', 'metadata.eventId');
  });
});

describe('chainEvent', () => {
  it('sets sequence and prevHash and nothing else', () => {
    const unchained = newEvent('session.ended', SAMPLE_PARTS['session.ended'], deps);
    const prevHash = Buffer.alloc(32, 7);
    const event = chainEvent(unchained, { sequence: 42, prevHash });
    expect(event.metadata).toEqual({ ...unchained.metadata, sequence: 42, prevHash });
    expect(event.payload).toBe(unchained.payload);
  });

  it('refuses a negative sequence or a prevHash that is not 32 bytes', () => {
    const unchained = newEvent('session.ended', SAMPLE_PARTS['session.ended'], deps);
    expectEventError(() => chainEvent(unchained, { sequence: -1, prevHash: genesisPrevHash() }), 'event_invalid', 'metadata.sequence');
    expectEventError(() => chainEvent(unchained, { sequence: 0, prevHash: Buffer.alloc(31) }), 'event_invalid', 'metadata.prevHash');
  });

  it('accepts a plain Uint8Array prevHash (as the integrity module computes it) without copying', () => {
    const unchained = newEvent('session.ended', SAMPLE_PARTS['session.ended'], deps);
    const backing = new Uint8Array(40).fill(9);
    const event = chainEvent(unchained, { sequence: 7, prevHash: backing.subarray(4, 36) });
    expect(Buffer.isBuffer(event.metadata.prevHash)).toBe(true);
    expect(event.metadata.prevHash).toEqual(Buffer.alloc(32, 9));
    backing[4] = 1;
    expect(event.metadata.prevHash[0]).toBe(1);
  });

  it('starts a chain with 32 zero bytes', () => {
    expect(genesisPrevHash()).toEqual(Buffer.alloc(32));
  });
});

describe('uuidv7', () => {
  it('encodes the millisecond time in the first 48 bits, version 7 and the RFC 9562 variant', () => {
    const id = uuidv7(1_764_061_200_123);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(parseInt(id.replace(/-/g, '').slice(0, 12), 16)).toBe(1_764_061_200_123);
  });

  it('is unique across many ids and sorts by time across milliseconds', () => {
    const ids = Array.from({ length: 5_000 }, (_, i) => uuidv7(1_764_061_200_000 + Math.floor(i / 100)));
    expect(new Set(ids).size).toBe(ids.length);
    const firstOfEachMs = ids.filter((_, i) => i % 100 === 0);
    expect([...firstOfEachMs].sort()).toEqual(firstOfEachMs);
  });
});

describe('createSystemClock', () => {
  it('reads UTC microseconds close to Date.now and never goes back', () => {
    const clock = createSystemClock();
    const readings = Array.from({ length: 1_000 }, () => clock.nowUs());
    expect(Math.abs((readings[0] ?? 0) - Date.now() * 1000)).toBeLessThan(50_000);
    for (let i = 1; i < readings.length; i++) expect(readings[i]).toBeGreaterThanOrEqual(readings[i - 1] ?? 0);
    expect(readings.every(Number.isSafeInteger)).toBe(true);
  });
});
