/**
 * Realistic synthetic evidence for store tests and benchmarks (not exported from index.ts).
 *
 * Events are built exactly as producers build them: `newEvent`, `chainEvent` with a per-producer
 * hash chain (sequence + SHA-256 of the previous event's bytes), the real Avro codec (which also
 * refuses any PAN), then `toStoredEvent`. The mix follows sessions through the gateway: login,
 * session start, exchanges (request received → policy decided → masked → forwarded → response
 * completed, or blocked), database statements, session end; with auth failures, admin changes, key
 * rotations, auditor reads, risk findings, approvals and checkpoints around them. Seeded, so a
 * test can compute its expectations from the generated events (the oracle) and compare them with
 * what the engine answers.
 */
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  chainEvent,
  encodeEvent,
  newEvent,
  type Actor,
  type AttestEvent,
  type Correlation,
  type EventParts,
  type EventType,
  type MaskHit,
  type MaskingSummary,
  type Outcome,
  type Source,
  type Target,
} from '../events';
import { sha256 } from '../integrity/hash';
import { toStoredEvent, type StoredEvent } from './rows';

export interface GenerateOptions {
  /** Number of events to generate (exactly). */
  readonly count: number;
  readonly seed?: number;
  /**
   * Time of the first event, µs since the epoch. Default: midnight UTC two days ago. Relative to
   * now on purpose: the store's TTL counts from the wall clock, and events from a fixed date would
   * one day be older than the retention and vanish in a merge.
   */
  readonly startUs?: number;
  /** Events are spread evenly over this span. Default one hour. */
  readonly spanUs?: number;
  readonly tenants?: readonly string[];
  /** Number of gateway producers (each with its own chain). Default 2. */
  readonly gateways?: number;
  /** Fraction of exchanges whose request carried card data. Default 0.1. */
  readonly cardRate?: number;
  /** Number of distinct cards the card-bearing exchanges draw from. Default 50. */
  readonly cardPool?: number;
  /** HMAC key for PAN fingerprints (its id is `PAN_HMAC_KEY_ID`). */
  readonly hmacKey?: string;
}

export interface GeneratedEvent {
  readonly event: AttestEvent;
  readonly bytes: Buffer;
  readonly hash: Uint8Array;
  readonly stored: StoredEvent;
}

export const PAN_HMAC_KEY_ID = 'pan-hmac-test-1';
const DEFAULT_HMAC_KEY = 'attest-store-test-hmac-key';
/** Midnight UTC two days ago, in µs. */
export function defaultStartUs(): number {
  const dayMs = 86_400_000;
  return (Math.floor(Date.now() / dayMs) - 2) * dayMs * 1000;
}
const IDP = 'https://idp.example.com';

/** The fingerprint the generator gives card number `index` of its pool: what an investigator looks up. */
export function cardFingerprint(index: number, hmacKey: string = DEFAULT_HMAC_KEY): Buffer {
  // The HMAC is over a label, not digits: no card number exists anywhere, not even in tests.
  return createHmac('sha256', hmacKey).update(`card-${index}`).digest();
}

/** BIN and last four of pool card `index` (plausible, consistent per card). */
export function cardDisplay(index: number): { bin: string; last4: string } {
  const bins = ['411111', '550000', '378282', '601100', '353011'];
  return { bin: bins[index % bins.length] ?? '411111', last4: String(1000 + ((index * 7919) % 9000)).slice(-4) };
}

/** Seeded PRNG (mulberry32): fast and reproducible across runs. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function uuidv7At(ms: number, rand: () => number): string {
  const b = Buffer.allocUnsafe(16);
  b.writeUIntBE(ms, 0, 6);
  for (let i = 6; i < 16; i++) b[i] = Math.floor(rand() * 256);
  b[6] = 0x70 | ((b[6] ?? 0) & 0x0f);
  b[8] = 0x80 | ((b[8] ?? 0) & 0x3f);
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

interface Chain {
  readonly id: string;
  readonly epoch: string;
  sequence: number;
  prevHash: Uint8Array;
  sinceCheckpoint: number;
  firstUncheckpointed: number;
}

interface Session {
  readonly id: string;
  readonly actor: Actor;
  readonly source: Source;
  readonly target: Target;
  readonly tenantId: string;
  readonly gateway: Chain;
  readonly db: boolean;
  requestsLeft: number;
  requests: number;
  readonly startedUs: number;
}

const ok: Outcome = { result: 'success', status: 200, reason: null };
const okInternal: Outcome = { result: 'success', status: null, reason: null };
const noHits: MaskingSummary = { cardDataPresent: false, totalHits: 0, stats: [] };
const internal: Source = { address: 'internal', userAgent: null };
const system = (component: string): Actor => ({
  subject: `attest:${component}`,
  issuer: 'attest',
  clientId: null,
  groups: [],
  kind: 'system',
  onBehalfOf: null,
  dev: false,
});
const attestTarget = (component: string, resource: string): Target => ({ protocol: 'internal', service: `attest:${component}`, resource, model: null });

const MODELS = ['claude-sonnet-4-5', 'claude-haiku-4-5', 'claude-opus-4-1'] as const;
const PROSE = [
  'Here is the refund summary you asked for. Three orders were refunded in full.',
  'The customer record shows the card ending in {last4} (BIN {bin}); the charge was declined.',
  'I rewrote the migration so that the index is created concurrently and the lock is short.',
  'Totals by region: EMEA 41,220.10; AMER 88,104.00; APAC 19,877.35 (all in USD).',
  'The failing test expects the order id 20251125-000481 to be present after the retry.',
] as const;

/**
 * Generates exactly `count` events in time order. Deterministic for a given options object.
 * Producer chains start with `audit.started` (sequence 1, linked to 32 zero bytes) and carry an
 * `integrity.checkpoint` (sequence 0) every 256 chained events.
 */
export function* generateEvents(opts: GenerateOptions): Generator<GeneratedEvent> {
  const rand = prng(opts.seed ?? 1);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const startUs = opts.startUs ?? defaultStartUs();
  const stepUs = Math.max(1, Math.floor((opts.spanUs ?? 3_600_000_000) / Math.max(1, opts.count)));
  const tenants = opts.tenants ?? ['acme', 'globex'];
  const cardRate = opts.cardRate ?? 0.1;
  const cardPool = opts.cardPool ?? 50;
  const hmacKey = opts.hmacKey ?? DEFAULT_HMAC_KEY;
  const fingerprints = Array.from({ length: cardPool }, (_, i) => cardFingerprint(i, hmacKey));

  let nowUs = startUs;
  let emitted = 0;
  const queue: GeneratedEvent[] = [];

  const newChain = (id: string): Chain => ({
    id,
    epoch: uuidv7At(Math.floor(startUs / 1000), rand),
    sequence: 0,
    prevHash: new Uint8Array(32),
    sinceCheckpoint: 0,
    firstUncheckpointed: 1,
  });
  const gateways = Array.from({ length: opts.gateways ?? 2 }, (_, i) => newChain(`gateway-${i + 1}`));
  const consoleChain = newChain('console-1');
  const processorChain = newChain('processor-1');
  const chains = [...gateways, consoleChain, processorChain];
  const started = new Set<Chain>();

  const emit = <K extends EventType>(type: K, parts: EventParts<K>, chain: Chain): AttestEvent<K> => {
    const timeUs = nowUs;
    const unchained = newEvent(type, parts, {
      producer: { id: chain.id, epoch: chain.epoch },
      clock: { nowUs: () => timeUs },
      idGen: () => uuidv7At(Math.floor(timeUs / 1000), rand),
    });
    const checkpoint = type === 'integrity.checkpoint';
    const event = chainEvent(unchained, checkpoint ? { sequence: 0, prevHash: new Uint8Array(32) } : { sequence: chain.sequence + 1, prevHash: chain.prevHash });
    // A generic AttestEvent<K> is one member of the union; TypeScript cannot see that on its own.
    const any = event as unknown as AttestEvent;
    const bytes = encodeEvent(any);
    const hash = sha256(bytes);
    if (!checkpoint) {
      chain.sequence += 1;
      chain.prevHash = hash;
      chain.sinceCheckpoint += 1;
    }
    queue.push({ event: any, bytes, hash, stored: toStoredEvent(any, bytes, hash) });
    return event;
  };

  const ensureStarted = (chain: Chain, tenantId: string): void => {
    if (started.has(chain)) return;
    started.add(chain);
    emit(
      'audit.started',
      {
        tenantId,
        actor: system(chain.id.replace(/-\d+$/, '')),
        source: internal,
        target: attestTarget(chain.id.replace(/-\d+$/, ''), 'audit-log'),
        outcome: okInternal,
        correlation: { sessionId: `system:${chain.epoch}`, requestId: `start-${chain.id}`, upstreamRequestId: null },
        payload: { component: chain.id.replace(/-\d+$/, ''), softwareVersion: '0.1.0', configDigest: null, previousEpoch: null, previousStopRecorded: true },
      },
      chain,
    );
  };

  const maybeCheckpoint = (chain: Chain, tenantId: string): void => {
    if (chain.sinceCheckpoint < 256) return;
    const first = chain.firstUncheckpointed;
    const last = chain.sequence;
    emit(
      'integrity.checkpoint',
      {
        tenantId,
        actor: system('integrity'),
        source: internal,
        target: attestTarget('chain', chain.id),
        outcome: okInternal,
        correlation: { sessionId: `system:${chain.epoch}`, requestId: `ckpt-${chain.id}-${last}`, upstreamRequestId: null },
        payload: {
          producer: chain.id,
          epoch: chain.epoch,
          firstSequence: first,
          lastSequence: last,
          count: last - first + 1,
          fromTimeUs: nowUs - 10_000_000,
          toTimeUs: nowUs,
          lastHash: Buffer.from(chain.prevHash),
          merkleRoot: Buffer.from(sha256(chain.prevHash)),
          prevCheckpointHash: Buffer.alloc(32),
          closed: false,
          keyId: 'ckpt-test-1',
          formatVersion: 1,
          signature: Buffer.alloc(64, 7),
        },
      },
      chain,
    );
    chain.sinceCheckpoint = 0;
    chain.firstUncheckpointed = last + 1;
  };

  const sessions: Session[] = [];
  let sessionCounter = 0;

  const openSession = (): void => {
    const user = 1000 + Math.floor(rand() * 200);
    const isAgent = rand() < 0.8;
    const db = rand() < 0.15;
    const tenantId = pick(tenants);
    const actor: Actor = isAgent
      ? { subject: `agent:claude-code:u-${user}`, issuer: IDP, clientId: 'claude-code', groups: ['payments-eng'], kind: 'agent', onBehalfOf: `u-${user}`, dev: false }
      : { subject: `u-${user}`, issuer: IDP, clientId: 'sdk-app', groups: ['support'], kind: 'human', onBehalfOf: null, dev: false };
    const source: Source = { address: `10.20.${user % 250}.${(user * 7) % 250}`, userAgent: db ? 'psql' : 'claude-cli/2.0.14 (external, cli)' };
    const target: Target = db
      ? { protocol: 'postgres', service: 'postgres:payments', resource: 'payments', model: null }
      : { protocol: 'http', service: 'anthropic', resource: '/v1/messages', model: pick(MODELS) };
    const s: Session = {
      id: `ses_${String(++sessionCounter).padStart(8, '0')}_${Math.floor(rand() * 1e9).toString(36)}`,
      actor,
      source,
      target,
      tenantId,
      gateway: pick(gateways),
      db,
      requestsLeft: 1 + Math.floor(rand() * 12),
      requests: 0,
      startedUs: nowUs,
    };
    ensureStarted(s.gateway, tenantId);
    const corr: Correlation = { sessionId: s.id, requestId: `login-${s.id}`, upstreamRequestId: null };
    emit(
      'auth.succeeded',
      {
        tenantId,
        actor,
        source,
        target,
        outcome: ok,
        correlation: corr,
        payload: { method: 'oidc_jwt', amr: ['pwd', 'hwk'], acr: null, tokenId: `jti-${s.id}`, tokenIssuedAtUs: nowUs - 1_000_000, tokenExpiresAtUs: nowUs + 3_600_000_000, audience: ['attest-gateway'] },
      },
      s.gateway,
    );
    emit(
      'session.started',
      {
        tenantId,
        actor,
        source,
        target,
        outcome: ok,
        correlation: corr,
        payload: { clientName: db ? 'psql' : 'claude-code', clientVersion: '2.0.14', authMethod: 'oidc_jwt', tokenId: `jti-${s.id}`, tokenExpiresAtUs: nowUs + 3_600_000_000, tlsVersion: 'TLSv1.3' },
      },
      s.gateway,
    );
    sessions.push(s);
  };

  const exchange = (s: Session): void => {
    s.requests += 1;
    s.requestsLeft -= 1;
    const requestId = `req_${s.id.slice(4)}_${s.requests}`;
    const corr: Correlation = { sessionId: s.id, requestId, upstreamRequestId: null };
    const card = rand() < cardRate ? Math.floor(rand() * cardPool) : -1;
    const common = { tenantId: s.tenantId, actor: s.actor, source: s.source, target: s.target };
    const masking: MaskingSummary =
      card >= 0
        ? { cardDataPresent: true, totalHits: 1, stats: [{ ruleId: 'builtin.pan', direction: 'request', action: 'masked', hits: 1 }] }
        : noHits;
    const hits = (direction: 'request' | 'response'): MaskHit[] => {
      const d = cardDisplay(card);
      return [
        {
          ruleId: 'builtin.pan',
          detector: 'pan',
          direction,
          location: { jsonPath: direction === 'request' ? '$.messages[0].content[0].text' : '$.content[0].text', contentBlockIndex: 0, charOffset: Math.floor(rand() * 200) },
          bin: d.bin,
          last4: d.last4,
          panHmac: fingerprints[card] ?? Buffer.alloc(32),
          panHmacKeyId: PAN_HMAC_KEY_ID,
          action: 'masked',
        },
      ];
    };
    if (s.db) {
      const denied = rand() < 0.05;
      emit(
        'db.query.executed',
        {
          ...common,
          outcome: denied ? { result: 'failure', status: null, reason: 'policy_denied' } : okInternal,
          correlation: corr,
          payload: {
            database: 'payments',
            dbUser: 'attest_ro',
            statementKind: denied ? 'delete' : 'select',
            statement: denied ? 'DELETE FROM public.refunds WHERE id = $1' : 'SELECT id, status FROM public.refunds WHERE card_last4 = $1',
            statementDigest: Buffer.from(sha256(Buffer.from(requestId))),
            tables: ['public.refunds'],
            decision: denied ? 'deny' : card >= 0 ? 'mask' : 'allow',
            rowsReturned: denied ? null : Math.floor(rand() * 20),
            rowsAffected: null,
            durationUs: denied ? null : 500 + Math.floor(rand() * 5000),
            sqlState: null,
            masking,
          },
        },
        s.gateway,
      );
      if (card >= 0) {
        emit('data.masked', { ...common, outcome: okInternal, correlation: corr, payload: { subjectEventId: null, originalDigest: null, redactedEventDigest: null, maskedDigest: Buffer.from(sha256(Buffer.from(`m${requestId}`))), hits: hits('response') } }, s.gateway);
      }
      return;
    }
    emit(
      'gateway.request.received',
      {
        ...common,
        outcome: ok,
        correlation: corr,
        payload: { method: 'POST', route: '/v1/messages', model: s.target.model, stream: rand() < 0.7, contentType: 'application/json', bodyBytes: 500 + Math.floor(rand() * 8000), bodyDigest: Buffer.from(sha256(Buffer.from(requestId))), masking, content: null },
      },
      s.gateway,
    );
    const denied = rand() < 0.04;
    emit(
      'policy.decided',
      {
        ...common,
        outcome: denied ? { result: 'failure', status: 403, reason: 'policy_denied' } : okInternal,
        correlation: corr,
        payload: {
          policyId: `${s.tenantId}-default`,
          policyVersion: 'sha256:3f1c9a',
          decision: denied ? 'deny' : card >= 0 ? 'mask' : 'allow',
          ruleIds: denied ? ['groups.models'] : ['groups.models', 'mask.builtin.pan'],
          reason: denied ? `model ${s.target.model ?? ''} not allowed for the caller's groups` : null,
          approvalId: null,
        },
      },
      s.gateway,
    );
    if (denied) {
      emit('gateway.request.blocked', { ...common, outcome: { result: 'failure', status: 403, reason: 'policy_denied' }, correlation: corr, payload: { ruleId: 'groups.models', direction: 'request', stage: 'policy', approvalId: null } }, s.gateway);
      return;
    }
    if (card >= 0) {
      emit('data.masked', { ...common, outcome: okInternal, correlation: corr, payload: { subjectEventId: null, originalDigest: null, redactedEventDigest: null, maskedDigest: Buffer.from(sha256(Buffer.from(`m${requestId}`))), hits: hits('request') } }, s.gateway);
    }
    emit(
      'gateway.request.forwarded',
      { ...common, outcome: okInternal, correlation: corr, payload: { upstreamHost: 'api.anthropic.com', attempt: 1, credentialId: 'anthropic-key-1', masked: card >= 0, bodyBytes: 500, bodyDigest: Buffer.from(sha256(Buffer.from(requestId))) } },
      s.gateway,
    );
    const d = card >= 0 ? cardDisplay(card) : { bin: '000000', last4: '0000' };
    const content = pick(PROSE).replace('{last4}', d.last4).replace('{bin}', d.bin);
    emit(
      'gateway.response.completed',
      {
        ...common,
        outcome: ok,
        correlation: { ...corr, upstreamRequestId: `req_up_${requestId.slice(4)}` },
        payload: {
          upstreamStatus: 200,
          stopReason: 'end_turn',
          stream: true,
          aborted: false,
          content,
          contentDigest: Buffer.from(sha256(Buffer.from(content))),
          contentBytes: content.length,
          masking,
          usage: { inputTokens: 200 + Math.floor(rand() * 4000), outputTokens: 20 + Math.floor(rand() * 800), cacheReadInputTokens: null, cacheCreationInputTokens: null },
          latencyUs: 200_000 + Math.floor(rand() * 3_000_000),
          timeToFirstByteUs: 80_000 + Math.floor(rand() * 400_000),
        },
      },
      s.gateway,
    );
  };

  const closeSession = (s: Session, index: number): void => {
    emit(
      'session.ended',
      {
        tenantId: s.tenantId,
        actor: s.actor,
        source: s.source,
        target: s.target,
        outcome: okInternal,
        correlation: { sessionId: s.id, requestId: `end-${s.id}`, upstreamRequestId: null },
        payload: { reason: 'client_closed', durationUs: nowUs - s.startedUs, requestCount: s.requests, bytesIn: s.requests * 2_000, bytesOut: s.requests * 6_000 },
      },
      s.gateway,
    );
    sessions.splice(index, 1);
  };

  const admin: Actor = { subject: 'u-1337', issuer: IDP, clientId: 'attest-console', groups: ['attest-admins'], kind: 'human', onBehalfOf: null, dev: false };
  const auditor: Actor = { ...admin, subject: 'u-7001', groups: ['auditors'] };
  const consoleSource: Source = { address: '10.20.9.12', userAgent: 'Mozilla/5.0 (X11; Linux x86_64)' };
  let opCounter = 0;
  const op = (prefix: string): Correlation => ({ sessionId: `console:${prefix}`, requestId: `${prefix}_${++opCounter}`, upstreamRequestId: null });

  const sideEvent = (): void => {
    const tenantId = pick(tenants);
    const r = rand();
    if (r < 0.35) {
      const gw = pick(gateways);
      ensureStarted(gw, tenantId);
      const reason = pick(['bad_signature', 'expired', 'wrong_audience', 'unknown_issuer'] as const);
      emit(
        'auth.failed',
        {
          tenantId,
          actor: { subject: 'anonymous', issuer: 'unverified', clientId: null, groups: [], kind: 'unknown', onBehalfOf: null, dev: false },
          source: { address: `203.0.113.${Math.floor(rand() * 250)}`, userAgent: 'python-httpx/0.27.0' },
          target: attestTarget('gateway', '/v1/messages'),
          outcome: { result: 'failure', status: 401, reason },
          correlation: { sessionId: 'none', requestId: `req_fail_${++opCounter}`, upstreamRequestId: null },
          payload: { method: 'oidc_jwt', reasonCode: reason, claimsVerified: false, amr: [], acr: null, tokenId: null },
        },
        gw,
      );
    } else if (r < 0.55) {
      ensureStarted(consoleChain, tenantId);
      const what = pick(['policy', 'retention.days', 'sink:splunk', 'route:/v1/messages'] as const);
      emit(
        'config.changed',
        {
          tenantId,
          actor: admin,
          source: consoleSource,
          target: attestTarget('gateway', what),
          outcome: okInternal,
          correlation: op('cfg'),
          payload: {
            objectKind: what === 'policy' ? 'policy' : what === 'retention.days' ? 'retention' : what.startsWith('sink') ? 'sink' : 'route',
            what,
            change: 'updated',
            oldVersion: 'v41',
            newVersion: 'v42',
            oldDigest: Buffer.from(sha256(Buffer.from(`old${opCounter}`))),
            newDigest: Buffer.from(sha256(Buffer.from(`new${opCounter}`))),
            override: false,
            summary: `update ${what}`,
          },
        },
        consoleChain,
      );
    } else if (r < 0.6) {
      ensureStarted(processorChain, tenantId);
      emit(
        'key.rotated',
        {
          tenantId,
          actor: system('keys'),
          source: internal,
          target: attestTarget('keys', 'event_signing'),
          outcome: okInternal,
          correlation: op('keys'),
          payload: { purpose: 'event_signing', oldKeyId: `sig-${opCounter}`, newKeyId: `sig-${opCounter + 1}`, algorithm: 'Ed25519', reason: 'scheduled', oldKeyRetiresAtUs: nowUs + 86_400_000_000, publicKeyThumbprint: 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs' },
        },
        processorChain,
      );
    } else if (r < 0.8) {
      ensureStarted(consoleChain, tenantId);
      const queryId = pick(['pci.10.2.1.1', 'pci.10.2.1.4', 'pci.10.2.2']);
      emit(
        'evidence.accessed',
        {
          tenantId,
          actor: auditor,
          source: consoleSource,
          target: attestTarget('evidence', queryId),
          outcome: okInternal,
          correlation: op('evq'),
          payload: { accessKind: 'query', queryId, parameters: { tenant: tenantId }, rowCount: Math.floor(rand() * 500), format: null, exportDigest: null, approvalId: null },
        },
        consoleChain,
      );
    } else if (r < 0.9) {
      ensureStarted(processorChain, tenantId);
      const findingId = `fnd_${++opCounter}`;
      emit(
        'finding.opened',
        {
          tenantId,
          actor: system('risk'),
          source: internal,
          target: { protocol: 'http', service: 'anthropic', resource: '/v1/messages', model: null },
          outcome: okInternal,
          correlation: op('risk'),
          payload: { findingId, category: 'risk', severity: 'medium', title: 'Burst of policy denials', description: 'several denials in 60 s from one agent', detectorId: 'risk.denial-burst', relatedEventIds: [], location: null, startedAtUs: nowUs - 60_000_000 },
        },
        processorChain,
      );
    } else {
      ensureStarted(consoleChain, tenantId);
      const approvalId = `apr_${++opCounter}`;
      emit(
        'approval.decided',
        {
          tenantId,
          actor: admin,
          source: consoleSource,
          target: { protocol: 'postgres', service: 'postgres:payments', resource: 'payments', model: null },
          outcome: okInternal,
          correlation: op('apr'),
          payload: { approvalId, decision: rand() < 0.8 ? 'approved' : 'rejected', approvers: ['u-1337'], quorum: 1, quorumMet: true, comment: null },
        },
        consoleChain,
      );
    }
  };

  while (emitted < opts.count) {
    if (queue.length === 0) {
      const r = rand();
      if (sessions.length < 8 || r < 0.08) openSession();
      else if (r < 0.12) sideEvent();
      else {
        const index = Math.floor(rand() * sessions.length);
        const s = sessions[index] as Session;
        if (s.requestsLeft <= 0) closeSession(s, index);
        else exchange(s);
      }
      for (const c of chains) if (started.has(c)) maybeCheckpoint(c, pick(tenants));
    }
    const next = queue.shift();
    if (next === undefined) continue;
    yield next;
    emitted += 1;
    nowUs += stepUs;
  }
}

/** All of `generateEvents(opts)` in an array. */
export function generateEventList(opts: GenerateOptions): GeneratedEvent[] {
  return [...generateEvents(opts)];
}

/** A fresh directory under the OS temp dir for one test's store, removed by the returned function. */
export async function freshStoreDir(label: string): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), `attest-store-${label}-`));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

/** CPU milliseconds the main thread has used (Linux /proc), or NaN elsewhere: what "blocking" costs the event loop. */
export function mainThreadCpuMs(): number {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime, in clock ticks (USER_HZ = 100 on Linux).
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return Number.NaN;
  }
}
