/**
 * Golden fixtures: one realistic sample per event type, encoded once per schema version and
 * committed under schemas/fixtures/<type>/v<N>.bin with the decoded expectation in v<N>.json.
 * A written fixture is never rewritten: it is what that version's bytes look like forever, and
 * the tests decode every one of them with the current reader.
 *
 * Samples carry card data only as a real event would: BIN, last four, and an HMAC.
 */
import { createHash, createHmac } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chainEvent, newEvent, type EventClock } from './builder';
import { EVENT_CATALOG, EVENT_TYPES, isEventType, type EventType } from './catalog';
import type { EventCodec } from './codec';
import { formatJson, isJsonObject, type JsonValue } from './schemas';
import type { Actor, Correlation, Outcome, Source, Target } from './types.generated';
import type { AttestEvent, EventParts } from './types';

export const DEFAULT_FIXTURE_ROOT = fileURLToPath(new URL('../../../../schemas/fixtures/', import.meta.url));

/** 2025-11-25T09:00:00Z, in microseconds. */
const BASE_TIME_US = 1_764_061_200_000_000;

const digest = (label: string): Buffer => createHash('sha256').update(label).digest();

/** A UUIDv7 derived from a label, so fixtures are reproducible. */
export function fixtureId(label: string, timeUs: number = BASE_TIME_US): string {
  const bytes = Buffer.alloc(16);
  bytes.writeUIntBE(Math.floor(timeUs / 1000), 0, 6);
  digest(label).copy(bytes, 6, 0, 10);
  bytes[6] = 0x70 | ((bytes[6] ?? 0) & 0x0f);
  bytes[8] = 0x80 | ((bytes[8] ?? 0) & 0x3f);
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

const IDP = 'https://idp.example.com';

const agent: Actor = {
  subject: 'agent:claude-code:u-4821',
  issuer: IDP,
  clientId: 'claude-code',
  groups: ['payments-eng'],
  kind: 'agent',
  onBehalfOf: 'u-4821',
  dev: false,
};
const admin: Actor = {
  subject: 'u-1337',
  issuer: IDP,
  clientId: 'attest-console',
  groups: ['attest-admins', 'approvers'],
  kind: 'human',
  onBehalfOf: null,
  dev: false,
};
const auditor: Actor = { ...admin, subject: 'u-7001', groups: ['auditors'] };
const system = (component: string): Actor => ({
  subject: `attest:${component}`,
  issuer: 'attest',
  clientId: null,
  groups: [],
  kind: 'system',
  onBehalfOf: null,
  dev: false,
});

const caller: Source = { address: '10.20.30.40', userAgent: 'claude-cli/2.0.14 (external, cli)' };
const consoleUser: Source = { address: '10.20.9.12', userAgent: 'Mozilla/5.0 (X11; Linux x86_64)' };
const internal: Source = { address: 'internal', userAgent: null };

const claude: Target = { protocol: 'http', service: 'anthropic', resource: '/v1/messages', model: 'claude-sonnet-4-5' };
const payments: Target = { protocol: 'postgres', service: 'postgres:payments', resource: 'payments', model: null };
const attest = (component: string, resource: string): Target => ({ protocol: 'internal', service: `attest:${component}`, resource, model: null });

const ok: Outcome = { result: 'success', status: 200, reason: null };
const okInternal: Outcome = { result: 'success', status: null, reason: null };
const failed = (status: number | null, reason: string): Outcome => ({ result: 'failure', status, reason });

const request: Correlation = {
  sessionId: 'ses_01JAX3M8Q4TZ7Y2K9V6R5W1N0P',
  requestId: 'req_01JAX3MB7D2F0H4J6K8M1P3R5T',
  upstreamRequestId: null,
};
const answered: Correlation = { ...request, upstreamRequestId: 'req_011CVdH5qYzbXw3nEr2ZkUaP' };
const operation = (id: string): Correlation => ({ sessionId: 'system:0196b1f2-6c1e-7a3b-9d4e-5f6a7b8c9d0e', requestId: id, upstreamRequestId: null });

const panHits = {
  cardDataPresent: true,
  totalHits: 2,
  stats: [
    { ruleId: 'builtin.pan', direction: 'request', action: 'masked', hits: 1 },
    { ruleId: 'builtin.cvv', direction: 'request', action: 'dropped', hits: 1 },
  ],
} as const;
const noHits = { cardDataPresent: false, totalHits: 0, stats: [] } as const;

/** One sample per type, typed against the generated payloads so a schema change shows up here. */
export const SAMPLE_PARTS: { readonly [K in EventType]: EventParts<K> } = {
  'session.started': {
    tenantId: 'acme',
    actor: agent,
    source: caller,
    target: claude,
    outcome: ok,
    correlation: request,
    payload: {
      clientName: 'claude-code',
      clientVersion: '2.0.14',
      authMethod: 'oidc_jwt',
      tokenId: 'jti-5b1f0c2e',
      tokenExpiresAtUs: BASE_TIME_US + 3_600_000_000,
      tlsVersion: 'TLSv1.3',
    },
  },
  'session.ended': {
    tenantId: 'acme',
    actor: agent,
    source: caller,
    target: claude,
    outcome: okInternal,
    correlation: request,
    payload: { reason: 'idle_timeout', durationUs: 912_000_000, requestCount: 14, bytesIn: 48_213, bytesOut: 131_072 },
  },
  'auth.succeeded': {
    tenantId: 'acme',
    actor: admin,
    source: consoleUser,
    target: attest('console', '/login/callback'),
    outcome: ok,
    correlation: operation('login_01JAX3K0'),
    payload: {
      method: 'session_cookie',
      amr: ['pwd', 'hwk'],
      acr: 'urn:example:loa:mfa',
      tokenId: 'jti-8c2d41aa',
      tokenIssuedAtUs: BASE_TIME_US - 5_000_000,
      tokenExpiresAtUs: BASE_TIME_US + 28_800_000_000,
      audience: ['attest-console'],
    },
  },
  'auth.failed': {
    tenantId: 'acme',
    actor: { subject: 'anonymous', issuer: 'unverified', clientId: null, groups: [], kind: 'unknown', onBehalfOf: null, dev: false },
    source: { address: '203.0.113.7', userAgent: 'python-httpx/0.27.0' },
    target: attest('gateway', '/v1/messages'),
    outcome: failed(401, 'bad_signature'),
    correlation: { sessionId: 'none', requestId: 'req_01JAX3N2W6Y8A0C2E4G6J8L0N2', upstreamRequestId: null },
    payload: { method: 'oidc_jwt', reasonCode: 'bad_signature', claimsVerified: false, amr: [], acr: null, tokenId: null },
  },
  'gateway.request.received': {
    tenantId: 'acme',
    actor: agent,
    source: caller,
    target: claude,
    outcome: ok,
    correlation: request,
    payload: {
      method: 'POST',
      route: '/v1/messages',
      model: 'claude-sonnet-4-5',
      stream: true,
      contentType: 'application/json',
      bodyBytes: 2_481,
      bodyDigest: digest('request body after masking'),
      masking: panHits,
      content: '{"model":"claude-sonnet-4-5","max_tokens":1024,"stream":true,"messages":[{"role":"user","content":"Why was the card 411111******1111 declined?"}]}',
    },
  },
  'policy.decided': {
    tenantId: 'acme',
    actor: agent,
    source: caller,
    target: claude,
    outcome: okInternal,
    correlation: request,
    payload: {
      policyId: 'acme-default',
      policyVersion: 'sha256:3f1c9a',
      decision: 'mask',
      ruleIds: ['groups.payments-eng.models', 'mask.builtin.pan'],
      reason: 'payments-eng may use claude-sonnet-4-5; card data is masked',
      approvalId: null,
    },
  },
  'gateway.request.forwarded': {
    tenantId: 'acme',
    actor: agent,
    source: caller,
    target: claude,
    outcome: okInternal,
    correlation: request,
    payload: {
      upstreamHost: 'api.anthropic.com',
      attempt: 1,
      credentialId: 'anthropic-key-2025-10',
      masked: true,
      bodyBytes: 2_470,
      bodyDigest: digest('request body after masking'),
    },
  },
  'gateway.request.blocked': {
    tenantId: 'acme',
    actor: agent,
    source: caller,
    target: { ...claude, model: 'claude-opus-4-1' },
    outcome: failed(403, 'policy_denied'),
    correlation: request,
    payload: { ruleId: 'groups.payments-eng.models', direction: 'request', stage: 'policy', approvalId: null },
  },
  'gateway.response.completed': {
    tenantId: 'acme',
    actor: agent,
    source: caller,
    target: claude,
    outcome: ok,
    correlation: answered,
    payload: {
      upstreamStatus: 200,
      stopReason: 'end_turn',
      stream: true,
      aborted: false,
      content: 'The card ending in 1111 (BIN 411111) was declined: insufficient funds.',
      contentDigest: digest('response body after masking'),
      contentBytes: 73,
      masking: panHits,
      usage: { inputTokens: 1_204, outputTokens: 87, cacheReadInputTokens: 1_024, cacheCreationInputTokens: null },
      latencyUs: 1_843_210,
      timeToFirstByteUs: 412_877,
    },
  },
  'data.masked': {
    tenantId: 'acme',
    actor: agent,
    source: caller,
    target: claude,
    outcome: okInternal,
    correlation: request,
    payload: {
      subjectEventId: '01963e3c-8f2a-7b41-9c3d-5a6b7c8d9e0f',
      originalDigest: digest('the subject event as the gateway chained it'),
      maskedDigest: digest('request body after masking'),
      redactedEventDigest: digest('the subject event with its content redacted'),
      hits: [
        {
          ruleId: 'builtin.pan',
          detector: 'pan',
          direction: 'request',
          location: { jsonPath: '$.messages[0].content[0].text', contentBlockIndex: 0, charOffset: 57 },
          bin: '411111',
          last4: '1111',
          panHmac: createHmac('sha256', 'fixture-hmac-key').update('fixture-card-1').digest(),
          panHmacKeyId: 'pan-hmac-2025-10',
          action: 'masked',
        },
        {
          ruleId: 'builtin.cvv',
          detector: 'cvv',
          direction: 'request',
          location: { jsonPath: '$.messages[0].content[0].text', contentBlockIndex: 0, charOffset: 82 },
          bin: null,
          last4: null,
          panHmac: null,
          panHmacKeyId: null,
          action: 'dropped',
        },
      ],
    },
  },
  'approval.requested': {
    tenantId: 'acme',
    actor: agent,
    source: caller,
    target: payments,
    outcome: { result: 'unknown', status: 202, reason: 'held_for_approval' },
    correlation: request,
    payload: {
      approvalId: 'apr_01JAX3P4',
      scope: 'request',
      policyRuleId: 'payments.writes.need-approval',
      justification: 'refund batch for incident INC-2291',
      approverGroups: ['approvers'],
      quorum: 1,
      expiresAtUs: BASE_TIME_US + 900_000_000,
      mode: 'hold',
      requestDigest: digest('POST payments refund batch INC-2291').toString('hex'),
      reasons: ["caller is in group 'payments-eng'", "prompt mentions 'refund'"],
      excerpt: 'Refund the duplicate charges on card ************1111 from INC-2291 (batch of 14).',
      hold: { gatewayId: 'gateway-7f9c', instanceId: '0196b1f2-6c1e-7a3b-9d4e-5f6a7b8c9d0e', holdId: 'req_01JAX3MB7D2F0H4J6K8M1P3R5T' },
      releaseWindowUs: 600_000_000,
    },
  },
  'approval.decided': {
    tenantId: 'acme',
    actor: admin,
    source: consoleUser,
    target: payments,
    outcome: okInternal,
    correlation: request,
    payload: { approvalId: 'apr_01JAX3P4', decision: 'approved', approvers: ['u-1337'], quorum: 1, quorumMet: true, comment: 'matches INC-2291' },
  },
  'approval.expired': {
    tenantId: 'acme',
    actor: agent,
    source: caller,
    target: payments,
    outcome: failed(403, 'approval_expired'),
    correlation: request,
    payload: {
      approvalId: 'apr_01JAX3Q9',
      requestedAtUs: BASE_TIME_US - 900_000_000,
      expiresAtUs: BASE_TIME_US,
      approvals: 0,
      quorum: 2,
      stage: 'pending',
    },
  },
  'db.query.executed': {
    tenantId: 'acme',
    actor: agent,
    source: { address: '10.20.30.40', userAgent: 'psql' },
    target: payments,
    outcome: okInternal,
    correlation: request,
    payload: {
      database: 'payments',
      dbUser: 'attest_ro',
      statementKind: 'select',
      statement: 'SELECT id, status FROM public.refunds WHERE card_last4 = $1',
      statementDigest: digest('SELECT id, status FROM public.refunds WHERE card_last4 = $1'),
      tables: ['public.refunds'],
      decision: 'allow',
      rowsReturned: 3,
      rowsAffected: null,
      durationUs: 2_114,
      sqlState: null,
      masking: noHits,
    },
  },
  'risk.detected': {
    tenantId: 'acme',
    actor: system('risk'),
    source: internal,
    target: claude,
    outcome: okInternal,
    correlation: operation('risk_01JAX3R2'),
    payload: {
      detectorId: 'risk.denial-burst',
      severity: 'high',
      score: 0.87,
      principal: { subject: 'agent:claude-code:u-4821', issuer: IDP },
      description: '14 policy denials in 60 s from one agent',
      evidenceEventIds: [fixtureId('evidence-1'), fixtureId('evidence-2')],
      findingId: 'fnd_01JAX3R3',
    },
  },
  'identity.suspended': {
    tenantId: 'acme',
    actor: system('risk'),
    source: internal,
    target: attest('identity', 'agent:claude-code:u-4821'),
    outcome: okInternal,
    correlation: operation('risk_01JAX3R2'),
    payload: {
      principal: { subject: 'agent:claude-code:u-4821', issuer: IDP },
      reason: 'risk:denial-burst',
      findingId: 'fnd_01JAX3R3',
      untilUs: BASE_TIME_US + 3_600_000_000,
      sessionsTerminated: 2,
    },
  },
  'identity.restored': {
    tenantId: 'acme',
    actor: admin,
    source: consoleUser,
    target: attest('identity', 'agent:claude-code:u-4821'),
    outcome: okInternal,
    correlation: operation('admin_01JAX3S0'),
    payload: {
      principal: { subject: 'agent:claude-code:u-4821', issuer: IDP },
      reason: 'admin:reviewed-false-positive',
      suspendedEventId: fixtureId('identity.suspended'),
      automatic: false,
    },
  },
  'config.changed': {
    tenantId: 'acme',
    actor: admin,
    source: consoleUser,
    target: attest('gateway', 'policy'),
    outcome: okInternal,
    correlation: operation('cfg_01JAX3T1'),
    payload: {
      objectKind: 'policy',
      what: 'policy',
      change: 'updated',
      oldVersion: 'sha256:1a2b3c',
      newVersion: 'sha256:3f1c9a',
      oldDigest: digest('policy v41'),
      newDigest: digest('policy v42'),
      override: false,
      summary: 'allow claude-sonnet-4-5 for payments-eng',
    },
  },
  'key.rotated': {
    tenantId: 'acme',
    actor: system('keys'),
    source: internal,
    target: attest('keys', 'event_signing'),
    outcome: okInternal,
    correlation: operation('keys_01JAX3V5'),
    payload: {
      purpose: 'event_signing',
      oldKeyId: 'sig-2025-10',
      newKeyId: 'sig-2025-11',
      algorithm: 'Ed25519',
      reason: 'scheduled',
      oldKeyRetiresAtUs: BASE_TIME_US + 86_400_000_000,
      publicKeyThumbprint: 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs',
    },
  },
  'audit.started': {
    tenantId: 'acme',
    actor: system('gateway'),
    source: internal,
    target: attest('gateway', 'audit-log'),
    outcome: okInternal,
    correlation: operation('start_01JAX3A0'),
    payload: {
      component: 'gateway',
      softwareVersion: '0.1.0',
      configDigest: digest('gateway config'),
      previousEpoch: '0196b0e1-5b0d-7f2a-8c3d-4e5f6a7b8c9d',
      previousStopRecorded: true,
    },
  },
  'audit.stopped': {
    tenantId: 'acme',
    actor: system('gateway'),
    source: internal,
    target: attest('gateway', 'audit-log'),
    outcome: okInternal,
    correlation: operation('stop_01JAX3Z9'),
    payload: { component: 'gateway', reason: 'shutdown', detail: 'SIGTERM from deployment rollout', resumeExpected: true },
  },
  'evidence.accessed': {
    tenantId: 'acme',
    actor: auditor,
    source: consoleUser,
    target: attest('evidence', 'pci.10.2.1.4'),
    outcome: okInternal,
    correlation: operation('evq_01JAX3W7'),
    payload: {
      accessKind: 'export',
      queryId: 'pci.10.2.1.4',
      parameters: { from: '2025-08-01T00:00:00Z', to: '2025-11-01T00:00:00Z', tenant: 'acme' },
      rowCount: 412,
      format: 'ocsf-json',
      exportDigest: digest('export pci.10.2.1.4'),
      approvalId: null,
    },
  },
  'integrity.checkpoint': {
    tenantId: 'acme',
    actor: system('integrity'),
    source: internal,
    target: attest('chain', 'gateway-7f9c'),
    outcome: okInternal,
    correlation: operation('ckpt_01JAX3X1'),
    payload: {
      producer: 'gateway-7f9c',
      epoch: '0196b1f2-6c1e-7a3b-9d4e-5f6a7b8c9d0e',
      firstSequence: 1_000,
      lastSequence: 1_255,
      count: 256,
      fromTimeUs: BASE_TIME_US - 10_000_000,
      toTimeUs: BASE_TIME_US,
      lastHash: digest('event 1255'),
      merkleRoot: digest('merkle root 1000..1255'),
      prevCheckpointHash: digest('checkpoint ending at 999'),
      closed: false,
      keyId: 'ckpt-2025-11',
      formatVersion: 1,
      signature: Buffer.concat([digest('signature half 1'), digest('signature half 2')]),
    },
  },
  'finding.opened': {
    tenantId: 'acme',
    actor: system('risk'),
    source: internal,
    target: claude,
    outcome: okInternal,
    correlation: operation('risk_01JAX3R2'),
    payload: {
      findingId: 'fnd_01JAX3R3',
      category: 'risk',
      severity: 'high',
      title: 'Burst of policy denials from one agent',
      description: '14 policy denials in 60 s from agent:claude-code:u-4821',
      detectorId: 'risk.denial-burst',
      relatedEventIds: [fixtureId('evidence-1'), fixtureId('evidence-2')],
      location: null,
      startedAtUs: BASE_TIME_US - 60_000_000,
    },
  },
  'finding.updated': {
    tenantId: 'acme',
    actor: admin,
    source: consoleUser,
    target: claude,
    outcome: okInternal,
    correlation: operation('fnd_01JAX3R3'),
    payload: {
      findingId: 'fnd_01JAX3R3',
      status: 'investigating',
      severity: 'medium',
      assignee: 'u-1337',
      note: 'agent retried a denied model in a loop; checking with the owner',
      relatedEventIds: [],
    },
  },
  'finding.closed': {
    tenantId: 'acme',
    actor: admin,
    source: consoleUser,
    target: claude,
    outcome: okInternal,
    correlation: operation('fnd_01JAX3R3'),
    payload: {
      findingId: 'fnd_01JAX3R3',
      resolution: 'resolved',
      reason: 'retry loop fixed in the agent configuration',
      openedAtUs: BASE_TIME_US - 3_600_000_000,
      endedAtUs: BASE_TIME_US - 1_800_000_000,
    },
  },
  'approval.released': {
    tenantId: 'acme',
    actor: agent,
    source: caller,
    target: payments,
    outcome: okInternal,
    correlation: request,
    payload: {
      approvalId: 'apr_01JAX3P4',
      requestDigest: digest('POST payments refund batch INC-2291').toString('hex'),
      gatewayId: 'gateway-7f9c',
      instanceId: '0196b1f2-6c1e-7a3b-9d4e-5f6a7b8c9d0e',
      holdId: 'req_01JAX3MB7D2F0H4J6K8M1P3R5T',
    },
  },
  'approval.cancelled': {
    tenantId: 'acme',
    actor: system('gateway'),
    source: internal,
    target: payments,
    outcome: failed(null, 'approval_cancelled'),
    correlation: request,
    payload: { approvalId: 'apr_01JAX3R1', reason: 'gateway_restarted' },
  },
};

/** The sample event of `type`, built through newEvent and chainEvent like a real one. */
export function sampleEvent<K extends EventType>(type: K): AttestEvent<K> {
  const index = EVENT_TYPES.indexOf(type);
  const timeUs = BASE_TIME_US + index * 1_000;
  const clock: EventClock = { nowUs: () => timeUs };
  const unchained = newEvent(type, SAMPLE_PARTS[type], {
    producer: { id: 'gateway-7f9c', epoch: '0196b1f2-6c1e-7a3b-9d4e-5f6a7b8c9d0e' },
    clock,
    idGen: () => fixtureId(type, timeUs),
  });
  // Fixtures stand alone (they are not one chain). Conventions of the integrity module: an epoch's
  // first event is sequence 1, linked to 32 zero bytes for a producer that never checkpointed, and
  // checkpoint events sit outside the chain at sequence 0.
  const position =
    type === 'audit.started'
      ? { sequence: 1, prevHash: Buffer.alloc(32) }
      : type === 'integrity.checkpoint'
        ? { sequence: 0, prevHash: Buffer.alloc(32) }
        : { sequence: 1_000 + index, prevHash: digest(`previous event of ${type}`) };
  return chainEvent(unchained, position);
}

/** JSON form of a decoded event: Buffers become {"$bytes": "<hex>"}, everything else is as is. */
export function toFixtureJson(value: unknown): JsonValue {
  if (Buffer.isBuffer(value)) return { $bytes: value.toString('hex') };
  if (Array.isArray(value)) return value.map(toFixtureJson);
  if (typeof value === 'object' && value !== null) {
    const out: { [key: string]: JsonValue } = {};
    for (const [k, v] of Object.entries(value)) out[k] = toFixtureJson(v);
    return out;
  }
  if (typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' || value === null) return value;
  throw new Error(`cannot represent ${typeof value} in a fixture`);
}

export function fromFixtureJson(value: JsonValue): unknown {
  if (Array.isArray(value)) return value.map(fromFixtureJson);
  if (isJsonObject(value)) {
    const keys = Object.keys(value);
    const bytes = value['$bytes'];
    if (keys.length === 1 && typeof bytes === 'string') return Buffer.from(bytes, 'hex');
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = fromFixtureJson(v);
    return out;
  }
  return value;
}

export interface FixtureDocument {
  readonly type: EventType;
  readonly code: string;
  readonly schemaVersion: number;
  /** Writer-schema fingerprint as in the header, hex. */
  readonly fingerprint: string;
  /** The event decoded with the writer's own schema, in fixture JSON. */
  readonly event: JsonValue;
}

export interface Fixture {
  readonly type: EventType;
  readonly version: number;
  readonly binPath: string;
  readonly jsonPath: string;
  readonly bytes: Buffer;
  readonly document: FixtureDocument;
}

/** Every committed fixture, by type then version. */
export function listFixtures(root: string = DEFAULT_FIXTURE_ROOT): Fixture[] {
  const fixtures: Fixture[] = [];
  if (!existsSync(root)) return fixtures;
  for (const dir of readdirSync(root, { withFileTypes: true })) {
    if (!dir.isDirectory()) continue;
    if (!isEventType(dir.name)) throw new Error(`fixture directory '${dir.name}' is not an event type`);
    const type = dir.name;
    for (const file of readdirSync(join(root, type)).sort()) {
      const match = /^v([1-9]\d*)\.bin$/.exec(file);
      if (match === null) continue;
      const version = Number(match[1]);
      const binPath = join(root, type, file);
      const jsonPath = join(root, type, `v${version}.json`);
      const document = JSON.parse(readFileSync(jsonPath, 'utf8')) as FixtureDocument;
      fixtures.push({ type, version, binPath, jsonPath, bytes: readFileSync(binPath), document });
    }
  }
  return fixtures.sort((a, b) => EVENT_TYPES.indexOf(a.type) - EVENT_TYPES.indexOf(b.type) || a.version - b.version);
}

/** Write the current version's fixture of every type that has none yet; returns the paths written. */
export function writeMissingFixtures(codec: EventCodec, root: string = DEFAULT_FIXTURE_ROOT): string[] {
  const written: string[] = [];
  for (const type of EVENT_TYPES) {
    const { version, code } = EVENT_CATALOG[type];
    const dir = join(root, type);
    const binPath = join(dir, `v${version}.bin`);
    const jsonPath = join(dir, `v${version}.json`);
    if (existsSync(binPath) && existsSync(jsonPath)) continue;
    if (existsSync(binPath) !== existsSync(jsonPath)) {
      throw new Error(`${type} v${version}: one of .bin/.json exists without the other; restore it from git rather than regenerate`);
    }
    const bytes = codec.encode(sampleEvent(type));
    const decoded = codec.decode(bytes);
    const document: FixtureDocument = {
      type,
      code,
      schemaVersion: version,
      fingerprint: decoded.fingerprint,
      event: toFixtureJson(decoded.event),
    };
    mkdirSync(dir, { recursive: true });
    writeFileSync(binPath, bytes);
    writeFileSync(jsonPath, formatJson(document as unknown as JsonValue));
    written.push(binPath, jsonPath);
  }
  return written;
}
