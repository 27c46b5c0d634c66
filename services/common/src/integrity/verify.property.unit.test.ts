/**
 * Properties over random logs: several producers emitting, idling (empty checkpoints), rotating
 * keys, resuming and restarting. Every log ends with a checkpoint per producer (some closing their
 * epoch), so every event is attested; each tamper is then named at exactly the event touched.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sha256 } from './hash';
import { LogSim, decodeTestEvent, encodeTestEvent, payloadOffset } from './testkit';
import { verifyProducerLog } from './verify';
import type { VerifyEvent, VerifyReport } from './verify';

type Op =
  | { kind: 'emit'; p: number; us: number }
  | { kind: 'tick'; us: number }
  | { kind: 'rotate' }
  | { kind: 'restart'; p: number; how: 'resume' | 'graceful' };

const PRODUCERS = ['p0', 'p1', 'p2'];

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 12, arbitrary: fc.record({ kind: fc.constant('emit' as const), p: fc.nat(2), us: fc.nat(20_000) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('tick' as const), us: fc.integer({ min: 1, max: 2_500_000 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'rotate' as const }) },
  {
    weight: 1,
    arbitrary: fc.record({ kind: fc.constant('restart' as const), p: fc.nat(2), how: fc.constantFrom('resume' as const, 'graceful' as const) }),
  },
);

const logArb = fc.record({
  ops: fc.array(opArb, { minLength: 1, maxLength: 50 }).filter((ops) => ops.some((o) => o.kind === 'emit')),
  everyEvents: fc.integer({ min: 1, max: 8 }),
  closeMask: fc.nat(7),
  seed: fc.nat(),
});

type LogSpec = typeof logArb extends fc.Arbitrary<infer T> ? T : never;

async function build(spec: LogSpec): Promise<LogSim> {
  const sim = await LogSim.create({
    producers: PRODUCERS,
    cadence: { everyEvents: spec.everyEvents, everyMs: 1000 },
    seed: spec.seed,
    payloadBytes: 24,
  });
  for (const op of spec.ops) {
    if (op.kind === 'emit') {
      await sim.tick(op.us);
      await sim.emit(PRODUCERS[op.p]!);
    } else if (op.kind === 'tick') await sim.tick(op.us);
    else if (op.kind === 'rotate') await sim.rotateKey();
    else await sim.restart(PRODUCERS[op.p]!, op.how);
  }
  await sim.finish((p) => ((spec.closeMask >> PRODUCERS.indexOf(p)) & 1) === 1);
  return sim;
}

function verify(sim: LogSim, events: VerifyEvent[] = sim.events, jwks = sim.jwks()): Promise<VerifyReport> {
  return verifyProducerLog({
    events,
    checkpoints: sim.checkpoints,
    jwks,
    maxGapUs: sim.maxGapUs,
    window: { fromUs: 0, toUs: sim.clock.us },
  });
}

const RUNS = { numRuns: 100 };

describe('verification properties over random logs', () => {
  it('intact logs always verify, with every event attested and no false time gap during idle periods', async () => {
    await fc.assert(
      fc.asyncProperty(logArb, async (spec) => {
        const sim = await build(spec);
        const r = await verify(sim);
        expect(r.findings).toEqual([]);
        expect(r.pending).toEqual([]);
        expect(r.stats.attestedEvents).toBe(sim.events.length);
      }),
      RUNS,
    );
  });

  it('a single altered payload byte is one `altered` finding at exactly that event', async () => {
    await fc.assert(
      fc.asyncProperty(logArb, fc.nat(), fc.nat(), fc.integer({ min: 1, max: 255 }), async (spec, which, at, mask) => {
        const sim = await build(spec);
        const k = which % sim.events.length;
        const ev = sim.events[k]!;
        const bytes = ev.bytes.slice();
        const off = payloadOffset(bytes);
        bytes[off + (at % (bytes.length - off))]! ^= mask;
        const events = sim.events.slice();
        events[k] = decodeTestEvent(bytes);
        const r = await verify(sim, events);
        expect(r.findings.map((f) => [f.code, f.sequences, f.eventIds])).toEqual([
          ['altered', { from: ev.sequence, to: ev.sequence }, [ev.eventId]],
        ]);
      }),
      RUNS,
    );
  });

  it("a rewritten prevHash field is one `altered` finding at exactly that event", async () => {
    await fc.assert(
      fc.asyncProperty(logArb, fc.nat(), fc.uint8Array({ minLength: 32, maxLength: 32 }), async (spec, which, forgedPrev) => {
        const sim = await build(spec);
        const k = which % sim.events.length;
        const ev = sim.events[k]!;
        fc.pre(Buffer.compare(Buffer.from(forgedPrev), Buffer.from(ev.prevHash)) !== 0);
        const payload = ev.bytes.subarray(payloadOffset(ev.bytes));
        const events = sim.events.slice();
        events[k] = decodeTestEvent(encodeTestEvent({ ...ev, epoch: String(ev.epoch), prevHash: forgedPrev }, payload));
        const r = await verify(sim, events);
        expect(r.findings.map((f) => [f.code, f.sequences, f.eventIds])).toEqual([
          ['altered', { from: ev.sequence, to: ev.sequence }, [ev.eventId]],
        ]);
      }),
      RUNS,
    );
  });

  it('a single deleted event is one `deleted` finding at exactly its sequence', async () => {
    await fc.assert(
      fc.asyncProperty(logArb, fc.nat(), async (spec, which) => {
        const sim = await build(spec);
        const k = which % sim.events.length;
        const ev = sim.events[k]!;
        const r = await verify(sim, sim.events.filter((_, i) => i !== k));
        expect(r.findings.map((f) => [f.code, f.producer, f.epoch, f.sequences])).toEqual([
          ['deleted', ev.producer, ev.epoch, { from: ev.sequence, to: ev.sequence }],
        ]);
      }),
      RUNS,
    );
  });

  it('a single inserted event (forged or replayed, anywhere in storage) is one `inserted` finding naming it', async () => {
    await fc.assert(
      fc.asyncProperty(
        logArb,
        fc.nat(),
        fc.nat(),
        fc.constantFrom('forged', 'chained', 'replay', 'after-close' as const),
        async (spec, which, where, kind) => {
          const sim = await build(spec);
          const victim = sim.events[which % sim.events.length]!;
          let extra: VerifyEvent;
          if (kind === 'replay') extra = victim;
          else if (kind === 'after-close') {
            const closing = sim.checkpoints.filter((c) => c.fields.closed);
            fc.pre(closing.length > 0);
            const c = closing[which % closing.length]!;
            extra = decodeTestEvent(
              encodeTestEvent(
                { eventId: 'x-1', producer: c.fields.producer, epoch: c.fields.epoch, sequence: c.fields.lastSequence + 1, prevHash: c.fields.lastHash, timeUs: c.fields.toTimeUs },
                new Uint8Array(3),
              ),
            );
          } else {
            const prevHash = kind === 'chained' ? victim.prevHash : sha256(new Uint8Array([which & 255]));
            extra = decodeTestEvent(
              encodeTestEvent({ ...victim, epoch: String(victim.epoch), eventId: 'x-1', prevHash }, new TextEncoder().encode(`forged ${which}`)),
            );
          }
          const events = sim.events.slice();
          events.splice(where % (events.length + 1), 0, extra);
          const r = await verify(sim, events);
          expect(r.findings.map((f) => [f.code, f.sequences, f.eventIds])).toEqual([
            ['inserted', { from: extra.sequence, to: extra.sequence }, [extra.eventId]],
          ]);
        },
      ),
      RUNS,
    );
  });

  it('swapping two events of one producer epoch in storage gives only `reordered` findings, naming only those two', async () => {
    await fc.assert(
      fc.asyncProperty(logArb, fc.nat(), fc.nat(), async (spec, a, b) => {
        const sim = await build(spec);
        const i = a % sim.events.length;
        const ev = sim.events[i]!;
        const same = sim.events.map((e, k) => [e, k] as const).filter(([e, k]) => k !== i && e.producer === ev.producer && e.epoch === ev.epoch);
        fc.pre(same.length > 0);
        const j = same[b % same.length]![1];
        const events = sim.events.slice();
        [events[i], events[j]] = [events[j]!, events[i]!];
        const r = await verify(sim, events);
        expect(r.findings.length).toBeGreaterThan(0);
        expect(r.findings.every((f) => f.code === 'reordered')).toBe(true);
        const named = new Set(r.findings.flatMap((f) => f.eventIds));
        for (const id of named) expect([sim.events[i]!.eventId, sim.events[j]!.eventId]).toContain(id);
      }),
      RUNS,
    );
  });

  it('key rotation mid-log verifies with the JWKS history; a key missing from it is `unknown_key` on exactly its checkpoints', async () => {
    await fc.assert(
      fc.asyncProperty(logArb, fc.nat(), async (spec, which) => {
        const sim = await build(spec);
        const kids = [...new Set(sim.checkpoints.map((c) => c.fields.keyId))];
        const kid = kids[which % kids.length]!;
        const jwks = { keys: sim.jwks().keys.filter((k) => k.kid !== kid) };
        const r = await verify(sim, sim.events, jwks);
        expect(new Set(r.findings.map((f) => f.code))).toEqual(new Set(['unknown_key']));
        expect(r.findings).toHaveLength(sim.checkpoints.filter((c) => c.fields.keyId === kid).length);
      }),
      RUNS,
    );
  });

  it('several tampers at once (alter, delete, forge, drop a checkpoint) never verify as ok', async () => {
    const tamper = fc.record({ kind: fc.constantFrom('alter', 'delete', 'forge', 'drop-checkpoint' as const), at: fc.nat() });
    await fc.assert(
      fc.asyncProperty(logArb, fc.array(tamper, { minLength: 1, maxLength: 4 }), async (spec, tampers) => {
        const sim = await build(spec);
        let events = sim.events.slice();
        let checkpoints = sim.checkpoints.slice();
        for (const t of tampers) {
          if (events.length === 0) break;
          const k = t.at % events.length;
          const ev = events[k]!;
          if (t.kind === 'alter') {
            const b = ev.bytes.slice();
            b[b.length - 1]! ^= 1;
            events[k] = decodeTestEvent(b);
          } else if (t.kind === 'delete') events = events.filter((_, i) => i !== k);
          else if (t.kind === 'forge') {
            events.push(decodeTestEvent(encodeTestEvent({ ...ev, epoch: String(ev.epoch), eventId: `forged-${k}` }, Uint8Array.of(k & 255, 7))));
          } else {
            // Only checkpoints something follows: dropping a producer's last one leaves its tail
            // pending within the cadence, which is the documented limit of tail verification.
            const followed = checkpoints.filter((c) => checkpoints.some((d) => Buffer.compare(Buffer.from(d.fields.prevCheckpointHash), Buffer.from(c.hash)) === 0));
            if (followed.length > 0) {
              const gone = followed[t.at % followed.length]!;
              checkpoints = checkpoints.filter((c) => c !== gone);
            }
          }
        }
        // Two flips of the same bit cancel out: require an actual change of content.
        const changed =
          events.length !== sim.events.length ||
          events.some((e, i) => Buffer.compare(Buffer.from(e.bytes), Buffer.from(sim.events[i]!.bytes)) !== 0) ||
          checkpoints.length !== sim.checkpoints.length;
        fc.pre(changed);
        const r = await verifyProducerLog({ events, checkpoints, jwks: sim.jwks(), maxGapUs: sim.maxGapUs, window: { fromUs: 0, toUs: sim.clock.us } });
        expect(r.ok).toBe(false);
      }),
      RUNS,
    );
  });
});
