import { CompactSign, compactVerify, createLocalJWKSet, type JSONWebKeySet } from 'jose';
import type { Logger } from 'pino';
import { AttestError } from '../errors';
import type { Keyring } from '../integrity';
import type { EventLog, LogConsumer } from '../log';
import { controlKey, controlMessageSchema, type ControlMessage } from './messages';

/**
 * The control channel: signed control messages on an EventLog (the Kafka control topic in
 * distributed mode, a file log of its own in embedded mode: same code, only the log differs).
 *
 * Why signed: a control message releases held requests and lifts suspensions, so anyone able to
 * write to the topic could otherwise approve their own request. Each message is a compact JWS
 * (EdDSA) by the deciding producer's evidence key; subscribers accept only keys in their trust set
 * and drop (and log) everything else.
 */

export type ControlErrorCode = 'control_invalid_message' | 'control_untrusted_signature' | 'control_unavailable';

export class ControlError extends AttestError<ControlErrorCode> {}

const TYP = 'attest-control+jws';
const MAX_MESSAGE_BYTES = 16 * 1024;
const enc = new TextEncoder();
const dec = new TextDecoder();

export class ControlPublisher {
  constructor(
    private readonly log: EventLog,
    private readonly keyring: Keyring,
  ) {}

  /** Signs and appends; resolves once the message is durable on the control log. */
  async publish(msg: ControlMessage): Promise<void> {
    const parsed = controlMessageSchema.safeParse(msg);
    if (!parsed.success) {
      throw new ControlError('control_invalid_message', `control message rejected: ${parsed.error.issues[0]?.message ?? 'invalid'}`, {
        where: parsed.error.issues[0]?.path.join('.') ?? 'message',
        fix: 'this is a bug in the component publishing the message',
      });
    }
    const key = this.keyring.signingKey();
    const jws = await new CompactSign(enc.encode(JSON.stringify(parsed.data)))
      .setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: TYP })
      .sign(key.privateKey);
    try {
      await this.log.append([{ key: controlKey(parsed.data), value: enc.encode(jws), headers: { 'attest-control': parsed.data.type } }]);
    } catch (err) {
      throw new ControlError('control_unavailable', 'the control log did not accept the message', {
        retriable: true,
        cause: err,
        fix: 'check the control log (Kafka control topic or data directory); the decision is not in force until published',
      });
    }
  }
}

/** Where a subscriber gets the public keys it trusts; called again when an unknown kid arrives. */
export type TrustSource = () => Promise<JSONWebKeySet>;

export interface SubscriberOptions {
  log: EventLog;
  /** Unique per subscriber instance: every gateway reads the whole channel. */
  group: string;
  trust: TrustSource;
  onMessage: (msg: ControlMessage) => void;
  logger: Logger;
  /** Longest a poll waits; bounds how fast stop() returns. Default 500 ms. */
  pollWaitMs?: number;
}

/**
 * Reads the control log from its start and hands each verified message to `onMessage`.
 * `start()` resolves once everything that was in the log when it was called has been applied:
 * a gateway must not serve traffic before it knows every suspension in force.
 */
export class ControlSubscriber {
  private consumer: LogConsumer | undefined;
  private loop: Promise<void> | undefined;
  private stopped = false;
  private keys: ReturnType<typeof createLocalJWKSet> | undefined;
  private lastTrustRefresh = 0;
  /** Messages applied and rejected, for metrics and tests. */
  readonly counts = { applied: 0, rejected: 0 };

  constructor(private readonly opts: SubscriberOptions) {}

  async start(): Promise<void> {
    const { log } = this.opts;
    const ends = await log.endOffsets();
    // Ephemeral: a subscriber reads the whole control log on every start and never commits.
    this.consumer = await log.consumer(this.opts.group, { startFrom: 'earliest', ephemeral: true });
    const seen = ends.map(() => 0);
    const caughtUp = () => ends.every((end, p) => (seen[p] ?? 0) >= end);
    while (!caughtUp()) {
      const batch = await this.consumer.poll(1000, 1000);
      if (batch.length === 0) {
        if (this.stopped) return;
        // An empty poll delivered everything durable when it started: caught up, also where
        // compaction or retention left a partition without the records `seen` waits for.
        break;
      }
      for (const r of batch) {
        seen[r.partition] = r.offset + 1;
        await this.handle(r.value, `${r.partition}:${r.offset}`);
      }
    }
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    const wait = this.opts.pollWaitMs ?? 500;
    while (!this.stopped) {
      let batch;
      try {
        batch = await this.consumer!.poll(1000, wait);
      } catch (err) {
        if (this.stopped) return;
        this.opts.logger.error({ code: (err as { code?: string }).code }, 'control channel poll failed; retrying');
        await new Promise((r) => setTimeout(r, wait));
        continue;
      }
      for (const r of batch) await this.handle(r.value, `${r.partition}:${r.offset}`);
    }
  }

  private async handle(value: Uint8Array, where: string): Promise<void> {
    try {
      const msg = await this.verify(value);
      this.counts.applied++;
      this.opts.onMessage(msg);
    } catch (err) {
      this.counts.rejected++;
      // Never the message itself: it may be an attacker's payload.
      this.opts.logger.error({ code: (err as { code?: string }).code, where }, 'control message rejected');
    }
  }

  private async verify(value: Uint8Array): Promise<ControlMessage> {
    if (value.byteLength > MAX_MESSAGE_BYTES) {
      throw new ControlError('control_invalid_message', 'control message too large');
    }
    const jws = dec.decode(value);
    let result;
    try {
      result = await compactVerify(jws, await this.keySet(false), { algorithms: ['EdDSA'] });
    } catch (err) {
      if ((err as { code?: string }).code !== 'ERR_JWKS_NO_MATCHING_KEY') throw untrusted(err);
      try {
        result = await compactVerify(jws, await this.keySet(true), { algorithms: ['EdDSA'] });
      } catch (again) {
        throw untrusted(again);
      }
    }
    if (result.protectedHeader.typ !== TYP) throw new ControlError('control_invalid_message', 'not a control message');
    let body: unknown;
    try {
      body = JSON.parse(dec.decode(result.payload));
    } catch {
      throw new ControlError('control_invalid_message', 'control message payload is not JSON');
    }
    const parsed = controlMessageSchema.safeParse(body);
    if (!parsed.success) throw new ControlError('control_invalid_message', 'control message does not match its schema');
    return parsed.data;
  }

  /** Trusted keys; reloaded on an unknown kid at most once a second (a flood of forged kids cannot hammer the source). */
  private async keySet(refresh: boolean): Promise<ReturnType<typeof createLocalJWKSet>> {
    const now = Date.now();
    if (this.keys === undefined || (refresh && now - this.lastTrustRefresh >= 1000)) {
      this.lastTrustRefresh = now;
      this.keys = createLocalJWKSet(await this.opts.trust());
    }
    return this.keys;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.consumer?.close();
    await this.loop;
  }
}

function untrusted(cause: unknown): ControlError {
  return new ControlError('control_untrusted_signature', 'control message signature does not verify against a trusted key', {
    cause,
    fix: 'only Attest processors and the console may publish on the control channel; check who writes to it',
  });
}
