import { describe, expect, it } from 'vitest';
import { signCheckpoint } from './checkpoint';
import type { SignedCheckpoint } from './checkpoint';
import { sha256 } from './hash';
import { InMemoryKeyStore, Keyring } from './keyring';
import { LogSim, decodeTestEvent, encodeTestEvent, payloadOffset } from './testkit';
import { buildInclusionProof, verifyEventInclusion, verifyProducerLog } from './verify';
import type { Finding, VerifyEvent, VerifyInput, VerifyReport } from './verify';

const CADENCE = { everyEvents: 5, everyMs: 1000 };

/** Two producers, idle periods, a key rotation, a resume and a graceful restart; every event covered. */
async function richLog(): Promise<LogSim> {
  const sim = await LogSim.create({ producers: ['gw-a', 'gw-b'], cadence: CADENCE, seed: 42 });
  for (let i = 0; i < 12; i++) {
    await sim.emit(i % 3 === 0 ? 'gw-b' : 'gw-a');
    await sim.tick(50_000);
  }
  await sim.tick(3_500_000); // idle: empty checkpoints
  await sim.rotateKey();
  for (let i = 0; i < 7; i++) {
    await sim.emit('gw-a');
    await sim.tick(10_000);
  }
  await sim.restart('gw-a', 'resume');
  await sim.emit('gw-a');
  await sim.restart('gw-b', 'graceful');
  for (let i = 0; i < 6; i++) {
    await sim.emit('gw-b');
    await sim.tick(100_000);
  }
  await sim.finish();
  return sim;
}

function input(sim: LogSim, events: VerifyEvent[] = sim.events, checkpoints: SignedCheckpoint[] = sim.checkpoints): VerifyInput {
  return { events, checkpoints, jwks: sim.jwks(), maxGapUs: sim.maxGapUs, window: { fromUs: 0, toUs: sim.clock.us } };
}

function brief(r: VerifyReport): Array<Pick<Finding, 'code' | 'sequences' | 'eventIds'>> {
  return r.findings.map((f) => ({ code: f.code, sequences: f.sequences, eventIds: f.eventIds }));
}

function flipPayloadByte(ev: VerifyEvent): VerifyEvent {
  const b = ev.bytes.slice();
  b[payloadOffset(b)]! ^= 0x40;
  return decodeTestEvent(b);
}

/** The event re-encoded with a different prevHash (as a forger editing metadata would). */
function withPrevHash(ev: VerifyEvent, prevHash: Uint8Array): VerifyEvent {
  const payload = ev.bytes.subarray(payloadOffset(ev.bytes));
  return decodeTestEvent(encodeTestEvent({ ...ev, epoch: String(ev.epoch), prevHash }, payload));
}

function pick(sim: LogSim, producer: string, sequence: number, epoch?: string): number {
  const i = sim.events.findIndex((e) => e.producer === producer && e.sequence === sequence && (epoch === undefined || e.epoch === epoch));
  if (i < 0) throw new Error(`no event ${producer}#${sequence}`);
  return i;
}

describe('verifyProducerLog', () => {
  it('Given an intact log with idle periods, a key rotation and restarts, When verified, Then it is ok and every event is attested', async () => {
    const sim = await richLog();
    const r = await verifyProducerLog(input(sim));
    expect(brief(r)).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.pending).toEqual([]);
    expect(r.stats.attestedEvents).toBe(sim.events.length);
    expect(r.stats.trustedCheckpoints).toBe(sim.checkpoints.length);
    expect(sim.checkpoints.some((c) => c.fields.count === 0)).toBe(true);
    expect(new Set(sim.checkpoints.map((c) => c.fields.keyId)).size).toBe(2);
  });

  describe('alteration', () => {
    it('Given one event whose payload was altered, When verified, Then exactly one confirmed `altered` names it', async () => {
      const sim = await richLog();
      const i = pick(sim, 'gw-a', 3);
      const events = sim.events.slice();
      events[i] = flipPayloadByte(events[i]!);
      const r = await verifyProducerLog(input(sim, events));
      expect(brief(r)).toEqual([{ code: 'altered', sequences: { from: 3, to: 3 }, eventIds: [events[i]!.eventId] }]);
      expect(r.findings[0]!.confirmed).toBe(true);
      expect(r.ok).toBe(false);
    });

    it('Given the last event of a checkpoint range altered, When verified, Then one `altered` names it and the next range is clean', async () => {
      const sim = await richLog();
      const cp = sim.checkpoints.find((c) => c.fields.producer === 'gw-a' && c.fields.count > 1)!;
      const i = pick(sim, 'gw-a', cp.fields.lastSequence, cp.fields.epoch);
      const events = sim.events.slice();
      events[i] = flipPayloadByte(events[i]!);
      const r = await verifyProducerLog(input(sim, events));
      expect(brief(r)).toEqual([
        { code: 'altered', sequences: { from: cp.fields.lastSequence, to: cp.fields.lastSequence }, eventIds: [events[i]!.eventId] },
      ]);
    });

    it("Given an event whose prevHash field was rewritten, When verified, Then it alone is `altered` (not its predecessor)", async () => {
      const sim = await richLog();
      const i = pick(sim, 'gw-a', 6);
      const events = sim.events.slice();
      events[i] = withPrevHash(events[i]!, sha256(new Uint8Array([9])));
      const r = await verifyProducerLog(input(sim, events));
      expect(brief(r)).toEqual([{ code: 'altered', sequences: { from: 6, to: 6 }, eventIds: [events[i]!.eventId] }]);
      expect(r.findings[0]!.detail).toContain('prevHash field was changed');
    });

    it('Given two adjacent altered events, When verified, Then both are named (the Merkle root decides between explanations)', async () => {
      const sim = await richLog();
      const events = sim.events.slice();
      const i = pick(sim, 'gw-a', 2);
      const j = pick(sim, 'gw-a', 3);
      events[i] = flipPayloadByte(events[i]!);
      events[j] = flipPayloadByte(events[j]!);
      const r = await verifyProducerLog(input(sim, events));
      expect(brief(r)).toEqual([{ code: 'altered', sequences: { from: 2, to: 3 }, eventIds: [events[i]!.eventId, events[j]!.eventId] }]);
    });
  });

  it('Given a run of five consecutive altered events, When verified, Then one `altered` finding spans exactly them', async () => {
    const sim = await LogSim.create({ producers: ['gw'], cadence: { everyEvents: 20, everyMs: 1000 }, seed: 12 });
    for (let i = 0; i < 20; i++) await sim.emit('gw');
    for (let i = 0; i < 12; i++) await sim.emit('gw'); // 21..32: a pending tail, no root to decide
    for (const [lo, hi] of [
      [6, 10],
      [24, 28],
    ] as const) {
      const events = sim.events.map((e) => (e.sequence >= lo && e.sequence <= hi ? flipPayloadByte(e) : e));
      const r = await verifyProducerLog(input(sim, events));
      expect(r.findings.map((f) => [f.code, f.sequences])).toEqual([['altered', { from: lo, to: hi }]]);
    }
  });

  describe('deletion', () => {
    it.each([
      ['in the middle of a range', 2],
      ['first of a range', 6],
      ['last of a range', 5],
    ])('Given an event deleted %s, When verified, Then one confirmed `deleted` names its sequence', async (_w, seq) => {
      const sim = await richLog();
      const i = pick(sim, 'gw-a', seq);
      const events = sim.events.filter((_, k) => k !== i);
      const r = await verifyProducerLog(input(sim, events));
      expect(brief(r)).toEqual([{ code: 'deleted', sequences: { from: seq, to: seq }, eventIds: [] }]);
      expect(r.findings[0]!.confirmed).toBe(true);
    });

    it('Given a checkpoint and all its events deleted, When verified, Then the missing checkpoint and the deleted range are both named', async () => {
      const sim = await richLog();
      const cps = sim.checkpoints.filter((c) => c.fields.producer === 'gw-a' && c.fields.count > 0);
      const gone = cps[1]!;
      const events = sim.events.filter(
        (e) => !(e.producer === 'gw-a' && e.epoch === gone.fields.epoch && e.sequence >= gone.fields.firstSequence && e.sequence <= gone.fields.lastSequence),
      );
      const r = await verifyProducerLog(input(sim, events, sim.checkpoints.filter((c) => c !== gone)));
      const range = { from: gone.fields.firstSequence, to: gone.fields.lastSequence };
      expect(brief(r)).toEqual([
        { code: 'checkpoint_missing', sequences: range, eventIds: [] },
        { code: 'deleted', sequences: range, eventIds: [] },
      ]);
    });
  });

  describe('insertion', () => {
    it('Given a forged event claiming an existing sequence, When verified, Then only the forgery is `inserted`', async () => {
      const sim = await richLog();
      const genuine = sim.events[pick(sim, 'gw-a', 4)]!;
      const forged = decodeTestEvent(
        encodeTestEvent({ ...genuine, epoch: String(genuine.epoch), eventId: 'forged-1' }, new TextEncoder().encode('not what happened')),
      );
      const events = [forged, ...sim.events]; // stored first, to make order irrelevant
      const r = await verifyProducerLog(input(sim, events));
      expect(brief(r)).toEqual([{ code: 'inserted', sequences: { from: 4, to: 4 }, eventIds: ['forged-1'] }]);
    });

    it('Given an exact replay of a stored event, When verified, Then the second copy is `inserted`', async () => {
      const sim = await richLog();
      const i = pick(sim, 'gw-b', 2);
      const events = [...sim.events, sim.events[i]!];
      const r = await verifyProducerLog(input(sim, events));
      expect(brief(r)).toEqual([{ code: 'inserted', sequences: { from: 2, to: 2 }, eventIds: [sim.events[i]!.eventId] }]);
      expect(r.findings[0]!.detail).toContain('second copy');
    });

    it('Given a well-chained event appended after the checkpoint that closed its epoch, When verified, Then it is `inserted`', async () => {
      const sim = await richLog();
      const closing = sim.checkpoints.find((c) => c.fields.closed)!;
      const extra = decodeTestEvent(
        encodeTestEvent(
          {
            eventId: 'late-1',
            producer: closing.fields.producer,
            epoch: closing.fields.epoch,
            sequence: closing.fields.lastSequence + 1,
            prevHash: closing.fields.lastHash,
            timeUs: closing.fields.toTimeUs + 1,
          },
          new Uint8Array(8),
        ),
      );
      const r = await verifyProducerLog(input(sim, [...sim.events, extra]));
      expect(brief(r)).toEqual([
        { code: 'inserted', sequences: { from: closing.fields.lastSequence + 1, to: closing.fields.lastSequence + 1 }, eventIds: ['late-1'] },
      ]);
    });
  });

  it('Given two events of one producer swapped in storage, When verified, Then `reordered` names them and nothing else', async () => {
    const sim = await richLog();
    const i = pick(sim, 'gw-a', 2);
    const j = pick(sim, 'gw-a', 7);
    const events = sim.events.slice();
    [events[i], events[j]] = [events[j]!, events[i]!];
    const r = await verifyProducerLog(input(sim, events));
    expect(r.findings.every((f) => f.code === 'reordered')).toBe(true);
    expect(r.findings.flatMap((f) => f.eventIds).sort()).toEqual([sim.events[i]!.eventId, sim.events[j]!.eventId].sort());
    expect((await verifyProducerLog(input(sim, events), { checkOrder: false })).ok).toBe(true);
  });

  describe('checkpoints and keys', () => {
    it('Given a checkpoint deleted from the middle, When verified, Then `checkpoint_missing` names it and its events still verify through the chain', async () => {
      const sim = await richLog();
      const gone = sim.checkpoints.filter((c) => c.fields.producer === 'gw-a' && c.fields.count > 0)[1]!;
      const r = await verifyProducerLog(input(sim, sim.events, sim.checkpoints.filter((c) => c !== gone)));
      expect(brief(r)).toEqual([
        { code: 'checkpoint_missing', sequences: { from: gone.fields.firstSequence, to: gone.fields.lastSequence }, eventIds: [] },
      ]);
      expect(r.stats.attestedEvents).toBe(sim.events.length);
    });

    it('Given a checkpoint whose payload was edited, When verified, Then `bad_checkpoint_signature` and nothing else', async () => {
      const sim = await richLog();
      const k = sim.checkpoints.findIndex((c) => c.fields.count > 2);
      const cp = sim.checkpoints[k]!;
      const [h, p, s] = cp.jws.split('.') as [string, string, string];
      const edited = Buffer.from(p, 'base64url').toString().replace(`"lastSequence":${cp.fields.lastSequence}`, `"lastSequence":${cp.fields.lastSequence - 1}`).replace(`"count":${cp.fields.count}`, `"count":${cp.fields.count - 1}`);
      const checkpoints: Array<SignedCheckpoint | string> = sim.checkpoints.slice();
      checkpoints[k] = `${h}.${Buffer.from(edited).toString('base64url')}.${s}`;
      const r = await verifyProducerLog({ ...input(sim), checkpoints });
      expect(r.findings.map((f) => f.code)).toEqual(['bad_checkpoint_signature']);
    });

    it('Given a JWKS missing the first key, When verified, Then every checkpoint it signed is `unknown_key` and nothing else', async () => {
      const sim = await richLog();
      const firstKid = sim.checkpoints[0]!.fields.keyId;
      const jwks = { keys: sim.jwks().keys.filter((k) => k.kid !== firstKid) };
      const r = await verifyProducerLog({ ...input(sim), jwks });
      expect(new Set(r.findings.map((f) => f.code))).toEqual(new Set(['unknown_key']));
      expect(r.findings).toHaveLength(sim.checkpoints.filter((c) => c.fields.keyId === firstKid).length);
    });

    it('Given a validly signed checkpoint with a wrong Merkle root (a key holder lying), When verified, Then `merkle_mismatch`', async () => {
      const ring = await Keyring.open(new InMemoryKeyStore());
      await ring.rotate();
      const sim = await LogSim.create({ producers: ['gw'], cadence: CADENCE, seed: 1 });
      for (let i = 0; i < 4; i++) await sim.emit('gw');
      const honest = await sim.cut('gw');
      const lie = await signCheckpoint({ ...honest.fields, merkleRoot: sha256(new Uint8Array([1])) }, sim.keyring.signingKey());
      const r = await verifyProducerLog(input(sim, sim.events, [lie]));
      expect(brief(r)).toEqual([{ code: 'merkle_mismatch', sequences: { from: 1, to: 4 }, eventIds: [] }]);
    });

    it('Given a checkpoint signed by a retired key after its retirement, When verified, Then `key_not_valid`', async () => {
      const sim = await LogSim.create({ producers: ['gw'], cadence: CADENCE, seed: 2 });
      await sim.emit('gw');
      const oldKey = sim.keyring.signingKey();
      await sim.rotateKey();
      await sim.tick(10);
      const cp = await signCheckpoint(
        {
          producer: 'gw',
          epoch: 'gw-e1',
          firstSequence: 1,
          lastSequence: 1,
          fromTimeUs: sim.clock.us - 10,
          toTimeUs: sim.clock.us,
          lastHash: sha256(sim.events[0]!.bytes),
          merkleRoot: (await import('./merkle')).merkleRoot([sha256(sim.events[0]!.bytes)]),
          prevCheckpointHash: new Uint8Array(32),
          closed: true,
        },
        oldKey,
      );
      const r = await verifyProducerLog(input(sim, sim.events, [cp]));
      expect(r.findings.map((f) => f.code)).toContain('key_not_valid');
    });
  });

  describe('time', () => {
    it('Given an idle producer that kept emitting empty checkpoints, When verified, Then no time_gap', async () => {
      const sim = await LogSim.create({ producers: ['gw'], cadence: CADENCE, seed: 3 });
      await sim.emit('gw');
      await sim.tick(60_000_000); // a minute of silence: 60 idle checkpoints
      await sim.emit('gw');
      await sim.finish();
      const r = await verifyProducerLog(input(sim));
      expect(r.ok).toBe(true);
      expect(sim.checkpoints.filter((c) => c.fields.count === 0).length).toBeGreaterThanOrEqual(59);
    });

    it('Given a producer that went silent without closing (no idle checkpoints), When verified up to now, Then a `time_gap` names the silence', async () => {
      const sim = await LogSim.create({ producers: ['gw'], cadence: CADENCE, seed: 4 });
      await sim.emit('gw');
      await sim.tick(2_000_000);
      const lastCp = sim.checkpoints.at(-1)!;
      const r = await verifyProducerLog({ ...input(sim), window: { fromUs: 0, toUs: lastCp.fields.toTimeUs + 30_000_000 } });
      expect(brief(r)).toEqual([{ code: 'time_gap', sequences: null, eventIds: [] }]);
      expect(r.findings[0]!.timeUs).toEqual({ from: lastCp.fields.toTimeUs, to: lastCp.fields.toTimeUs + 30_000_000 });
    });

    it('Given the tail truncated (last events and checkpoints deleted), When verified up to now, Then the silence is reported', async () => {
      const sim = await LogSim.create({ producers: ['gw'], cadence: CADENCE, seed: 5 });
      for (let i = 0; i < 20; i++) {
        await sim.emit('gw');
        await sim.tick(200_000);
      }
      await sim.finish();
      const keepCps = sim.checkpoints.filter((c) => c.fields.lastSequence <= 10);
      const cutAt = keepCps.at(-1)!.fields.lastSequence;
      const events = sim.events.filter((e) => e.sequence <= cutAt + 2); // two uncovered events left
      const r = await verifyProducerLog(input(sim, events, keepCps));
      expect(brief(r)).toEqual([
        { code: 'checkpoint_missing', sequences: { from: cutAt + 1, to: cutAt + 2 }, eventIds: events.slice(-2).map((e) => e.eventId) },
      ]);
      const bare = await verifyProducerLog(input(sim, sim.events.filter((e) => e.sequence <= cutAt), keepCps));
      expect(bare.findings.map((f) => f.code)).toEqual(['time_gap']);
    });

    it('Given events after the last checkpoint that are not due yet, When verified, Then they are pending, not findings', async () => {
      const sim = await LogSim.create({ producers: ['gw'], cadence: CADENCE, seed: 6 });
      for (let i = 0; i < 7; i++) await sim.emit('gw');
      const r = await verifyProducerLog(input(sim));
      expect(r.ok).toBe(true);
      expect(r.pending).toEqual([{ producer: 'gw', epoch: 'gw-e1', from: 6, to: 7, count: 2 }]);
      expect(r.stats.attestedEvents).toBe(5);
    });

    it('Given a crash that orphaned events after the last checkpoint, When verified, Then the orphans are `checkpoint_missing` in the old epoch', async () => {
      const sim = await LogSim.create({ producers: ['gw'], cadence: CADENCE, seed: 7 });
      for (let i = 0; i < 7; i++) await sim.emit('gw');
      await sim.restart('gw', 'crash');
      for (let i = 0; i < 5; i++) await sim.emit('gw');
      await sim.finish();
      const r = await verifyProducerLog(input(sim));
      expect(brief(r)).toEqual([
        { code: 'checkpoint_missing', sequences: { from: 6, to: 7 }, eventIds: sim.events.slice(5, 7).map((e) => e.eventId) },
      ]);
    });
  });

  it('Given a window in the middle of a long log, When only its checkpoints and events are supplied, Then it verifies', async () => {
    const sim = await richLog();
    // An auditor asks for every checkpoint whose window reaches into [fromUs, toUs].
    const fromUs = sim.checkpoints[6]!.fields.fromTimeUs + 1;
    const cps = sim.checkpoints.filter((c) => c.fields.toTimeUs >= fromUs);
    const covered = (e: VerifyEvent): boolean =>
      cps.some((c) => c.fields.producer === e.producer && c.fields.epoch === e.epoch && e.sequence >= c.fields.firstSequence && e.sequence <= c.fields.lastSequence);
    const r = await verifyProducerLog({ ...input(sim, sim.events.filter(covered), cps), window: { fromUs, toUs: sim.clock.us } });
    expect(brief(r)).toEqual([]);
  });

  it("Given roots: 'on-failure', When events are tampered, Then findings are the same as with every root recomputed", async () => {
    const sim = await richLog();
    const events = sim.events.slice();
    events[2] = flipPayloadByte(events[2]!);
    events.splice(9, 1);
    events.push(sim.events[14]!);
    const all = await verifyProducerLog(input(sim, events));
    const lazy = await verifyProducerLog(input(sim, events), { roots: 'on-failure' });
    expect(lazy.findings).toEqual(all.findings);
    expect(all.findings.map((f) => f.code).sort()).toEqual(['altered', 'deleted', 'inserted']);
  });

  it("Given a lying root over an intact chain, When roots: 'on-failure', Then it is not checked (the documented trade-off); with 'all' it is", async () => {
    const sim = await LogSim.create({ producers: ['gw'], cadence: CADENCE, seed: 11 });
    for (let i = 0; i < 4; i++) await sim.emit('gw');
    const honest = await sim.cut('gw');
    const lie = await signCheckpoint({ ...honest.fields, merkleRoot: sha256(new Uint8Array([2])) }, sim.keyring.signingKey());
    expect((await verifyProducerLog(input(sim, sim.events, [lie]), { roots: 'on-failure' })).ok).toBe(true);
    expect((await verifyProducerLog(input(sim, sim.events, [lie]))).findings.map((f) => f.code)).toEqual(['merkle_mismatch']);
  });

  it('Given events whose bytes are views of SharedArrayBuffers, When verified in workers, Then they are read in place with the same result', async () => {
    const sim = await richLog();
    const slab = new Uint8Array(new SharedArrayBuffer(sim.events.reduce((n, e) => n + e.bytes.length, 0)));
    let at = 0;
    const shared: VerifyEvent[] = sim.events.map((e) => {
      slab.set(e.bytes, at);
      const bytes = slab.subarray(at, at + e.bytes.length);
      at += e.bytes.length;
      return { ...e, bytes };
    });
    shared[5] = flipPayloadByte(shared[5]!); // one event outside shared memory, copied by the pool
    const a = await verifyProducerLog(input(sim, shared));
    const b = await verifyProducerLog(input(sim, shared), { workers: 2 });
    expect(b).toEqual(a);
    expect(a.findings.map((f) => f.code)).toEqual(['altered']);
  });

  it('Given events with given chain hashes (stored redactions), When verified in worker threads, Then they are checked with those hashes as in the calling thread', async () => {
    const sim = await richLog();
    const events = sim.events.slice();
    const i = pick(sim, 'gw-a', 3);
    const j = pick(sim, 'gw-b', 2);
    // i: other bytes standing in for the event under its true hash (accepted); j: a wrong given hash (altered).
    events[i] = { ...flipPayloadByte(events[i]!), hash: sha256(sim.events[i]!.bytes) };
    events[j] = { ...events[j]!, hash: sha256(new Uint8Array([7])) };
    const a = await verifyProducerLog(input(sim, events));
    const b = await verifyProducerLog(input(sim, events), { workers: 2 });
    expect(b).toEqual(a);
    expect(brief(a)).toEqual([{ code: 'altered', sequences: { from: 2, to: 2 }, eventIds: [events[j]!.eventId] }]);
  });

  it('Given verifications back to back on logs of different sizes, When the scratch memory is reused, Then each report is what a fresh run gives', async () => {
    const big = await richLog();
    const small = await LogSim.create({ producers: ['gw'], cadence: CADENCE, seed: 5 });
    for (let i = 0; i < 7; i++) await small.emit('gw');
    await small.finish();
    const tampered = small.events.slice();
    tampered[1] = flipPayloadByte(tampered[1]!);
    const alone = await verifyProducerLog(input(small, tampered));
    await verifyProducerLog(input(big));
    expect(await verifyProducerLog(input(small, tampered))).toEqual(alone);
    await verifyProducerLog(input(big), { workers: 1 });
    expect(await verifyProducerLog(input(small, tampered), { workers: 1 })).toEqual(alone);
    expect(brief(alone).map((f) => f.code)).toEqual(['altered']);
  });

  it('Given the same tampered log, When verified in worker threads, Then the report is identical to the in-thread one', async () => {
    const sim = await richLog();
    const events = sim.events.slice();
    events[3] = flipPayloadByte(events[3]!);
    events.splice(10, 1);
    const a = await verifyProducerLog(input(sim, events));
    const b = await verifyProducerLog(input(sim, events), { workers: 2 });
    expect(b).toEqual(a);
    expect(a.findings.length).toBe(2);
  });
});

describe('verifyProducerLog at scale', () => {
  it('Given 150,000 uncovered events and 1,000 checkpoints of which every other one is deleted, When verified, Then it completes with one finding per deletion', async () => {
    const ring = await Keyring.open(new InMemoryKeyStore(), { clock: { nowUs: () => 1 } });
    await ring.rotate();
    const key = ring.signingKey();
    // One producer checkpointing every event (1,000 checkpoints), then a long uncovered tail.
    const chain = (await import('./producer')).ProducerChain.start({ producer: 'big', epoch: 'e', startUs: 10 });
    const events: VerifyEvent[] = [];
    const cps: SignedCheckpoint[] = [];
    let t = 10;
    const add = (): void => {
      const meta = chain.nextMetadata();
      // Opaque bytes are enough here: they only need to carry the chain metadata into the hash.
      const bytes = new Uint8Array(40);
      bytes.set(meta.prevHash, 0);
      new DataView(bytes.buffer).setFloat64(32, meta.sequence);
      ++t;
      chain.append(bytes);
      events.push({ eventId: `b${meta.sequence}`, producer: 'big', epoch: 'e', sequence: meta.sequence, prevHash: meta.prevHash, timeUs: t, bytes });
    };
    for (let i = 0; i < 1000; i++) {
      add();
      cps.push(await chain.checkpoint(key, ++t));
    }
    for (let i = 0; i < 150_000; i++) add();
    const kept = cps.filter((_, k) => k % 2 === 0 || k === cps.length - 1);
    const r = await verifyProducerLog({ events, checkpoints: kept, jwks: ring.jwks(), maxGapUs: 1_000_000, window: { fromUs: 0, toUs: t } });
    expect(r.findings.filter((f) => f.code === 'checkpoint_missing')).toHaveLength(499);
    expect(r.findings).toHaveLength(499);
    expect(r.pending).toEqual([{ producer: 'big', epoch: 'e', from: 1001, to: 151_000, count: 150_000 }]);
  });
});

describe('verifyProducerLog under mass tampering', () => {
  it('Given every event of a 30,000-event range altered, When verified, Then one coalesced `altered` finding, without exhausting the stack', async () => {
    const ring = await Keyring.open(new InMemoryKeyStore(), { clock: { nowUs: () => 1 } });
    await ring.rotate();
    const chain = (await import('./producer')).ProducerChain.start({ producer: 'mass', epoch: 'e', startUs: 10 });
    const events: VerifyEvent[] = [];
    for (let i = 0; i < 30_000; i++) {
      const meta = chain.nextMetadata();
      const bytes = new Uint8Array(40);
      bytes.set(meta.prevHash, 0);
      new DataView(bytes.buffer).setFloat64(32, meta.sequence);
      chain.append(bytes);
      events.push({ eventId: `m${meta.sequence}`, producer: 'mass', epoch: 'e', sequence: meta.sequence, prevHash: meta.prevHash, timeUs: 11, bytes });
    }
    const cp = await chain.checkpoint(ring.signingKey(), 20);
    const tampered = events.map((e) => {
      const bytes = e.bytes.slice();
      bytes[39]! ^= 1;
      return { ...e, bytes };
    });
    const r = await verifyProducerLog({ events: tampered, checkpoints: [cp], jwks: ring.jwks(), maxGapUs: 1_000_000, window: { fromUs: 0, toUs: 20 } });
    expect(r.findings.map((f) => [f.code, f.sequences])).toEqual([['altered', { from: 1, to: 30_000 }]]);
    expect(r.findings[0]!.eventIds).toHaveLength(50);
  });
});

describe('verifyEventInclusion (one event, offline)', () => {
  it('Given an event, its audit path and its checkpoint, When checked with the JWKS alone, Then its position is proven', async () => {
    const sim = await richLog();
    const cp = sim.checkpoints.find((c) => c.fields.count >= 4)!;
    const inRange = sim.events.filter(
      (e) => e.producer === cp.fields.producer && e.epoch === cp.fields.epoch && e.sequence >= cp.fields.firstSequence && e.sequence <= cp.fields.lastSequence,
    );
    const target = inRange[2]!;
    const proof = buildInclusionProof(inRange.map((e) => sha256(e.bytes)), cp.fields, target.sequence);
    const portable = JSON.parse(JSON.stringify({ proof, jws: cp.jws, jwks: sim.jwks() })) as { proof: typeof proof; jws: string; jwks: ReturnType<LogSim['jwks']> };
    const ok = await verifyEventInclusion(target.bytes, portable.proof, portable.jws, portable.jwks);
    expect(ok).toMatchObject({ ok: true, producer: cp.fields.producer, sequence: target.sequence });

    expect(await verifyEventInclusion(flipPayloadByte(target).bytes, proof, cp, sim.jwks())).toMatchObject({ ok: false, code: 'merkle_mismatch' });
    expect(await verifyEventInclusion(target.bytes, { ...proof, sequence: target.sequence + 1 }, cp, sim.jwks())).toMatchObject({ ok: false });
    expect(await verifyEventInclusion(target.bytes, proof, cp, { keys: [] })).toMatchObject({ ok: false, code: 'unknown_key' });
    expect(await verifyEventInclusion(target.bytes, { ...proof, sequence: cp.fields.lastSequence + 1 }, cp, sim.jwks())).toMatchObject({
      ok: false,
      code: 'not_covered',
    });
  });
});
