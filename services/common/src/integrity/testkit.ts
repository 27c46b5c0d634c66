/**
 * Test and benchmark support (not exported from index.ts): a stand-in codec and a simulator that
 * drives the real ProducerChain, Keyring and checkpoint cadence with a fake clock, producing the
 * events and checkpoints a store would hold.
 *
 * The stand-in encoding is `JSON metadata line` + `\n` + payload bytes: like the real Avro codec,
 * the chain metadata lives inside the hashed bytes, so editing it changes the event's hash.
 */
import { randomBytes } from 'node:crypto';
import type { SignedCheckpoint } from './checkpoint';
import { toBase64Url } from './hash';
import { InMemoryKeyStore, Keyring } from './keyring';
import type { Clock } from './keyring';
import { ProducerChain } from './producer';
import { checkpointDue, maxGapUsFor } from './scheduler';
import type { Cadence } from './scheduler';
import type { VerifyEvent } from './verify';

export interface TestMeta {
  readonly eventId: string;
  readonly producer: string;
  readonly epoch: string;
  readonly sequence: number;
  readonly prevHash: Uint8Array;
  readonly timeUs: number;
}

const NL = 0x0a;

export function encodeTestEvent(meta: TestMeta, payload: Uint8Array): Uint8Array {
  const head = Buffer.from(
    JSON.stringify({
      id: meta.eventId,
      p: meta.producer,
      e: meta.epoch,
      s: meta.sequence,
      h: toBase64Url(meta.prevHash),
      t: meta.timeUs,
    }),
  );
  const out = new Uint8Array(head.length + 1 + payload.length);
  out.set(head, 0);
  out[head.length] = NL;
  out.set(payload, head.length + 1);
  return out;
}

/** Decodes like the codec would: every VerifyEvent field comes from the bytes. */
export function decodeTestEvent(bytes: Uint8Array): VerifyEvent {
  const nl = bytes.indexOf(NL);
  const m = JSON.parse(Buffer.from(bytes.subarray(0, nl)).toString('utf8')) as {
    id: string;
    p: string;
    e: string;
    s: number;
    h: string;
    t: number;
  };
  return {
    eventId: m.id,
    producer: m.p,
    epoch: m.e,
    sequence: m.s,
    prevHash: new Uint8Array(Buffer.from(m.h, 'base64url')),
    timeUs: m.t,
    bytes,
  };
}

/** Offset of the payload inside a stand-in event. */
export function payloadOffset(bytes: Uint8Array): number {
  return bytes.indexOf(NL) + 1;
}

export class FakeClock implements Clock {
  constructor(public us: number) {}
  nowUs(): number {
    return this.us;
  }
}

interface ProducerSim {
  chain: ProducerChain;
  eventsSince: number;
  lastCpUs: number;
  last: SignedCheckpoint | undefined;
  /** Events after `last`, for resume. */
  tail: VerifyEvent[];
  epochNo: number;
  epochStartUs: number;
}

export interface SimOptions {
  readonly producers: readonly string[];
  readonly cadence: Cadence;
  readonly startUs?: number;
  /** Payload size in bytes (default 64). */
  readonly payloadBytes?: number;
  /** Deterministic payloads from this seed instead of random bytes. */
  readonly seed?: number;
}

/**
 * A store's view of a few producers: `events` in storage order and `checkpoints`, cut on the
 * cadence (every N events, and on time even when idle) exactly as the emitter pipeline would.
 */
export class LogSim {
  readonly events: VerifyEvent[] = [];
  readonly checkpoints: SignedCheckpoint[] = [];
  readonly clock: FakeClock;
  readonly cadence: Cadence;
  private readonly sims = new Map<string, ProducerSim>();
  private idCounter = 0;
  private seed: number;

  private constructor(
    readonly keyring: Keyring,
    opts: SimOptions,
  ) {
    this.clock = new FakeClock(opts.startUs ?? 1_700_000_000_000_000);
    this.cadence = opts.cadence;
    this.payloadBytes = opts.payloadBytes ?? 64;
    this.seed = opts.seed ?? -1;
  }

  private readonly payloadBytes: number;

  static async create(opts: SimOptions): Promise<LogSim> {
    const keyring = await Keyring.open(new InMemoryKeyStore(), { clock: { nowUs: () => sim.clock.nowUs() } });
    const sim: LogSim = new LogSim(keyring, opts);
    await keyring.rotate();
    for (const p of opts.producers) sim.startProducer(p, undefined);
    return sim;
  }

  get maxGapUs(): number {
    return maxGapUsFor(this.cadence);
  }

  private startProducer(producer: string, previous: SignedCheckpoint | undefined, epochNo = 1): void {
    const epoch = `${producer}-e${epochNo}`;
    const chain = ProducerChain.start({
      producer,
      epoch,
      startUs: this.clock.nowUs(),
      ...(previous === undefined ? {} : { previous }),
    });
    this.sims.set(producer, {
      chain,
      eventsSince: 0,
      lastCpUs: this.clock.nowUs(),
      last: previous,
      tail: [],
      epochNo,
      epochStartUs: this.clock.nowUs(),
    });
  }

  private sim(producer: string): ProducerSim {
    const s = this.sims.get(producer);
    if (s === undefined) throw new Error(`unknown producer ${producer}`);
    return s;
  }

  private payload(): Uint8Array {
    if (this.seed < 0) return randomBytes(this.payloadBytes);
    const out = new Uint8Array(this.payloadBytes);
    for (let i = 0; i < out.length; i++) {
      this.seed = (this.seed * 1103515245 + 12345) >>> 0;
      out[i] = this.seed >>> 24;
    }
    return out;
  }

  /** Emits one event from `producer`, then a checkpoint if the event count makes one due. */
  async emit(producer: string): Promise<VerifyEvent> {
    const s = this.sim(producer);
    const meta = s.chain.nextMetadata();
    const state = s.chain.state;
    const bytes = encodeTestEvent(
      {
        eventId: `ev-${++this.idCounter}`,
        producer,
        epoch: state.epoch,
        sequence: meta.sequence,
        prevHash: meta.prevHash,
        timeUs: this.clock.nowUs(),
      },
      this.payload(),
    );
    s.chain.append(bytes);
    const ev = decodeTestEvent(bytes);
    this.events.push(ev);
    s.tail.push(ev);
    s.eventsSince++;
    if (checkpointDue(this.cadence, { eventsSinceCheckpoint: s.eventsSince, lastCheckpointUs: s.lastCpUs }, this.clock.nowUs()) === 'events') {
      await this.cut(producer);
    }
    return ev;
  }

  /** Advances time, cutting every idle checkpoint that falls due on the way, at its due time. */
  async tick(us: number): Promise<void> {
    const target = this.clock.us + us;
    for (;;) {
      let nextDue = Infinity;
      let who: string | undefined;
      for (const [p, s] of this.sims) {
        if (s.chain.isClosed) continue;
        const due = s.lastCpUs + this.cadence.everyMs * 1000;
        if (due < nextDue) {
          nextDue = due;
          who = p;
        }
      }
      if (who === undefined || nextDue > target) break;
      this.clock.us = Math.max(this.clock.us, nextDue);
      await this.cut(who);
    }
    this.clock.us = target;
  }

  async cut(producer: string, opts: { closed?: boolean } = {}): Promise<SignedCheckpoint> {
    const s = this.sim(producer);
    const cp = await s.chain.checkpoint(this.keyring.signingKey(), this.clock.nowUs(), opts);
    this.checkpoints.push(cp);
    s.last = cp;
    s.tail = [];
    s.eventsSince = 0;
    s.lastCpUs = cp.fields.toTimeUs;
    return cp;
  }

  async rotateKey(): Promise<void> {
    await this.keyring.rotate();
  }

  /**
   * Restarts a producer. 'resume' continues the epoch from its last checkpoint plus the events
   * after it (read back from the log); 'graceful' closes the epoch and starts a new one linked to
   * the closing checkpoint; 'crash' starts a new epoch linked to the last checkpoint, orphaning
   * whatever came after it.
   */
  async restart(producer: string, how: 'resume' | 'graceful' | 'crash'): Promise<void> {
    const s = this.sim(producer);
    if (how === 'resume') {
      const { epoch } = s.chain.state;
      const chain =
        s.last !== undefined && s.last.fields.epoch === epoch
          ? ProducerChain.resume({ last: s.last, tail: s.tail })
          : ProducerChain.resume({
              epochStart: { producer, epoch, startUs: s.epochStartUs, ...(s.last === undefined ? {} : { previous: s.last }) },
              tail: s.tail,
            });
      this.sims.set(producer, { ...s, chain });
      return;
    }
    const previous = how === 'graceful' ? await this.cut(producer, { closed: true }) : s.last;
    this.startProducer(producer, previous, s.epochNo + 1);
  }

  /** Cuts a final checkpoint for every producer (closing some), so every event is covered. */
  async finish(close: (producer: string) => boolean = () => false): Promise<void> {
    for (const [p, s] of this.sims) {
      if (!s.chain.isClosed) await this.cut(p, { closed: close(p) });
    }
  }

  jwks() {
    return this.keyring.jwks();
  }
}
