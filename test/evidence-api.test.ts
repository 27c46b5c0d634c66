/**
 * The auditor's evidence API and the `attest` auditor commands, end to end in one process: real
 * evidence (emitted by a producer through the real emitter onto the durable file log, with signed
 * checkpoints), written into the real embedded ClickHouse store (chdb) with toStoredEvent +
 * insertEvents, served by the console over HTTP, authenticated with real tokens from the
 * development issuer, read by the CLI functions in-process.
 *
 * chdb binds one data directory per process: this file opens exactly one store (beforeAll) and
 * closes it (afterAll); vitest runs each test file in its own process.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { JWK } from 'jose';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkpointFile, EvidenceEmitter, memoryCheckpoints, systemActor } from '../services/common/src/evidence/emitter';
import { openEvidence, type EvidenceRuntime } from '../services/common/src/evidence/producer';
import { decodeEvent, encodeEvent, type AnyAttestEvent, type AttestEvent } from '../services/common/src/events';
import { createTokenVerifier, DevIssuer, type TokenVerifier } from '../services/common/src/identity';
import { InMemoryKeyStore, Keyring } from '../services/common/src/integrity';
import { FileEventLog, MemoryEventLog } from '../services/common/src/log';
import { ChdbEvidenceStore, EVIDENCE_QUERIES, toStoredEvent } from '../services/common/src/store';
import { buildConsole } from '../services/console/src/app';
import { evidenceQuery, keysExport, panLookup, sessionsShow, verify, type CliIO } from '../services/cli/src/evidence-commands';
import { GatewayRecorder } from '../services/gateway/src/evidence';
import { maskJson } from '../services/gateway/src/mask-json';

const VISA = '4111111111111111';
const MASTERCARD = '5555555555554444';
const CADENCE = { everyEvents: 4, everyMs: 60_000 };
const AUDIENCE = 'attest-console';
const silent = pino({ level: 'silent' });

let dir: string;
let log: FileEventLog;
let gateway: EvidenceRuntime;
let consoleRt: EvidenceRuntime;
let store: ChdbEvidenceStore;
let dev: DevIssuer;
let verifier: TokenVerifier;
let app: FastifyInstance;
let url: string;
let auditorToken: string;
const logLines: string[] = [];

const SESSION_CARD = 'sess-card-1';
const SESSION_PLAIN = 'sess-plain-2';
/** Event ids of the exchanges, by request id. */
const byRequest = new Map<string, AnyAttestEvent[]>();

async function readLog(): Promise<{ bytes: Uint8Array; event: AnyAttestEvent }[]> {
  const consumer = await log.consumer(`test-${Math.random()}`, { startFrom: 'earliest' });
  const out: { bytes: Uint8Array; event: AnyAttestEvent }[] = [];
  for (;;) {
    const batch = await consumer.poll(10_000, 50);
    if (batch.length === 0) break;
    for (const r of batch) out.push({ bytes: r.value, event: decodeEvent(r.value).event as AnyAttestEvent });
  }
  await consumer.close();
  return out;
}

let insertRound = 0;
/** Public keys of producers a test adds (published with the console's own). */
const otherProducerKeys: JWK[] = [];
/** What the evidence writer does: every record on the log into the store (the store drops repeats). */
async function syncStore(): Promise<number> {
  const records = await readLog();
  const rows = records.map((r) => toStoredEvent(r.event as AttestEvent, r.bytes, createHash('sha256').update(r.bytes).digest()));
  const report = await store.insertEvents(rows, `test:${++insertRound}`);
  return report.events - report.duplicates;
}

async function exchange(rec: GatewayRecorder, requestId: string, sessionId: string, subject: string, text: string, reply: string): Promise<void> {
  const principal = { subject, issuer: 'https://idp.example', groups: ['developers'], kind: 'agent' as const, expiresAt: 0, clientId: 'coder' };
  const facts = { requestId, sessionId, route: 'messages', method: 'POST', path: '/v1/messages', sourceAddress: '10.1.2.3', userAgent: 'claude-cli/2', principal, model: 'claude-sonnet-4-5', stream: false };
  const body = { model: 'claude-sonnet-4-5', messages: [{ role: 'user', content: text }] };
  const hits = maskJson(body, { format: 'bin6-last4', rewrite: true, hashPan: rec.hashPan });
  const digest = createHash('sha256').update(JSON.stringify(body)).digest();
  await rec.admitted(facts, { bodyBytes: 100, bodyDigest: digest, contentType: 'application/json', hits, action: 'mask', ruleIds: ['groups.models'], forwardedBytes: 100, forwardedDigest: digest });
  const content = { text: reply };
  const rhits = maskJson(content, { format: 'bin6-last4', rewrite: true, hashPan: rec.hashPan });
  await rec.completed(facts, { status: 200, stopReason: 'end_turn', aborted: false, content: content.text, contentBytes: content.text.length, contentDigest: digest, hits: rhits, action: 'mask', usage: { inputTokens: 10, outputTokens: 5, cacheReadInputTokens: null, cacheCreationInputTokens: null }, latencyUs: 1000, ttfbUs: 500 });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'attest-evidence-api-'));
  log = await FileEventLog.open({ dir: join(dir, 'log') });
  const open = (component: string, producerId: string) =>
    openEvidence({ dataDir: join(dir, 'platform'), component, producerId, tenantId: 'acme', logger: silent, configText: 'x', configFile: 'attest.yaml', softwareVersion: 'test', cadence: CADENCE, log });

  // The evidence: a gateway producer's run, start to stop, with card data, a refusal and a failed login.
  gateway = await open('gateway', 'gateway-test');
  const rec = new GatewayRecorder(gateway.emitter, gateway.panKey, { id: 'attest.yaml', version: 'v1' }, 'api.anthropic.com');
  await exchange(rec, 'req_1', SESSION_CARD, 'agent-7', `refund card ${VISA} please`, 'done');
  // The time filter below works at millisecond resolution: keep the two exchanges in different milliseconds.
  await new Promise((r) => setTimeout(r, 5));
  await exchange(rec, 'req_2', SESSION_CARD, 'agent-7', 'and the status?', `card ${MASTERCARD} refunded`);
  await exchange(rec, 'req_3', SESSION_PLAIN, 'agent-9', 'hello', 'hi');
  const base = { requestId: 'req_4', sessionId: SESSION_PLAIN, route: 'messages', method: 'POST', path: '/v1/messages', sourceAddress: '10.1.2.4', userAgent: 'curl/8', stream: false };
  await rec.refused(
    { ...base, principal: { subject: 'agent-9', issuer: 'https://idp.example', groups: ['developers'], kind: 'agent', expiresAt: 0 }, model: 'claude-opus-4' },
    { status: 403, stage: 'policy', ruleId: 'policy.models', reason: 'model not allowed', direction: 'request', bodyBytes: 10, bodyDigest: createHash('sha256').digest(), contentType: 'application/json', hits: [] },
  );
  await rec.authFailed({ ...base, requestId: 'req_5', sessionId: 'anonymous:10.9.9.9', sourceAddress: '10.9.9.9' }, 'bad_signature');
  await gateway.close('shutdown');

  // The console's own producer: every evidence access is recorded through it.
  consoleRt = await open('console', 'console-test');

  store = await ChdbEvidenceStore.open({ dataDir: join(dir, 'store'), retention: { days: 365 } });
  await store.migrate();
  await syncStore();
  for (const r of await readLog()) {
    if (r.event.metadata.producer !== 'gateway-test') continue;
    const id = r.event.correlation.requestId;
    if (/^req_\d$/.test(id)) byRequest.set(id, [...(byRequest.get(id) ?? []), r.event]);
  }

  dev = await DevIssuer.loadOrCreate(join(dir, 'idp'));
  verifier = createTokenVerifier({ issuers: [dev.issuerOptions([AUDIENCE])] });
  auditorToken = await dev.mint({ subject: 'auditor-1', groups: ['qsa', 'auditors'], audience: AUDIENCE, ttlSec: 600 });
  const logger = pino({ level: 'info' }, { write: (s: string) => void logLines.push(s) });
  app = await buildConsole({ store, verifier, auditorGroups: ['auditors'], emitter: consoleRt.emitter, jwks: () => ({ keys: [...consoleRt.keyring.jwks().keys, ...otherProducerKeys] }), panKey: consoleRt.panKey, logger, cadence: CADENCE });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const addr = app.server.address();
  url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
}, 120_000);

afterAll(async () => {
  await app?.close();
  await consoleRt?.close('shutdown');
  await store?.close();
  await log?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** `null`: no Authorization header at all. */
const get = (path: string, token: string | null = auditorToken) => fetch(`${url}${path}`, { headers: token === null ? {} : { authorization: `Bearer ${token}` } });
const post = (path: string, body: unknown, token = auditorToken) =>
  fetch(`${url}${path}`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
type Json = { columns: { name: string }[]; rows: Record<string, unknown>[]; summary?: Record<string, unknown>; parameters?: Record<string, string>; truncated: boolean };
const json = async (path: string): Promise<Json> => {
  const res = await get(path);
  expect(res.status, await res.clone().text()).toBe(200);
  return (await res.json()) as Json;
};

/** The console's evidence.accessed events on the log, oldest first. */
async function accesses(): Promise<AttestEvent<'evidence.accessed'>[]> {
  return (await readLog()).map((r) => r.event).filter((e): e is AttestEvent<'evidence.accessed'> => e.metadata.type === 'evidence.accessed' && e.metadata.producer === 'console-test');
}

/** A second console over the same store that verifies at most `maxVerifyEvents` events at once. */
async function withSmallConsole(maxVerifyEvents: number, fn: (url: string) => Promise<void>): Promise<void> {
  const small = await buildConsole({ store, verifier, auditorGroups: ['auditors'], emitter: consoleRt.emitter, jwks: () => ({ keys: [...consoleRt.keyring.jwks().keys, ...otherProducerKeys] }), panKey: consoleRt.panKey, logger: silent, cadence: CADENCE, maxVerifyEvents });
  try {
    await small.listen({ host: '127.0.0.1', port: 0 });
    const addr = small.server.address();
    await fn(`http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`);
  } finally {
    await small.close();
  }
}

function io(stdin?: string): CliIO & { out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    ...(stdin === undefined ? {} : { stdin: Readable.from([stdin]) }),
    env: { ATTEST_CONSOLE_URL: url, ATTEST_TOKEN: auditorToken },
    out: () => out,
    err: () => err,
  };
}

describe('authentication and the auditor role (PCI DSS 10.3.1)', () => {
  it('refuses a missing, forged or non-auditor token with stable codes, on every route', async () => {
    const developer = await dev.mint({ subject: 'dev-1', groups: ['developers'], audience: AUDIENCE, ttlSec: 600 });
    const wrongAudience = await dev.mint({ subject: 'auditor-1', groups: ['auditors'], audience: 'attest-dev', ttlSec: 600 });
    const forged = `${auditorToken.slice(0, -4)}AAAA`;
    for (const path of ['/v1/evidence/queries', '/v1/evidence/queries/pci.10.2.1.1', `/v1/sessions/${SESSION_CARD}`, '/v1/verify', '/.well-known/jwks.json']) {
      const none = await get(path, null);
      expect(none.status, path).toBe(401);
      expect(await none.json()).toEqual({ error: { code: 'auth_token_missing', message: expect.any(String) } });
      expect((await get(path, forged)).headers.get('x-attest-error')).toBe('auth_bad_signature');
      expect((await get(path, wrongAudience)).headers.get('x-attest-error')).toBe('auth_wrong_audience');
      const denied = await get(path, developer);
      expect(denied.status, path).toBe(403);
      const body = (await denied.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe('auditor_role_required');
      expect(body.error.message).toContain('auditors');
    }
    const lookup = await post('/v1/evidence/pan-lookup', { pan: VISA }, developer);
    expect(lookup.status).toBe(403);
    expect(await lookup.text()).not.toContain(VISA);
    expect((await get('/v1/evidence/queries')).status).toBe(200);
  });

  it('records refused attempts as evidence (auth.failed, policy.decided deny) and no access', async () => {
    const before = (await accesses()).length;
    const developer = await dev.mint({ subject: 'dev-2', groups: ['developers'], audience: AUDIENCE, ttlSec: 600 });
    await get('/v1/evidence/queries/pci.10.2.1.1', developer);
    await get('/v1/evidence/queries/pci.10.2.1.1', null);
    const events = (await readLog()).map((r) => r.event).filter((e) => e.metadata.producer === 'console-test');
    expect(events.some((e) => e.metadata.type === 'policy.decided' && e.actor.subject === 'dev-2' && e.outcome.status === 403)).toBe(true);
    expect(events.some((e) => e.metadata.type === 'auth.failed' && e.outcome.reason === 'token_missing')).toBe(true);
    expect((await accesses()).length).toBe(before);
  });
});

describe('evidence queries', () => {
  it('lists the catalog with requirement, description and columns', async () => {
    const res = await get('/v1/evidence/queries');
    const body = (await res.json()) as { queries: { name: string; requirement: string; description: string; columns: { name: string; description: string }[] }[] };
    expect(body.queries.map((q) => q.name)).toEqual(Object.keys(EVIDENCE_QUERIES));
    const q = body.queries.find((x) => x.name === 'pci.10.2.1.4')!;
    expect(q.requirement).toBe('10.2.1.4');
    expect(q.description).toContain('auth.failed');
    expect(q.columns.map((c) => c.name)).toContain('reason');
  });

  it('10.2.1.1 returns one row per exchange, attributed, flagged when card data was present; filters by subject, session and time', async () => {
    const all = await json('/v1/evidence/queries/pci.10.2.1.1');
    const rows = all.rows.filter((r) => /^req_\d$/.test(String(r.request_id)));
    expect(rows.map((r) => [r.request_id, r.actor_subject, r.session_id, r.card_data_present])).toEqual([
      ['req_1', 'agent-7', SESSION_CARD, true],
      ['req_2', 'agent-7', SESSION_CARD, true],
      ['req_3', 'agent-9', SESSION_PLAIN, false],
      ['req_4', 'agent-9', SESSION_PLAIN, false],
    ]);
    expect(rows[3]).toMatchObject({ outcome: 'failure', status: 403 });
    expect((await json('/v1/evidence/queries/pci.10.2.1.1?subject=agent-9')).rows.map((r) => r.request_id)).toEqual(['req_3', 'req_4']);
    const bySession = await json(`/v1/evidence/queries/pci.10.2.1.1?session=${SESSION_CARD}`);
    expect(bySession.rows.map((r) => r.request_id)).toEqual(['req_1', 'req_2']);
    expect(bySession.parameters).toEqual({ session: SESSION_CARD });
    const req2 = byRequest.get('req_2')![0]!.metadata.timeUs;
    const from = new Date(Math.floor(req2 / 1000)).toISOString();
    expect((await json(`/v1/evidence/queries/pci.10.2.1.1?from=${from}&subject=agent-7`)).rows.map((r) => r.request_id)).toEqual(['req_2']);
    expect((await json('/v1/evidence/queries/pci.10.2.1.1?to=2000-01-01')).rows).toEqual([]);
  });

  it('renders the same rows as JSON, CSV and a table', async () => {
    const j = await json('/v1/evidence/queries/pci.10.2.1.4');
    expect(j.rows.map((r) => [r.type, r.reason]).sort()).toEqual([
      ['auth.failed', 'bad_signature'],
      ['gateway.request.blocked', 'model not allowed'],
      ['policy.decided', 'model not allowed'],
    ]);
    const csv = await get('/v1/evidence/queries/pci.10.2.1.4?format=csv');
    expect(csv.headers.get('content-type')).toContain('text/csv');
    const lines = (await csv.text()).trimEnd().split('\r\n');
    expect(lines[0]).toBe(j.columns.map((c) => c.name).join(','));
    expect(lines).toHaveLength(1 + j.rows.length);
    expect(lines.some((l) => l.includes('auth.failed') && l.includes('bad_signature'))).toBe(true);
    const table = await (await get('/v1/evidence/queries/pci.10.2.1.4?format=table')).text();
    expect(table.split('\n')[0]).toBe('pci.10.2.1.4 Invalid logical access attempts (PCI DSS 10.2.1.4)');
    expect(table).toContain('3 rows');
    expect(table).toMatch(/auth\.failed .*bad_signature/);
  });

  it('answers every documented query with the expected evidence', async () => {
    const admin = await json('/v1/evidence/queries/pci.10.2.1.2');
    expect(admin.rows.some((r) => r.type === 'config.changed' && r.change === 'created')).toBe(true);
    expect(admin.rows.some((r) => r.type === 'key.rotated' && r.object === 'key:checkpoint_signing')).toBe(true);
    const creds = await json('/v1/evidence/queries/pci.10.2.1.5');
    expect(creds.rows.map((r) => r.subject)).toEqual(expect.arrayContaining(['key:checkpoint_signing', 'key:pan_hmac']));
    const startStop = await json('/v1/evidence/queries/pci.10.2.1.6');
    const gw = startStop.rows.filter((r) => r.producer === 'gateway-test').map((r) => [r.type, r.reason]);
    expect(gw).toEqual([
      ['audit.started', 'started'],
      ['audit.stopped', 'shutdown'],
    ]);
    const complete = await json('/v1/evidence/queries/pci.10.2.2');
    expect(complete.rows).toEqual([]);
    expect(complete.summary).toMatchObject({ missing: '0' });
    expect(Number(complete.summary!.checked)).toBeGreaterThan(20);
    const masking = await json('/v1/evidence/queries/pci.3.4.1.masking');
    expect(masking.rows.map((r) => [r.rule_id, r.direction, r.action, Number(r.hits)]).sort()).toEqual([
      ['builtin.pan', 'request', 'masked', 1],
      ['builtin.pan', 'response', 'masked', 1],
    ]);
    const scan = await json('/v1/evidence/queries/pci.3.4.1.pan-scan');
    expect(scan.rows).toEqual([]);
    expect(scan.summary).toMatchObject({ pan_findings: 0 });
    const retention = await json('/v1/evidence/queries/pci.10.5.1');
    expect(retention.rows.map((r) => [r.table_name, r.ttl_days])).toEqual([
      ['events', 365],
      ['pan_sightings', 365],
    ]);
    // Every catalog query answers in every format.
    for (const name of Object.keys(EVIDENCE_QUERIES).filter((n) => n !== 'pan-lookup' && n !== 'session-replay')) {
      for (const format of ['json', 'csv', 'table']) expect((await get(`/v1/evidence/queries/${name}?format=${format}`)).status, `${name} ${format}`).toBe(200);
    }
  });

  it('refuses bad input with a 400 naming the parameter, and an unknown query with the known ones', async () => {
    const cases: [string, string, string][] = [
      ['/v1/evidence/queries/pci.10.2.1.1?from=yesterday', 'invalid_parameter', 'from'],
      ['/v1/evidence/queries/pci.10.2.1.1?to=2026-13-45T00:00:00Z', 'invalid_parameter', 'to'],
      ['/v1/evidence/queries/pci.10.2.1.1?from=2026-02-01&to=2026-01-01', 'invalid_parameter', 'to'],
      ['/v1/evidence/queries/pci.10.2.1.1?format=xml', 'invalid_parameter', 'format'],
      ['/v1/evidence/queries/pci.10.2.1.1?limit=0', 'invalid_parameter', 'limit'],
      ['/v1/evidence/queries/pci.10.2.1.1?subjet=x', 'invalid_parameter', 'subjet'],
      ['/v1/evidence/queries/pci.10.2.1.1?subject=a&subject=b', 'invalid_parameter', 'subject'],
      ['/v1/evidence/queries/pan-lookup', 'invalid_parameter', 'name'],
    ];
    for (const [path, code, parameter] of cases) {
      const res = await get(path);
      expect(res.status, path).toBe(400);
      const body = (await res.json()) as { error: { code: string; parameter: string; message: string } };
      expect(body.error, path).toMatchObject({ code, parameter });
      expect(body.error.message, path).toContain(parameter === 'name' ? 'POST /v1/evidence/pan-lookup' : parameter);
    }
    const unknown = await get('/v1/evidence/queries/pci.99');
    expect(unknown.status).toBe(404);
    const body = (await unknown.json()) as { error: { code: string; known: string[] } };
    expect(body.error.code).toBe('unknown_query');
    expect(body.error.known).toEqual(Object.keys(EVIDENCE_QUERIES));
  });

  it('caps rows with limit and says the result was truncated', async () => {
    const res = await get('/v1/evidence/queries/pci.10.2.1.1?limit=2');
    expect(res.headers.get('x-attest-truncated')).toBe('true');
    const body = (await res.json()) as Json;
    expect(body.rows).toHaveLength(2);
    expect(body.truncated).toBe(true);
  });
});

describe('session replay', () => {
  it("returns one session's events in order, with their payloads", async () => {
    const body = await json(`/v1/sessions/${SESSION_CARD}`);
    const expected = [...byRequest.get('req_1')!, ...byRequest.get('req_2')!];
    expect(body.rows.map((r) => r.event_id)).toEqual(expected.map((e) => e.metadata.eventId));
    expect(body.rows.map((r) => r.type)).toEqual([
      'gateway.request.received', 'policy.decided', 'data.masked', 'gateway.request.forwarded', 'gateway.response.completed',
      'gateway.request.received', 'policy.decided', 'gateway.request.forwarded', 'gateway.response.completed', 'data.masked',
    ]);
    expect(String(body.rows[4]!.payload)).toContain('"content":"done"');
    const csv = await (await get(`/v1/sessions/${SESSION_CARD}?format=csv`)).text();
    expect(csv.trimEnd().split('\r\n')).toHaveLength(11);
    const missing = await get('/v1/sessions/no-such-session');
    expect(missing.status).toBe(404);
    expect(((await missing.json()) as { error: { code: string } }).error.code).toBe('session_not_found');
  });
});

describe('card lookup (PCI DSS 3.5.1.1, 12.10.7)', () => {
  it('finds where a card appeared by its keyed HMAC and answers with BIN and last four only', async () => {
    const res = await post('/v1/evidence/pan-lookup', { pan: '4111 1111 1111 1111' });
    const text = await res.text();
    expect(res.status, text).toBe(200);
    expect(text).not.toContain(VISA);
    const body = JSON.parse(text) as Json;
    const masked = byRequest.get('req_1')!.find((e) => e.metadata.type === 'data.masked')!;
    expect(body.rows).toEqual([expect.objectContaining({ bin: '411111', last4: '1111', direction: 'request', request_id: 'req_1', session_id: SESSION_CARD, event_id: masked.metadata.eventId, location: 'messages[0].content', action: 'masked' })]);
    expect(body.parameters).toMatchObject({ bin: '411111', last4: '1111', fingerprint: Buffer.from(consoleRt.panKey.hash(VISA), 'base64url').toString('hex') });
    const mc = JSON.parse(await (await post('/v1/evidence/pan-lookup', { pan: MASTERCARD })).text()) as Json;
    expect(mc.rows.map((r) => [r.request_id, r.direction, r.bin, r.last4])).toEqual([['req_2', 'response', '555555', '4444']]);
    const none = JSON.parse(await (await post('/v1/evidence/pan-lookup', { pan: '378282246310005' })).text()) as Json;
    expect(none.rows).toEqual([]);
  });

  it('refuses what is not a card number without echoing it, and never logs or records the number', async () => {
    for (const pan of ['4111111111111112', '12345', 4111111111111111]) {
      const res = await post('/v1/evidence/pan-lookup', { pan });
      expect(res.status).toBe(400);
      const text = await res.text();
      expect(JSON.parse(text)).toMatchObject({ error: { code: 'pan_invalid', parameter: 'pan' } });
      expect(text).not.toContain('411111111111111');
    }
    const bad = await fetch(`${url}/v1/evidence/pan-lookup`, { method: 'POST', headers: { authorization: `Bearer ${auditorToken}`, 'content-type': 'application/json' }, body: `{"pan": "${VISA}"` });
    expect(bad.status).toBe(400);
    expect(await bad.text()).not.toContain(VISA);
    const lookups = (await accesses()).filter((e) => e.payload.queryId === 'pan-lookup');
    expect(lookups.length).toBeGreaterThanOrEqual(3);
    for (const e of lookups) expect(JSON.stringify(e.payload)).not.toMatch(/4111111111111111|5555555555554444|378282246310005/);
    const everything = (await readLog()).map((r) => Buffer.from(r.bytes).toString('latin1')).join('\n');
    expect(everything).not.toContain(VISA);
    expect(logLines.join('')).not.toMatch(/4111111111111111|4111 1111|5555555555554444/);
  });
});

describe('every access is evidence (PCI DSS 10.2.1.3)', () => {
  it('records each query, export, replay, lookup and verification as evidence.accessed before answering', async () => {
    const before = (await accesses()).length;
    await get('/v1/evidence/queries/pci.10.2.1.4?subject=agent-9&format=table');
    await get('/v1/evidence/queries/pci.10.2.1.1?format=csv&session=sess-plain-2');
    await get(`/v1/sessions/${SESSION_PLAIN}`);
    await post('/v1/evidence/pan-lookup', { pan: VISA });
    await get('/v1/verify');
    const after = (await accesses()).slice(before);
    expect(after.map((e) => [e.payload.accessKind, e.payload.queryId, e.payload.format])).toEqual([
      ['query', 'pci.10.2.1.4', 'table'],
      ['export', 'pci.10.2.1.1', 'csv'],
      ['query', 'session-replay', 'json'],
      ['query', 'pan-lookup', 'json'],
      ['verify', 'verify', 'json'],
    ]);
    for (const e of after) {
      expect(e.actor).toMatchObject({ subject: 'auditor-1', groups: ['qsa', 'auditors'], dev: true });
      expect(e.source.address).toBe('127.0.0.1');
      expect(e.target).toMatchObject({ protocol: 'http', service: 'attest:console' });
      expect(e.outcome).toMatchObject({ result: 'success', status: 200 });
    }
    expect(after[0]!.payload.parameters).toEqual({ actor: 'agent-9' });
    expect(after[0]!.payload.rowCount).toBe(2);
    expect(after[1]!.payload.parameters).toEqual({ session: SESSION_PLAIN });
    expect(after[1]!.payload.exportDigest).toHaveLength(32);
    expect(after[2]!.payload.rowCount).toBe(7);
    expect(after[3]!.payload.parameters).toMatchObject({ bin: '411111', last4: '1111' });
    // Written to the store, the accesses answer the 10.2.1.3 query themselves.
    await syncStore();
    const audit = await json('/v1/evidence/queries/pci.10.2.1.3?subject=auditor-1');
    expect(audit.rows.map((r) => r.access_kind)).toEqual(expect.arrayContaining(['query', 'export', 'verify']));
    expect(audit.rows.length).toBeGreaterThanOrEqual(after.length);
  });

  it('fails closed: 503 evidence_unavailable and no rows when the access cannot be recorded', async () => {
    const broken = await EvidenceEmitter.open({ log: new MemoryEventLog(), keyring: consoleRt.keyring, producerId: 'broken', tenantId: 'acme', checkpoints: checkpointFile(join(dir, 'broken'), 'broken'), logger: silent, cadence: CADENCE });
    await broken.close();
    const failing = await buildConsole({ store, verifier, auditorGroups: ['auditors'], emitter: broken, jwks: () => consoleRt.keyring.jwks(), panKey: consoleRt.panKey, logger: silent, cadence: CADENCE });
    try {
      for (const [method, path] of [['GET', '/v1/evidence/queries/pci.10.2.1.1'], ['GET', `/v1/sessions/${SESSION_CARD}`], ['GET', '/v1/verify'], ['POST', '/v1/evidence/pan-lookup']] as const) {
        const res = await failing.inject({ method, url: path, headers: { authorization: `Bearer ${auditorToken}` }, ...(method === 'POST' ? { payload: { pan: VISA } } : {}) });
        expect(res.statusCode, path).toBe(503);
        expect(res.json()).toEqual({ error: { code: 'evidence_unavailable', message: expect.any(String) } });
        expect(res.body).not.toContain('req_1');
      }
    } finally {
      await failing.close();
    }
  });
});

describe('verification of the store (PCI DSS 10.3.4)', () => {
  it('reports intact evidence, over everything and over a window', async () => {
    const res = await get('/v1/verify');
    const report = (await res.json()) as { ok: boolean; findings: unknown[]; stats: { events: number; checkpoints: number; trustedCheckpoints: number; attestedEvents: number } };
    expect(report.findings).toEqual([]);
    expect(report.ok).toBe(true);
    const gatewayEvents = (await readLog()).filter((r) => r.event.metadata.producer === 'gateway-test' && r.event.metadata.type !== 'integrity.checkpoint');
    expect(report.stats.events).toBeGreaterThanOrEqual(gatewayEvents.length);
    expect(report.stats.trustedCheckpoints).toBe(report.stats.checkpoints);
    expect(report.stats.attestedEvents).toBeGreaterThanOrEqual(gatewayEvents.length);
    // A window starting mid-run: straddling checkpoints are checked whole, nothing is reported missing.
    const mid = byRequest.get('req_3')![0]!.metadata.timeUs;
    const windowed = (await (await get(`/v1/verify?from=${mid}`)).json()) as { ok: boolean; findings: unknown[]; stats: { events: number } };
    expect(windowed.findings).toEqual([]);
    expect(windowed.ok).toBe(true);
    expect(windowed.stats.events).toBeLessThan(report.stats.events);
  });

  it('refuses a window larger than one verification may hold in memory, with the count and what to do', async () => {
    const small = await buildConsole({ store, verifier, auditorGroups: ['auditors'], emitter: consoleRt.emitter, jwks: () => consoleRt.keyring.jwks(), panKey: consoleRt.panKey, logger: silent, cadence: CADENCE, maxVerifyEvents: 10 });
    try {
      const all = await small.inject({ method: 'GET', url: '/v1/verify', headers: { authorization: `Bearer ${auditorToken}` } });
      expect(all.statusCode).toBe(413);
      const body = all.json() as { error: { code: string; message: string; events: number; max: number } };
      expect(body.error).toMatchObject({ code: 'verify_window_too_large', max: 10, message: expect.stringMatching(/smaller windows with from= and to=/) });
      expect(body.error.events).toBeGreaterThan(10);
      // A window that holds few enough events is verified as usual.
      const t = byRequest.get('req_1')![0]!.metadata.timeUs;
      const narrow = await small.inject({ method: 'GET', url: `/v1/verify?from=${new Date(Math.floor(t / 1000)).toISOString()}&to=${new Date(Math.floor(t / 1000) + 1).toISOString()}`, headers: { authorization: `Bearer ${auditorToken}` } });
      expect(narrow.statusCode, narrow.body).toBe(200);
    } finally {
      await small.close();
    }
  });

  it('CLI: verify splits a window the console refuses as too large into slices, and reports them as one', async () => {
    const whole = (await (await get('/v1/verify')).json()) as { ok: boolean; stats: { events: number } };
    expect(whole.ok).toBe(true);
    await withSmallConsole(12, async (smallUrl) => {
      const j = io();
      const code = await verify(['--format', 'json', '--url', smallUrl], j);
      expect(code, j.err()).toBe(0);
      expect(j.err()).toMatch(/more than the console verifies at once \(12\): verifying it in \d+ slices/);
      const report = JSON.parse(j.out()) as { ok: boolean; findings: unknown[]; slices: { from: string; to: string }[]; stats: { events: number } };
      expect(report.ok).toBe(true);
      expect(report.findings).toEqual([]);
      expect(report.slices.length).toBeGreaterThan(1);
      // Every stored event was in some slice (straddling checkpoints are read by both neighbours).
      expect(report.stats.events).toBeGreaterThanOrEqual(whole.stats.events);
      const human = io();
      expect(await verify(['--url', smallUrl], human)).toBe(0);
      expect(human.out()).toMatch(/Evidence intact\.[\s\S]*slices: +\d+/);
    });
  });

  it('CLI: verify exits 0 on intact evidence and prints the JSON report with --format json', async () => {
    const human = io();
    expect(await verify([], human)).toBe(0);
    expect(human.out()).toMatch(/^Evidence intact\./);
    const j = io();
    expect(await verify(['--format', 'json'], j)).toBe(0);
    expect(JSON.parse(j.out())).toMatchObject({ ok: true, findings: [] });
  });

  it('without to=, verifies through the time the store holds every running producer\'s evidence: ingestion lag is not a silence', async () => {
    type Report = { ok: boolean; findings: { code: string; producer: string }[]; window: { to: string; toBasis?: string } };
    // A producer whose stored evidence ends two minutes ago (its later checkpoints not ingested yet).
    let clockUs = Date.now() * 1000 - 120_000_000;
    const lagLog = new MemoryEventLog();
    // Its own key, created on its clock (a checkpoint may not predate its key's validity).
    const lagKeys = await Keyring.open(new InMemoryKeyStore(), { clock: { nowUs: () => clockUs } });
    await lagKeys.rotate();
    otherProducerKeys.push(...lagKeys.jwks().keys);
    const verifyAt = async (path: string): Promise<Report> => {
      const res = await get(path);
      expect(res.status).toBe(200);
      return (await res.json()) as Report;
    };
    const lagging = await EvidenceEmitter.open({ log: lagLog, keyring: lagKeys, producerId: 'lagging-test', tenantId: 'acme', checkpoints: memoryCheckpoints(), logger: silent, cadence: CADENCE, clock: { nowUs: () => clockUs } });
    const storeLagLog = async () => {
      const c = await lagLog.consumer(`lag-${Math.random()}`, { startFrom: 'earliest' });
      const rows = (await c.poll(1000, 50)).map((r) => toStoredEvent(decodeEvent(r.value).event as AttestEvent, r.value, createHash('sha256').update(r.value).digest()));
      await c.close();
      await store.insertEvents(rows, `test:${++insertRound}`);
    };
    await lagging.emit(
      [lagging.build('config.changed', { actor: systemActor('lagging-test'), source: { address: 'local', userAgent: null }, target: { protocol: 'internal', service: 'attest', resource: 'policy', model: null }, outcome: { result: 'success', status: null, reason: null }, correlation: { sessionId: 'lag', requestId: 'lag-1', upstreamRequestId: null }, payload: { objectKind: 'policy', what: 'policy', change: 'updated', oldVersion: null, newVersion: '2', oldDigest: null, newDigest: null, override: false, summary: null } })],
      'lag',
    );
    await lagging.checkpoint();
    await storeLagLog();

    const fixed = await verifyAt(`/v1/verify?to=${encodeURIComponent(new Date().toISOString())}`);
    expect(fixed.findings, 'with to=now the two lagging minutes read as a silence').toContainEqual(expect.objectContaining({ code: 'time_gap', producer: 'lagging-test' }));
    const dflt = await verifyAt('/v1/verify');
    expect(dflt.findings).toEqual([]);
    expect(dflt.ok).toBe(true);
    expect(Date.parse(dflt.window.to)).toBeLessThan(Date.now() - 100_000);
    expect(dflt.window.toBasis).toMatch(/latest stored checkpoint of lagging-test/);

    // Stopped cleanly, it no longer holds the window back.
    clockUs += 1_000;
    await lagging.close();
    await storeLagLog();
    const after = await verifyAt('/v1/verify');
    expect(after.findings).toEqual([]);
    expect(after.window.toBasis ?? '').not.toMatch(/lagging-test/);
  });

  // Last: it alters the store.
  it('names exactly the altered event after its stored bytes are changed, and the CLI exits non-zero', async () => {
    const victim = byRequest.get('req_3')!.find((e) => e.metadata.type === 'gateway.request.forwarded')!;
    const original = (await readLog()).find((r) => r.event.metadata.eventId === victim.metadata.eventId)!;
    // A well-formed event with the same place in the chain and one field changed: what an insider
    // editing the store would write. Only its hash no longer matches what its successor recorded.
    const forged = encodeEvent({ ...original.event, actor: { ...original.event.actor, subject: 'someone-else' } } as AnyAttestEvent);
    expect(Buffer.compare(forged, Buffer.from(original.bytes))).not.toBe(0);
    // The store's port has no update path (PCI DSS 10.3.2); the engine's does, and that is what is
    // used here, through query(). A mutation returns no result set, which query() reports as a failure.
    await store.query("ALTER TABLE events UPDATE event_bytes = unhex({b:String}) WHERE event_id = {id:UUID} SETTINGS mutations_sync = 2", { b: forged.toString('hex'), id: victim.metadata.eventId }).catch(() => undefined);
    const now = await store.query('SELECT hex(event_bytes) FROM events WHERE event_id = {id:UUID}', { id: victim.metadata.eventId });
    expect(String(now.rows[0]?.[0]).toLowerCase()).toBe(forged.toString('hex'));

    const report = (await (await get('/v1/verify')).json()) as { ok: boolean; findings: { code: string; producer: string; eventIds: string[]; sequences: { from: number; to: number } }[] };
    expect(report.ok).toBe(false);
    expect(report.findings).toEqual([expect.objectContaining({ code: 'altered', producer: 'gateway-test', eventIds: [victim.metadata.eventId], sequences: { from: victim.metadata.sequence, to: victim.metadata.sequence } })]);

    const human = io();
    expect(await verify([], human)).toBe(1);
    expect(human.out()).toContain('Evidence NOT intact: 1 finding.');
    expect(human.out()).toContain(`ALTERED gateway-test`);
    expect(human.out()).toContain(victim.metadata.eventId);
    const j = io();
    expect(await verify(['--format', 'json'], j)).toBe(1);
    expect(JSON.parse(j.out()).findings[0].eventIds).toEqual([victim.metadata.eventId]);
    // Verified in slices, the same single finding.
    await withSmallConsole(12, async (smallUrl) => {
      const sliced = io();
      expect(await verify(['--format', 'json', '--url', smallUrl], sliced)).toBe(1);
      const r = JSON.parse(sliced.out()) as { slices: unknown[]; findings: { code: string; eventIds: string[] }[] };
      expect(r.slices.length).toBeGreaterThan(1);
      expect(r.findings).toEqual([expect.objectContaining({ code: 'altered', eventIds: [victim.metadata.eventId] })]);
    });
  });

  it('names a stored event whose bytes no longer decode, instead of failing the whole verification', async () => {
    const victim = byRequest.get('req_1')!.find((e) => e.metadata.type === 'policy.decided')!;
    await store.query("ALTER TABLE events UPDATE event_bytes = unhex('c301deadbeef') WHERE event_id = {id:UUID} SETTINGS mutations_sync = 2", { id: victim.metadata.eventId }).catch(() => undefined);
    const res = await get('/v1/verify');
    expect(res.status).toBe(200);
    const report = (await res.json()) as { ok: boolean; findings: { code: string; eventIds: string[]; sequences: { from: number; to: number } | null }[] };
    expect(report.ok).toBe(false);
    const seq = { from: victim.metadata.sequence, to: victim.metadata.sequence };
    expect(report.findings).toEqual(expect.arrayContaining([expect.objectContaining({ code: 'undecodable', eventIds: [victim.metadata.eventId], sequences: seq }), expect.objectContaining({ code: 'deleted', sequences: seq })]));
    const human = io();
    expect(await verify([], human)).toBe(1);
    expect(human.out()).toContain(`UNDECODABLE gateway-test sequence ${victim.metadata.sequence} event ${victim.metadata.eventId}`);
  });
});

describe('tampering with the store: deleted, inserted and reordered events are named (PCI DSS 10.3.4)', () => {
  type Report = { ok: boolean; findings: { code: string; producer: string; eventIds: string[]; sequences: { from: number; to: number } | null; detail: string }[] };
  const report = async () => (await (await get('/v1/verify')).json()) as Report;
  /** The engine's mutation path (the store's port has none: PCI DSS 10.3.2), as an insider would use it. */
  const mutate = (sql: string, params: Record<string, string>) => store.query(`${sql} SETTINGS mutations_sync = 2`, params).catch(() => undefined);
  const stored = async (id: string) => Number((await store.query('SELECT count() FROM events WHERE event_id = {id:UUID}', { id })).rows[0]![0]);

  it('a deleted event: verify names its sequence as deleted and the CLI exits non-zero', async () => {
    const victim = byRequest.get('req_2')!.find((e) => e.metadata.type === 'policy.decided')!;
    await mutate('ALTER TABLE events DELETE WHERE event_id = {id:UUID}', { id: victim.metadata.eventId });
    expect(await stored(victim.metadata.eventId)).toBe(0);
    const r = await report();
    expect(r.ok).toBe(false);
    const seq = { from: victim.metadata.sequence, to: victim.metadata.sequence };
    expect(r.findings).toContainEqual(expect.objectContaining({ code: 'deleted', producer: 'gateway-test', sequences: seq }));
    const human = io();
    expect(await verify([], human)).toBe(1);
    expect(human.out()).toMatch(new RegExp(`DELETED gateway-test .*sequence ${victim.metadata.sequence}\\b`));
  });

  it('an inserted event (a well-formed copy under a new id claiming a taken position): verify names exactly that event', async () => {
    const model = byRequest.get('req_1')!.find((e) => e.metadata.type === 'gateway.request.forwarded')!;
    const forgedId = '01963e3c-8f2a-7b41-9c3d-5a6b7c8d9e0f';
    const forged = { ...model, metadata: { ...model.metadata, eventId: forgedId }, actor: { ...model.actor, subject: 'mallory' } } as AnyAttestEvent;
    const bytes = encodeEvent(forged);
    await store.insertEvents([toStoredEvent(forged as unknown as AttestEvent, bytes, createHash('sha256').update(bytes).digest())], `tamper:${++insertRound}`);
    expect(await stored(forgedId)).toBe(1);
    const r = await report();
    expect(r.findings).toContainEqual(expect.objectContaining({ code: 'inserted', eventIds: [forgedId], sequences: { from: model.metadata.sequence, to: model.metadata.sequence } }));
    // The genuine event at that position is not blamed.
    expect(r.findings.some((f) => f.eventIds.includes(model.metadata.eventId))).toBe(false);
    const j = io();
    expect(await verify(['--format', 'json'], j)).toBe(1);
    expect((JSON.parse(j.out()) as Report).findings.some((f) => f.code === 'inserted' && f.eventIds[0] === forgedId)).toBe(true);
  });

  it('a reordered event (deleted and stored again, byte for byte, after later ones): named as reordered, content intact', async () => {
    const victim = byRequest.get('req_4')!.find((e) => e.metadata.type === 'gateway.request.received')!;
    const original = (await readLog()).find((r) => r.event.metadata.eventId === victim.metadata.eventId)!;
    await mutate('ALTER TABLE events DELETE WHERE event_id = {id:UUID}', { id: victim.metadata.eventId });
    await store.insertEvents([toStoredEvent(original.event as AttestEvent, original.bytes, createHash('sha256').update(original.bytes).digest())], `tamper:${++insertRound}`);
    expect(await stored(victim.metadata.eventId)).toBe(1);
    const r = await report();
    expect(r.findings).toContainEqual(expect.objectContaining({ code: 'reordered', eventIds: [victim.metadata.eventId], detail: expect.stringMatching(/content and chain position are intact/) }));
    expect(r.findings.some((f) => f.code === 'altered' && f.eventIds.includes(victim.metadata.eventId))).toBe(false);
    const human = io();
    expect(await verify([], human)).toBe(1);
    expect(human.out()).toContain(`REORDERED gateway-test`);
  });
});

describe('the attest auditor commands', () => {
  it('evidence query: lists the catalog, runs a query in each format, names an unknown query and lists the known ones', async () => {
    const list = io();
    expect(await evidenceQuery([], list)).toBe(0);
    expect(list.out()).toMatch(/^pci\.10\.2\.1\.1\s+PCI DSS 10\.2\.1\.1: Individual access to cardholder data$/m);
    const table = io();
    expect(await evidenceQuery(['pci.10.2.1.4', '--subject', 'agent-9'], table)).toBe(0);
    expect(table.out()).toContain('Invalid logical access attempts');
    expect(table.out()).toContain('2 rows');
    const csv = io();
    expect(await evidenceQuery(['pci.10.2.1.1', '--session', SESSION_CARD, '--format', 'csv'], csv)).toBe(0);
    expect(csv.out().trimEnd().split('\r\n')).toHaveLength(3);
    const j = io();
    expect(await evidenceQuery(['pci.10.2.1.1', '--format', 'json', '--from', '2000-01-01T00:00:00Z', '--to', '2001-01-01'], j)).toBe(0);
    expect(JSON.parse(j.out()).rows).toEqual([]);
    const unknown = io();
    expect(await evidenceQuery(['pci.99'], unknown)).toBe(2);
    expect(unknown.err()).toContain('unknown evidence query');
    expect(unknown.err()).toContain('  pci.10.2.1.4');
    const badParam = io();
    expect(await evidenceQuery(['pci.10.2.1.1', '--from', 'yesterday'], badParam)).toBe(2);
    expect(badParam.err()).toContain('[parameter: from]');
  });

  it('sessions show, keys export', async () => {
    const s = io();
    expect(await sessionsShow([SESSION_PLAIN, '--format', 'json'], s)).toBe(0);
    expect(JSON.parse(s.out()).rows.map((r: { request_id: string }) => r.request_id)).toEqual(['req_3', 'req_3', 'req_3', 'req_3', 'req_4', 'req_4', 'req_4']);
    const missing = io();
    expect(await sessionsShow(['nope'], missing)).toBe(1);
    expect(missing.err()).toContain("no events for session 'nope'");
    const keys = io();
    expect(await keysExport([], keys)).toBe(0);
    expect(JSON.parse(keys.out())).toEqual({ keys: [...consoleRt.keyring.jwks().keys, ...otherProducerKeys] });
  });

  it('pan-lookup reads the number from stdin only, prints BIN and last four, and refuses it in argv', async () => {
    const ok = io(`${VISA}\n`);
    expect(await panLookup([], ok)).toBe(0);
    expect(ok.out()).toContain('411111');
    expect(ok.out()).toContain('req_1');
    expect(ok.out()).not.toContain(VISA);
    const argv = io('');
    expect(await panLookup([VISA], argv)).toBe(2);
    expect(argv.err()).toContain('stdin');
    expect(argv.err()).not.toContain(VISA);
    const flag = io('');
    expect(await panLookup([`--pan=${VISA}`], flag)).toBe(2);
    expect(flag.err()).not.toContain(VISA);
    const empty = io('');
    expect(await panLookup([], empty)).toBe(2);
  });

  it('explains an unreachable console, a refused token, a non-auditor and a missing token', async () => {
    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const down = io();
    expect(await verify(['--url', `http://127.0.0.1:${port}`], down)).toBe(3);
    expect(down.err()).toContain(`cannot reach the Attest console at http://127.0.0.1:${port} (ECONNREFUSED)`);
    const expired = io();
    expect(await evidenceQuery(['pci.10.2.1.1', '--token', 'not-a-jwt'], expired)).toBe(3);
    expect(expired.err()).toContain('refused the token (auth_token_malformed)');
    const developer = await dev.mint({ subject: 'dev-3', groups: ['developers'], audience: AUDIENCE, ttlSec: 600 });
    const denied = io();
    expect(await keysExport(['--token', developer], denied)).toBe(3);
    expect(denied.err()).toContain('not allowed (auditor_role_required)');
    const noToken: CliIO & { err?: () => string } = { stdout: new PassThrough(), stderr: { write: () => true }, env: { ATTEST_CONSOLE_URL: url } };
    expect(await verify([], noToken)).toBe(2);
  });
});
