/**
 * splitForVerification reads each event's chain fields with the metadata-only decode. It must give
 * what the full decode gave, on intact and tampered logs alike: the same VerifyEvents, checkpoints,
 * attestations, redaction claims and decoded events, the same reports from verifyEncodedEvents, and
 * the same error for a record that does not decode. The reference is the previous code, kept here.
 */
import type { JSONWebKeySet } from 'jose';
import { describe, expect, it } from 'vitest';
import { chainEvent, decodeEvent, encodeEvent, newEvent, type AnyAttestEvent, type AttestEvent } from '../events';
import { InMemoryKeyStore, Keyring, maxGapUsFor, ProducerChain, sha256, verifyProducerLog, type Cadence, type SignedCheckpoint, type VerifyReport } from '../integrity';
import { generateEventList, prng } from '../store/testing';
import { referenceSplit } from '../../../../test/support/split-reference';
import { checkRedactions, splitForVerification, verifyEncodedEvents, type EvidenceRecord } from './verify-events';

const CADENCE: Cadence = { everyEvents: 50, everyMs: 60_000 };


/** verifyEncodedEvents as it was, over the reference split. */
async function referenceVerify(records: readonly EvidenceRecord[], jwks: JSONWebKeySet, opts: { window: { fromUs: number; toUs: number }; storageOrder: boolean }) {
  const split = referenceSplit(records, { dropIdenticalCopies: !opts.storageOrder });
  const report = await verifyProducerLog(
    { events: split.events, checkpoints: split.checkpoints, jwks, maxGapUs: maxGapUsFor(CADENCE), window: opts.window },
    { checkOrder: opts.storageOrder },
  );
  const unattested = checkRedactions(split.redactions, split.attestations);
  return { ...report, ok: report.ok && unattested.length === 0, findings: [...report.findings, ...unattested], decoded: split.decoded, redactedEvents: split.redactions.length - unattested.length };
}

type Result<T> = { value: T } | { error: { name: string; message: string; code: unknown } };
function attempt<T>(fn: () => T): Result<T> {
  try {
    return { value: fn() };
  } catch (err) {
    const e = err as Error & { code?: unknown };
    return { error: { name: e.name, message: e.message, code: e.code } };
  }
}
async function attemptAsync<T>(fn: () => Promise<T>): Promise<Result<T>> {
  try {
    return { value: await fn() };
  } catch (err) {
    const e = err as Error & { code?: unknown };
    return { error: { name: e.name, message: e.message, code: e.code } };
  }
}

interface SignedLog {
  readonly records: Uint8Array[];
  readonly jwks: JSONWebKeySet;
  readonly window: { fromUs: number; toUs: number };
}

/**
 * A realistic log as producers write it: the store generator's event mix (every producer's chain
 * rebuilt with ProducerChain, so prevHash and sequence are real), and signed integrity.checkpoint
 * events every CADENCE.everyEvents events or CADENCE.everyMs, in log order.
 */
async function signedLog(count: number, seed: number): Promise<SignedLog> {
  const ring = await Keyring.open(new InMemoryKeyStore());
  await ring.rotate();
  const startUs = Date.now() * 1000 + 1_000_000;
  const generated = generateEventList({ count, seed, startUs, spanUs: count * 200_000, cardRate: 0.2 }).filter((g) => g.event.metadata.type !== 'integrity.checkpoint');
  const chains = new Map<string, { chain: ProducerChain; pending: number; lastUs: number; tenantId: string }>();
  const records: Uint8Array[] = [];
  const checkpointEvent = (cp: SignedCheckpoint, tenantId: string, timeUs: number): Uint8Array => {
    const f = cp.fields;
    const system = { subject: `system:${f.producer}`, issuer: 'attest', clientId: null, groups: [], kind: 'system' as const, onBehalfOf: null, dev: false };
    const unchained = newEvent(
      'integrity.checkpoint',
      {
        tenantId,
        actor: system,
        source: { address: 'local', userAgent: null },
        target: { protocol: 'internal', service: 'attest', resource: `producer/${f.producer}`, model: null },
        outcome: { result: 'success', status: null, reason: null },
        correlation: { sessionId: `producer:${f.producer}`, requestId: `checkpoint:${f.epoch}:${f.lastSequence}`, upstreamRequestId: null },
        payload: { producer: f.producer, epoch: f.epoch, firstSequence: f.firstSequence, lastSequence: f.lastSequence, count: f.count, fromTimeUs: f.fromTimeUs, toTimeUs: f.toTimeUs, lastHash: Buffer.from(f.lastHash), merkleRoot: Buffer.from(f.merkleRoot), prevCheckpointHash: Buffer.from(f.prevCheckpointHash), closed: f.closed, keyId: f.keyId, formatVersion: 1, signature: Buffer.from(cp.signature) },
      },
      { producer: { id: f.producer, epoch: f.epoch }, clock: { nowUs: () => timeUs } },
    );
    return encodeEvent(chainEvent(unchained, { sequence: 0, prevHash: new Uint8Array(32) }) as AnyAttestEvent);
  };
  const cut = async (c: { chain: ProducerChain; pending: number; lastUs: number; tenantId: string }, timeUs: number): Promise<void> => {
    records.push(checkpointEvent(await c.chain.checkpoint(ring.signingKey(), timeUs), c.tenantId, timeUs));
    c.pending = 0;
    c.lastUs = timeUs;
  };
  let timeUs = startUs;
  for (const g of generated) {
    const m = g.event.metadata;
    timeUs = m.timeUs;
    // The time cadence, a little early (events arrive a few seconds apart): no silence is reported.
    for (const c of chains.values()) if (timeUs - c.lastUs >= CADENCE.everyMs * 800) await cut(c, timeUs);
    let c = chains.get(m.producer);
    if (c === undefined) {
      c = { chain: ProducerChain.start({ producer: m.producer, epoch: m.producerEpoch ?? '', startUs: timeUs }), pending: 0, lastUs: timeUs, tenantId: m.tenantId };
      chains.set(m.producer, c);
    }
    const next = c.chain.nextMetadata();
    const bytes = encodeEvent({ ...g.event, metadata: { ...m, sequence: next.sequence, prevHash: Buffer.from(next.prevHash) } } as AnyAttestEvent);
    c.chain.append(bytes);
    records.push(bytes);
    if (++c.pending >= CADENCE.everyEvents) await cut(c, timeUs);
  }
  // Most producers checkpoint once more at the end; one leaves a pending tail.
  for (const c of [...chains.values()].slice(1)) await cut(c, timeUs + 1);
  return { records, jwks: ring.jwks(), window: { fromUs: 0, toUs: timeUs + 2 } };
}

/** An event re-encoded with `edit` applied (its metadata kept unless the edit changes it). */
function reencode(bytes: Uint8Array, edit: (e: AnyAttestEvent) => AnyAttestEvent): Buffer {
  return encodeEvent(edit(decodeEvent(bytes).event as AnyAttestEvent));
}

/** Whether the record is a checkpoint (false for one that no longer decodes). */
function isCheckpoint(bytes: Uint8Array): boolean {
  try {
    return decodeEvent(bytes).type === 'integrity.checkpoint';
  } catch {
    return false;
  }
}

function typeOf(bytes: Uint8Array): string | undefined {
  try {
    return decodeEvent(bytes).type;
  } catch {
    return undefined;
  }
}

/** Tampering, as an attacker with write access to the store or the log could do it. */
const TAMPERINGS: Record<string, (records: EvidenceRecord[], rand: () => number) => void> = {
  alterPayload(records, rand) {
    const i = pickEvent(records, rand);
    records[i] = reencode(bytesOf(records[i]!), (e) => ({ ...e, correlation: { ...e.correlation, requestId: `${e.correlation.requestId}-x` } }) as AnyAttestEvent);
  },
  alterPrevHash(records, rand) {
    const i = pickEvent(records, rand);
    records[i] = reencode(bytesOf(records[i]!), (e) => ({ ...e, metadata: { ...e.metadata, prevHash: sha256(Buffer.from(`forged ${i}`)) } }) as AnyAttestEvent);
  },
  alterSequence(records, rand) {
    const i = pickEvent(records, rand);
    records[i] = reencode(bytesOf(records[i]!), (e) => ({ ...e, metadata: { ...e.metadata, sequence: e.metadata.sequence + 1 } }) as AnyAttestEvent);
  },
  alterContent(records, rand) {
    const i = records.findIndex((r, j) => j >= Math.floor(rand() * records.length) && ['gateway.request.received', 'gateway.response.completed'].includes(typeOf(bytesOf(r)) ?? ''));
    if (i < 0) return;
    records[i] = reencode(bytesOf(records[i]!), (e) => ({ ...e, payload: { ...(e.payload as object), content: rand() < 0.5 ? '' : 'replaced' } }) as AnyAttestEvent);
  },
  deleteEvents(records, rand) {
    const i = pickEvent(records, rand);
    records.splice(i, 1 + Math.floor(rand() * 3));
  },
  deleteCheckpoint(records, rand) {
    const cps = records.map((r, i) => (isCheckpoint(bytesOf(r)) ? i : -1)).filter((i) => i >= 0);
    if (cps.length > 0) records.splice(cps[Math.floor(rand() * cps.length)]!, 1);
  },
  identicalCopy(records, rand) {
    const i = pickEvent(records, rand);
    records.splice(Math.floor(rand() * records.length), 0, records[i]!);
  },
  differentEventSameId(records, rand) {
    const i = pickEvent(records, rand);
    records.splice(i + 1, 0, reencode(bytesOf(records[i]!), (e) => ({ ...e, outcome: { ...e.outcome, reason: 'replayed' } }) as AnyAttestEvent));
  },
  swap(records, rand) {
    const i = pickEvent(records, rand);
    const j = pickEvent(records, rand);
    [records[i], records[j]] = [records[j]!, records[i]!];
  },
  moveToEnd(records, rand) {
    const i = pickEvent(records, rand);
    records.push(...records.splice(i, 1));
  },
  redactedWithoutAttestation(records, rand) {
    const i = pickEvent(records, rand);
    const bytes = bytesOf(records[i]!);
    records[i] = { bytes: reencode(bytes, (e) => ({ ...e, source: { ...e.source, userAgent: '[REDACTED]' } }) as AnyAttestEvent), originalHash: sha256(bytes), redactedBy: '01963e3c-0000-7000-8000-000000000000' };
  },
  flipByte(records, rand) {
    const i = pickEvent(records, rand);
    const copy = Buffer.from(bytesOf(records[i]!));
    const at = 10 + Math.floor(rand() * (copy.length - 10));
    copy[at] = copy[at]! ^ (1 << Math.floor(rand() * 8));
    records[i] = copy;
  },
  truncate(records, rand) {
    const i = pickEvent(records, rand);
    const bytes = bytesOf(records[i]!);
    records[i] = bytes.subarray(0, Math.floor(rand() * bytes.length));
  },
};

function bytesOf(r: EvidenceRecord): Uint8Array {
  return r instanceof Uint8Array ? r : r.bytes;
}

/** Index of a random record that still decodes and is not a checkpoint. */
function pickEvent(records: readonly EvidenceRecord[], rand: () => number): number {
  for (;;) {
    const i = Math.floor(rand() * records.length);
    // Not a checkpoint, and not already damaged.
    const type = typeOf(bytesOf(records[i]!));
    if (type !== undefined && type !== 'integrity.checkpoint') return i;
  }
}

/**
 * A value as text, to compare large results quickly and exactly: bytes as hex (whatever their
 * class), members that are undefined kept as such, getters read.
 */
function canon(value: unknown): string {
  return JSON.stringify(value, function (this: Record<string, unknown>, key, v: unknown) {
    const raw = key === '' ? v : this[key];
    if (raw instanceof Uint8Array) return `bytes:${Buffer.from(raw).toString('hex')}`;
    return v === undefined ? '(undefined)' : v;
  });
}

/** What a split gives, as text (see canon). */
function splitResult(fn: () => ReturnType<typeof referenceSplit>): string {
  return canon(
    attempt(() => {
      const s = fn();
      return { events: s.events, checkpoints: s.checkpoints, attestations: s.attestations, redactions: s.redactions, decoded: s.decoded };
    }),
  );
}

/** A verification report's members, in one order. */
function reportOf(r: Pick<VerifyReport, 'ok' | 'findings' | 'pending' | 'stats'> & { readonly redactedEvents: number }) {
  return { ok: r.ok, findings: r.findings, pending: r.pending, stats: r.stats, redactedEvents: r.redactedEvents };
}

describe('splitForVerification with the metadata-only decode', () => {
  it('gives what the full decode gave on an intact realistic log, in log and store order', async () => {
    const log = await signedLog(1500, 11);
    for (const dropIdenticalCopies of [false, true]) {
      expect(splitResult(() => splitForVerification(log.records, { dropIdenticalCopies }))).toBe(splitResult(() => referenceSplit(log.records, { dropIdenticalCopies })));
      const split = splitForVerification(log.records, { dropIdenticalCopies });
      expect(split.events.filter((e) => e.unordered === true).length).toBeGreaterThan(50);
      expect(split.checkpoints.length).toBeGreaterThan(10);
    }
    for (const storageOrder of [false, true]) {
      const report = await verifyEncodedEvents(log.records, log.jwks, { cadence: CADENCE, window: log.window, storageOrder });
      expect(report.findings).toEqual([]);
      expect(report.ok).toBe(true);
    }
  });

  it('reports exactly what the full decode reported on randomly tampered logs, and fails where it failed', async () => {
    const base = await signedLog(400, 5);
    const names = Object.keys(TAMPERINGS);
    const seen = { findings: new Set<string>(), errors: new Set<string>(), logs: 0 };
    for (let seed = 1; seed <= 80; seed++) {
      const rand = prng(seed);
      const records: EvidenceRecord[] = [...base.records];
      const applied: string[] = [];
      for (let k = 0, n = 1 + Math.floor(rand() * 3); k < n; k++) {
        const name = names[Math.floor(rand() * names.length)]!;
        TAMPERINGS[name]!(records, rand);
        applied.push(name);
      }
      for (const storageOrder of [false, true]) {
        const label = `seed ${seed} (${applied.join(', ')}), storageOrder ${storageOrder}`;
        expect(splitResult(() => splitForVerification(records, { dropIdenticalCopies: !storageOrder })), label).toBe(
          splitResult(() => referenceSplit(records, { dropIdenticalCopies: !storageOrder })),
        );
        // The reports (decoded is compared with the splits above).
        const want = await attemptAsync(async () => reportOf(await referenceVerify(records, base.jwks, { window: base.window, storageOrder })));
        const got = await attemptAsync(async () => reportOf(await verifyEncodedEvents(records, base.jwks, { cadence: CADENCE, window: base.window, storageOrder })));
        expect(canon(got), label).toBe(canon(want));
        seen.logs += 1;
        if ('value' in want) for (const f of want.value.findings) seen.findings.add(f.code);
        else seen.errors.add(String(want.error.code));
      }
    }
    // The tampering reached the verifier's findings and the decoder's refusals.
    expect([...seen.findings]).toEqual(expect.arrayContaining(['altered', 'deleted', 'inserted', 'reordered', 'checkpoint_missing']));
    expect([...seen.errors]).toEqual(expect.arrayContaining(['event_truncated']));
  }, 120_000);

  it('throws the full decode error for a record that does not decode, at its place in the input', async () => {
    const log = await signedLog(300, 3);
    const good = log.records[5]!;
    const damaged: [string, Uint8Array][] = [
      ['bad magic', Buffer.from([0x00, ...good.subarray(1)])],
      ['header only', good.subarray(0, 10)],
      ['truncated metadata', good.subarray(0, 30)],
      ['truncated payload', good.subarray(0, good.length - 3)],
      ['trailing byte', Buffer.concat([good, Buffer.from([0])])],
      ['unknown fingerprint', Buffer.concat([good.subarray(0, 2), Buffer.alloc(8, 0xab), good.subarray(10)])],
    ];
    for (const [label, bytes] of damaged) {
      const records = [...log.records.slice(0, 20), bytes, ...log.records.slice(20)];
      const want = splitResult(() => referenceSplit(records));
      expect(want, label).toMatch(/^\{"error":/);
      expect(splitResult(() => splitForVerification(records)), label).toBe(want);
      expect(canon(await attemptAsync(async () => reportOf(await verifyEncodedEvents(records, log.jwks, { cadence: CADENCE, window: log.window, storageOrder: true })))), label).toBe(
        canon(await attemptAsync(async () => reportOf(await referenceVerify(records, log.jwks, { window: log.window, storageOrder: true })))),
      );
    }
  });

  it('keeps data.masked attestations and checkpoints decoded whole', async () => {
    const log = await signedLog(2000, 21);
    const split = splitForVerification(log.records);
    const ref = referenceSplit(log.records);
    expect(split.attestations.length).toBeGreaterThan(0);
    expect(canon(split.attestations)).toBe(canon(ref.attestations));
    expect((split.attestations[0] as AttestEvent<'data.masked'>).payload.hits).toBeDefined();
    expect(canon(split.checkpoints)).toBe(canon(ref.checkpoints));
  });
});
