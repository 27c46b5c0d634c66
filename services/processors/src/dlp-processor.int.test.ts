/**
 * The DLP processor with real parts: an in-memory evidence log (same semantics as the embedded log),
 * real signing emitters and one keyring (a "gateway" producer and the processor's own), the real DLP
 * engine and PAN HMAC key. A response that the gateway masked (PAN → BIN…last four) but that still
 * carries a CVV next to the masked PAN and an AWS secret key must give one derived, signed data.masked
 * naming the original by id and chain hash, and data security findings, without any value; once,
 * across redeliveries and restarts; and every chain must still verify.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { checkpointFile, EvidenceEmitter } from '../../common/src/evidence/emitter';
import { panHmacKeyFrom } from '../../common/src/evidence/pan-hmac';
import { verifyEncodedEvents } from '../../common/src/evidence/verify-events';
import { decodeEvent, type AnyAttestEvent, type PayloadOf } from '../../common/src/events';
import { SAMPLE_PARTS } from '../../common/src/events/fixtures';
import { DEFAULT_CADENCE, InMemoryKeyStore, Keyring, sha256 } from '../../common/src/integrity';
import { MemoryEventLog, type ConsumedRecord } from '../../common/src/log';
import { dlpPolicySchema } from '../../common/src/dlp/index';
import { CONTENT_FIELDS, DLP_ACTOR, DlpProcessor, type ContentRow, type DlpProcessorOptions } from './dlp-processor';
import { FileSnapshotStore, type SnapshotOptions } from './snapshot-store';
import { capturingLogger } from './test-logger';

const logger = pino({ level: 'silent' });
const AWS_SECRET = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
const CVV_TEXT = 'cvv 737';
/** Card data (card, SAD) and secrets are data security findings. */
const policy = dlpPolicySchema.parse({ dataSecurityCategories: ['card', 'sad', 'secret'] });
const panKey = panHmacKeyFrom('pan-hmac-test', randomBytes(32));

interface Rig {
  log: MemoryEventLog;
  keyring: Keyring;
  gateway: EvidenceEmitter;
  dir: string;
  processors: DlpProcessor[];
  emitters: EvidenceEmitter[];
}

let rig: Rig | undefined;

async function setup(): Promise<Rig> {
  const dir = mkdtempSync(join(tmpdir(), 'attest-dlp-'));
  const log = new MemoryEventLog({ partitions: 4 });
  const keyring = await Keyring.open(new InMemoryKeyStore());
  await keyring.rotate();
  const gateway = await EvidenceEmitter.open({ log, keyring, producerId: 'gateway-test', tenantId: 'acme', checkpoints: checkpointFile(dir, 'gateway-test'), logger });
  rig = { log, keyring, gateway, dir, processors: [], emitters: [gateway] };
  return rig;
}

async function processor(r: Rig, extra: Partial<DlpProcessorOptions> = {}): Promise<DlpProcessor> {
  const emitter = await EvidenceEmitter.open({ log: r.log, keyring: r.keyring, producerId: 'dlp-test', tenantId: 'acme', checkpoints: checkpointFile(r.dir, 'dlp-test'), logger });
  r.emitters.push(emitter);
  const p = new DlpProcessor({ log: r.log, emitter, policy, panKey, logger, retry: { initialMs: 20, maxMs: 100 }, maxWaitMs: 20, ...extra });
  r.processors.push(p);
  return p;
}

/** A Messages API response body as the gateway keeps it (PAN already masked inline). */
function body(blocks: string[]): string {
  return JSON.stringify({
    id: 'msg_01',
    type: 'message',
    role: 'assistant',
    model: 'claude-sonnet-4-5',
    content: blocks.map((text) => ({ type: 'text', text })),
    stop_reason: 'end_turn',
    usage: { input_tokens: 10, output_tokens: 20 },
  });
}

const LEAKY = body([`The card on file is 411111******1111 ${CVV_TEXT}, expiring soon.`, `Deploy with aws_secret_access_key = ${AWS_SECRET} in the env.`]);
const CLEAN = body(['The card ending in 1111 (BIN 411111) was declined: insufficient funds.', 'Masked: 411111******1111. Nothing else to see here, order #4521 ships on 2024-05-01.']);

let n = 0;
/** A gateway.response.completed, durably on the log; returns its id. */
async function respond(r: Rig, content: string, session = 'sess-1'): Promise<string> {
  n++;
  const { tenantId: _t, ...parts } = SAMPLE_PARTS['gateway.response.completed'];
  const [e] = await r.gateway.emit(
    [
      r.gateway.build('gateway.response.completed', {
        ...parts,
        correlation: { sessionId: session, requestId: `req-${n}`, upstreamRequestId: null },
        payload: { ...parts.payload, stream: false, content, contentBytes: Buffer.byteLength(content), contentDigest: Buffer.from(sha256(Buffer.from(content))) },
      }),
    ],
    session,
  );
  return e!.metadata.eventId;
}

/**
 * A Messages API request body as gateway.request.received v2 keeps it (`content`: the forwarded body,
 * PAN already masked inline): a system prompt and one user turn of text blocks.
 */
function requestBody(blocks: string[]): string {
  return JSON.stringify({
    model: 'claude-sonnet-4-5',
    max_tokens: 1024,
    system: 'You are a deployment assistant.',
    messages: [{ role: 'user', content: blocks.map((text) => ({ type: 'text', text })) }],
  });
}

/** A gateway.request.received (version 2, with content), durably on the log; returns its id. */
async function receive(r: Rig, content: string | null, session = 'sess-1'): Promise<string> {
  n++;
  const { tenantId: _t, ...parts } = SAMPLE_PARTS['gateway.request.received'];
  const bytes = content === null ? 0 : Buffer.byteLength(content);
  const [e] = await r.gateway.emit(
    [
      r.gateway.build('gateway.request.received', {
        ...parts,
        correlation: { sessionId: session, requestId: `req-${n}`, upstreamRequestId: null },
        payload: { ...parts.payload, stream: false, content, bodyBytes: bytes, bodyDigest: Buffer.from(sha256(Buffer.from(content ?? ''))) },
      }),
    ],
    session,
  );
  return e!.metadata.eventId;
}

async function records(log: MemoryEventLog): Promise<ConsumedRecord[]> {
  const c = await log.consumer(`read-${Math.random().toString(36).slice(2)}`, { startFrom: 'earliest' });
  const out: ConsumedRecord[] = [];
  for (;;) {
    const batch = await c.poll(10_000, 20);
    if (batch.length === 0) break;
    out.push(...batch);
  }
  await c.close();
  return out;
}

const decoded = (rs: ConsumedRecord[]) => rs.map((x) => decodeEvent(x.value).event as AnyAttestEvent);
const ofType = (evs: AnyAttestEvent[], type: string) => evs.filter((e) => e.metadata.type === type);
const byDlp = (evs: AnyAttestEvent[]) => evs.filter((e) => e.metadata.producer === 'dlp-test' && e.metadata.type !== 'integrity.checkpoint');
const committed = (r: Rig, group = 'dlp') => (r.log.storage.groups.get(group) ?? []).reduce((a, b) => a + b, 0);
const ends = async (r: Rig) => (await r.log.endOffsets()).reduce((a, b) => a + b, 0);

afterEach(async () => {
  const r = rig;
  rig = undefined;
  if (r === undefined) return;
  for (const p of r.processors) await p.stop();
  for (const e of r.emitters) await e.close();
  await r.log.close();
  rmSync(r.dir, { recursive: true, force: true });
});

describe('dlp processor', () => {
  it('derives a signed data.masked naming the original by id and chain hash, raises findings, holds no value; every chain still verifies', async () => {
    const r = await setup();
    const p = await processor(r);
    await p.start();
    const leakyId = await respond(r, LEAKY);
    await respond(r, CLEAN);
    await p.idle();

    const rs = await records(r.log);
    const evs = decoded(rs);
    const mine = byDlp(evs);
    expect(mine.map((e) => e.metadata.type).sort()).toEqual(['data.masked', 'finding.opened', 'finding.opened']);

    // data.masked: names the original (id, chain hash), the rules, a digest of the redacted content.
    const masked = ofType(mine, 'data.masked')[0]! as AnyAttestEvent & { payload: PayloadOf<'data.masked'> };
    const originalRecord = rs.find((x) => decodeEvent(x.value).event.metadata.eventId === leakyId)!;
    expect(masked.payload.subjectEventId).toBe(leakyId);
    expect(Buffer.from(masked.payload.originalDigest!).equals(Buffer.from(sha256(originalRecord.value)))).toBe(true);
    // The chain hash: what the gateway's next event names as its prevHash.
    const next = evs.find((e) => e.metadata.producer === 'gateway-test' && e.metadata.sequence === (decodeEvent(originalRecord.value).event.metadata.sequence as number) + 1)!;
    expect(Buffer.from(next.metadata.prevHash).equals(Buffer.from(masked.payload.originalDigest!))).toBe(true);
    expect(masked.payload.maskedDigest).toHaveLength(32);
    expect(masked.payload.hits.map((h) => [h.ruleId, h.action, h.location.jsonPath, h.location.contentBlockIndex])).toEqual([
      ['dlp.cvv', 'dropped', '$.content[0].text', 0],
      ['dlp.secret.aws_secret_key', 'masked', '$.content[1].text', 1],
    ]);
    expect(masked.payload.hits.every((h) => h.direction === 'response' && h.bin === null && h.panHmac === null)).toBe(true);
    // Whose content it was (envelope of the original), written and signed by the processor.
    const original = evs.find((e) => e.metadata.eventId === leakyId)!;
    expect(masked.actor).toEqual(original.actor);
    expect(masked.correlation).toEqual(original.correlation);
    expect(masked.metadata.producer).toBe('dlp-test');

    // Findings: SAD (CVV) and a secret, with location and source identity, by the processor.
    const opened = ofType(mine, 'finding.opened').map((e) => ({ actor: e.actor, p: e.payload as PayloadOf<'finding.opened'> }));
    expect(opened.map((o) => o.p.detectorId).sort()).toEqual(['dlp.cvv', 'dlp.secret.aws_secret_key']);
    for (const o of opened) {
      expect(o.actor).toEqual(DLP_ACTOR);
      expect(o.p).toMatchObject({ category: 'data_security', relatedEventIds: [leakyId] });
      expect(o.p.findingId).toMatch(/^dlp-/);
      expect(o.p.location).toContain(`log:gateway.response.completed.payload.content event ${leakyId} $.content[`);
      expect(o.p.description).toContain(`${original.actor.issuer} ${original.actor.subject}`);
      expect(o.p.description).toContain('producer gateway-test');
    }
    const cvv = opened.find((o) => o.p.detectorId === 'dlp.cvv')!.p;
    expect(cvv).toMatchObject({ severity: 'critical', title: expect.stringMatching(/^Sensitive authentication data found/) });
    expect(opened.find((o) => o.p.detectorId === 'dlp.secret.aws_secret_key')!.p.title).toMatch(/^Secret found/);

    // No value anywhere in what the processor wrote: scan the encoded bytes.
    const dlpBytes = rs.filter((x) => decodeEvent(x.value).event.metadata.producer === 'dlp-test').map((x) => Buffer.from(x.value));
    expect(Buffer.from(originalRecord.value).includes(AWS_SECRET)).toBe(true); // the original is untouched
    for (const b of dlpBytes) {
      expect(b.includes(AWS_SECRET)).toBe(false);
      expect(b.includes(AWS_SECRET.slice(0, 20))).toBe(false);
      expect(b.includes(CVV_TEXT)).toBe(false);
      // (a bare '737' can occur by chance in ids, hashes and signatures: the CVV with its context cannot)
      expect(b.includes(' 737,')).toBe(false);
    }

    expect(p.stats).toMatchObject({ scanned: 2, derived: 1, findingsOpened: 2, findingsUpdated: 0, undecodable: 0, failedRecords: 0 });
    expect(committed(r)).toBe(await ends(r));

    // Both producers' chains, with their final checkpoints, verify under the published keys.
    await p.stop();
    for (const e of r.emitters) await e.close();
    const all = await records(r.log);
    const report = await verifyEncodedEvents(
      all.map((x) => x.value),
      r.keyring.jwks(),
      { cadence: DEFAULT_CADENCE },
    );
    expect(report.findings).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.stats.producers).toBe(2);
    expect(report.stats.attestedEvents).toBe(report.stats.events);
  });

  it('a clean event and one the gateway already fully masked produce nothing', async () => {
    const r = await setup();
    const p = await processor(r);
    await p.start();
    await respond(r, CLEAN);
    await respond(r, 'plain text reply, card 411111******1111 on file');
    await respond(r, 'event: message_start\ndata: {"type":"message_start"}\n\nevent: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"hello"}}\n\n');
    await p.idle();
    expect(byDlp(decoded(await records(r.log)))).toEqual([]);
    expect(p.stats).toMatchObject({ scanned: 3, derived: 0, outputsEmitted: 0 });
    expect(committed(r)).toBe(await ends(r));
  });

  it('redelivery after a crash before the commit, and a restart: no duplicate; a new sighting updates the same case', async () => {
    const r = await setup();
    let crash = true;
    const p1 = await processor(r, {
      beforeCommit: () => {
        if (crash) throw new Error('crash before commit');
      },
    });
    await p1.start();
    const first = await respond(r, LEAKY);
    // Fails before every commit: rebuilt each time, the input redelivered each time, never re-derived.
    await expect.poll(() => p1.stats.rebuilds, { timeout: 3_000 }).toBeGreaterThanOrEqual(3);
    expect(committed(r)).toBe(0);
    expect(p1.stats.pendingDerived).toBe(1);
    expect(p1.stats.duplicatesSkipped).toBeGreaterThanOrEqual(1);
    await p1.stop();
    let mine = byDlp(decoded(await records(r.log)));
    expect(mine.map((e) => e.metadata.type).sort()).toEqual(['data.masked', 'finding.opened', 'finding.opened']);

    // Restart (a new instance, same producer id): the uncommitted input is skipped, then committed.
    crash = false;
    const p2 = await processor(r);
    await p2.start();
    expect(p2.stats.pendingDerived).toBe(1);
    await p2.idle();
    expect(p2.stats).toMatchObject({ duplicatesSkipped: 1, derived: 0, outputsEmitted: 0 });
    expect(committed(r)).toBe(await ends(r));
    mine = byDlp(decoded(await records(r.log)));
    expect(mine).toHaveLength(3);

    // The same secret from the same caller again (another session): the open case is updated.
    await p2.stop();
    const p3 = await processor(r);
    await p3.start();
    expect(p3.book.size).toBe(2);
    const second = await respond(r, body([`aws_secret_access_key = ${AWS_SECRET}`]), 'sess-2');
    await p3.idle();
    mine = byDlp(decoded(await records(r.log)));
    const opened = ofType(mine, 'finding.opened').map((e) => e.payload as PayloadOf<'finding.opened'>);
    const updated = ofType(mine, 'finding.updated').map((e) => e.payload as PayloadOf<'finding.updated'>);
    expect(opened).toHaveLength(2);
    expect(updated).toHaveLength(1);
    expect(updated[0]).toMatchObject({ findingId: opened.find((o) => o.detectorId === 'dlp.secret.aws_secret_key')!.findingId, status: 'open', relatedEventIds: [second] });
    expect(ofType(mine, 'data.masked').map((e) => (e.payload as PayloadOf<'data.masked'>).subjectEventId).sort()).toEqual([first, second].sort());
  });

  it('a case closed by a person: the next sighting opens a new finding (new id), also after a restart', async () => {
    const r = await setup();
    const p1 = await processor(r);
    await p1.start();
    await respond(r, body([`aws_secret_access_key = ${AWS_SECRET}`]));
    await p1.idle();
    const first = ofType(byDlp(decoded(await records(r.log))), 'finding.opened')[0]!.payload as PayloadOf<'finding.opened'>;
    // The console closes it (another producer, a person).
    const { tenantId: _t, ...closed } = SAMPLE_PARTS['finding.closed'];
    await r.gateway.emit([r.gateway.build('finding.closed', { ...closed, payload: { ...closed.payload, findingId: first.findingId, resolution: 'resolved', reason: 'key rotated' } })], 'console');
    await p1.idle();
    await p1.stop();

    const p2 = await processor(r);
    await p2.start();
    await respond(r, body([`again: aws_secret_access_key = ${AWS_SECRET}`]), 'sess-9');
    await p2.idle();
    const opened = ofType(byDlp(decoded(await records(r.log))), 'finding.opened').map((e) => e.payload as PayloadOf<'finding.opened'>);
    expect(opened).toHaveLength(2);
    expect(opened[1]!.findingId).not.toBe(first.findingId);
    expect(ofType(byDlp(decoded(await records(r.log))), 'finding.updated')).toHaveLength(0);
  });

  it('request side: a secret in the prompt of a v2 gateway.request.received is found; data.masked derived with direction request, finding opened', async () => {
    // One content field per event type (the processor looks fields up by type).
    expect(new Set(CONTENT_FIELDS.map((c) => c.type)).size).toBe(CONTENT_FIELDS.length);
    expect(CONTENT_FIELDS).toContainEqual({ type: 'gateway.request.received', field: 'content', direction: 'request' });
    const r = await setup();
    const p = await processor(r);
    await p.start();
    // The gateway already masked the PAN; the AWS secret key and the CVV it cannot know about.
    const leakyId = await receive(r, requestBody(['Refund card 411111******1111 please.', `Then deploy with aws_secret_access_key = ${AWS_SECRET}, ${CVV_TEXT}.`]));
    await receive(r, requestBody(['Summarise the refund policy for card 411111******1111.']));
    // Content not kept (over the cap, a refused request): nothing to scan, nothing derived.
    await receive(r, null);
    await p.idle();

    const rs = await records(r.log);
    const evs = decoded(rs);
    const mine = byDlp(evs);
    expect(mine.map((e) => e.metadata.type).sort()).toEqual(['data.masked', 'finding.opened', 'finding.opened']);

    const masked = ofType(mine, 'data.masked')[0]! as AnyAttestEvent & { payload: PayloadOf<'data.masked'> };
    const originalRecord = rs.find((x) => decodeEvent(x.value).event.metadata.eventId === leakyId)!;
    expect(masked.payload.subjectEventId).toBe(leakyId);
    expect(Buffer.from(masked.payload.originalDigest!).equals(Buffer.from(sha256(originalRecord.value)))).toBe(true);
    expect(masked.payload.hits.map((h) => [h.ruleId, h.direction, h.location.jsonPath])).toEqual([
      ['dlp.secret.aws_secret_key', 'request', '$.messages[0].content[1].text'],
      ['dlp.cvv', 'request', '$.messages[0].content[1].text'],
    ]);
    const original = evs.find((e) => e.metadata.eventId === leakyId)!;
    expect(masked.actor).toEqual(original.actor);
    expect(masked.correlation).toEqual(original.correlation);

    const opened = ofType(mine, 'finding.opened').map((e) => e.payload as PayloadOf<'finding.opened'>);
    expect(opened.map((o) => o.detectorId).sort()).toEqual(['dlp.cvv', 'dlp.secret.aws_secret_key']);
    for (const o of opened) {
      expect(o).toMatchObject({ category: 'data_security', relatedEventIds: [leakyId] });
      expect(o.location).toContain(`log:gateway.request.received.payload.content event ${leakyId} $.messages[0].content[1].text`);
    }

    // The original request event holds the secret (that is what was sent); nothing the processor wrote does.
    expect(Buffer.from(originalRecord.value).includes(AWS_SECRET)).toBe(true);
    for (const x of rs.filter((y) => decodeEvent(y.value).event.metadata.producer === 'dlp-test')) {
      expect(Buffer.from(x.value).includes(AWS_SECRET.slice(0, 20))).toBe(false);
      expect(Buffer.from(x.value).includes(CVV_TEXT)).toBe(false);
    }
    // The null-content event is decoded but not scanned.
    expect(p.stats).toMatchObject({ scanned: 2, derived: 1, findingsOpened: 2, failedRecords: 0, undecodable: 0 });
    expect(committed(r)).toBe(await ends(r));

    // The same secret in the next turn's request (the conversation is resent) and in the answer:
    // each event gets its own data.masked, the open case is updated, not opened again.
    const resent = await receive(r, requestBody([`Then deploy with aws_secret_access_key = ${AWS_SECRET}`, 'Done?']));
    const answered = await respond(r, body([`Deployed with aws_secret_access_key = ${AWS_SECRET}.`]));
    await p.idle();
    const after = byDlp(decoded(await records(r.log)));
    expect(ofType(after, 'finding.opened')).toHaveLength(2);
    const secretCase = opened.find((o) => o.detectorId === 'dlp.secret.aws_secret_key')!.findingId;
    expect(ofType(after, 'finding.updated').map((e) => e.payload as PayloadOf<'finding.updated'>).map((u) => [u.findingId, u.relatedEventIds])).toEqual([
      [secretCase, [resent]],
      [secretCase, [answered]],
    ]);
    const derivedDirections = ofType(after, 'data.masked').map((e) => {
      const pl = e.payload as PayloadOf<'data.masked'>;
      return [pl.subjectEventId, [...new Set(pl.hits.map((h) => h.direction))]];
    });
    expect(derivedDirections).toEqual([
      [leakyId, ['request']],
      [resent, ['request']],
      [answered, ['response']],
    ]);
  });

  it('content stage: stores every content event once, the leaky one as the redacted copy its data.masked attests; the store verifies, even across a failure between the two', async () => {
    const r = await setup();
    const stored = new Map<string, ContentRow>();
    let failNext = true;
    const p = await processor(r, {
      storeContent: async (rows) => {
        // The first store attempt fails after the outputs were durable: the batch is redelivered.
        if (failNext) {
          failNext = false;
          throw new Error('store unavailable');
        }
        for (const row of rows) stored.set(row.event.metadata.eventId, row);
      },
    });
    await p.start();
    const leakyId = await respond(r, LEAKY);
    const cleanId = await respond(r, CLEAN);
    await receive(r, null);
    await expect.poll(() => stored.size, { timeout: 5_000 }).toBe(2);
    await p.idle();
    expect(p.stats.contentRedacted).toBe(1);

    const evs = decoded(await records(r.log));
    const masked = ofType(byDlp(evs), 'data.masked');
    expect(masked, 'one attestation, not one per delivery').toHaveLength(1);
    const leaky = stored.get(leakyId)!;
    expect(leaky.redactedBy).toBe(masked[0]!.metadata.eventId);
    const text = (leaky.event.payload as PayloadOf<'gateway.response.completed'>).content!;
    expect(text).not.toContain(AWS_SECRET);
    expect(text).not.toContain(CVV_TEXT);
    expect(Buffer.from(leaky.bytes).includes(Buffer.from(AWS_SECRET))).toBe(false);
    expect(decodeEvent(leaky.bytes).event.metadata).toEqual(evs.find((e) => e.metadata.eventId === leakyId)!.metadata);
    expect(stored.get(cleanId)!.redactedBy).toBeNull();

    // The store's view (content rows from this stage, the rest as logged) verifies with the redaction.
    for (const e of [r.gateway, ...r.emitters.slice(1)]) await e.checkpoint();
    const view = (await records(r.log)).map((x) => {
      const row = stored.get(decodeEvent(x.value).event.metadata.eventId);
      return row?.redactedBy ? { bytes: row.bytes, originalHash: row.hash, redactedBy: row.redactedBy } : x.value;
    });
    const report = await verifyEncodedEvents(view, r.keyring.jwks(), { cadence: DEFAULT_CADENCE });
    expect(report.findings).toEqual([]);
    expect(report.redactedEvents).toBe(1);
  });

  it('throughput through the shell on the memory log', async () => {
    const r = await setup();
    const N = 2_000;
    // 1 in 10 responses carries a secret; the rest are clean ~1 KB bodies.
    const filler = 'Here is the summary of the quarterly report you asked for, with the key figures. '.repeat(8);
    const batch = [];
    for (let i = 0; i < N; i++) {
      const { tenantId: _t, ...parts } = SAMPLE_PARTS['gateway.response.completed'];
      const content = body([filler, i % 10 === 0 ? `aws_secret_access_key = ${AWS_SECRET}` : `order ${i} shipped`]);
      batch.push(r.gateway.build('gateway.response.completed', { ...parts, correlation: { sessionId: `s-${i % 16}`, requestId: `bench-${i}`, upstreamRequestId: null }, payload: { ...parts.payload, content } }));
    }
    for (let i = 0; i < N; i += 100) await r.gateway.emit(batch.slice(i, i + 100), `s-${i % 16}`);
    const p = await processor(r, { maxBatchRecords: 1_000 });
    const t0 = performance.now();
    await p.start();
    await p.idle();
    const ms = performance.now() - t0;
    expect(p.stats).toMatchObject({ scanned: N, derived: N / 10 });
    console.log(
      `dlp processor: ${N} events (10% with a secret) in ${ms.toFixed(0)} ms = ${Math.round((N / ms) * 1000)} events/s through the shell, cold (JIT warm-up and the start-up probe included; engine ${p.stats.scanMs.toFixed(0)} ms) on the memory log; steady state: bench/dlp-processor.bench.ts`,
    );
    expect(committed(r)).toBe(await ends(r));
  });
});


/**
 * A book's cases with `related` as a set: its order follows the fold order, which across partitions
 * depends on poll sizes even between two full replays (the newest id first within one partition).
 */
const casesOf = (p: DlpProcessor) => p.book.toState().map(([id, c]) => [id, { ...c, related: [...c.related].sort() }]);

describe('dlp processor state snapshots', () => {
  const snapshotsOf = (r: Rig): SnapshotOptions => ({ store: new FileSnapshotStore(join(r.dir, 'snapshots')), logId: 'memory:dlp-test' });
  const secret = (tag: string) => body([`${tag}: aws_secret_access_key = ${AWS_SECRET}`]);

  it('a case opened before the snapshot is updated (not opened again) after a restart from it, which replays only what was committed after it; the book equals a full replay', async () => {
    const r = await setup();
    const snapshots = snapshotsOf(r);
    const p1 = await processor(r, { snapshots });
    await p1.start();
    await respond(r, secret('one'));
    await p1.idle();
    await p1.stop();
    expect(p1.stats.snapshotsSaved).toBe(1);
    const at = committed(r);

    // Committed after the snapshot (a run without snapshots, like a crash after one): a second sighting.
    const p2 = await processor(r);
    await p2.start();
    await respond(r, secret('two'), 'sess-2');
    await respond(r, CLEAN, 'sess-3');
    await p2.idle();
    await p2.stop();
    const later = committed(r);

    const p3 = await processor(r, { snapshots });
    await p3.start();
    expect(p3.stats).toMatchObject({ fromSnapshot: true, replayRead: later - at, snapshotsRejected: 0 });
    const third = await respond(r, secret('three'), 'sess-4');
    await p3.idle();
    const mine = byDlp(decoded(await records(r.log)));
    expect(ofType(mine, 'finding.opened')).toHaveLength(1);
    const updated = ofType(mine, 'finding.updated').map((e) => e.payload as PayloadOf<'finding.updated'>);
    expect(updated).toHaveLength(2);
    expect(updated[1]).toMatchObject({ relatedEventIds: expect.arrayContaining([third]) });
    await p3.stop();

    const p4 = await processor(r);
    await p4.start();
    expect(p4.stats).toMatchObject({ fromSnapshot: false, replayRead: await ends(r) });
    const p5 = await processor(r, { snapshots });
    await p4.stop();
    await p5.start();
    expect(p5.stats).toMatchObject({ fromSnapshot: true, replayRead: 0 });
    expect(casesOf(p5)).toEqual(casesOf(p4));
    expect(p5.book.toState()[0]![1]).toMatchObject({ occurrences: 3, closed: false });
  });

  it('idempotence across a failure before the commit, rebuilt from a snapshot: the redelivered input is skipped, nothing is derived twice', async () => {
    const r = await setup();
    const snapshots = snapshotsOf(r);
    const p1 = await processor(r, { snapshots });
    await p1.start();
    await respond(r, secret('one'));
    await p1.idle();
    await p1.stop();

    let crash = true;
    const p2 = await processor(r, {
      snapshots,
      beforeCommit: () => {
        if (crash) throw new Error('crash before commit');
      },
    });
    await p2.start();
    await respond(r, LEAKY, 'sess-2');
    await expect.poll(() => p2.stats.rebuilds, { timeout: 3_000 }).toBeGreaterThanOrEqual(3);
    expect(p2.stats).toMatchObject({ fromSnapshot: true, pendingDerived: 1 });
    crash = false;
    await p2.idle();
    await p2.stop();
    const mine = byDlp(decoded(await records(r.log)));
    expect(ofType(mine, 'data.masked')).toHaveLength(2);
    // One secret case (updated by the second sighting), one SAD case.
    expect(ofType(mine, 'finding.opened')).toHaveLength(2);
    expect(ofType(mine, 'finding.updated')).toHaveLength(1);
    expect(committed(r)).toBe(await ends(r));
  });

  it('a corrupt snapshot is ignored with a warning (snapshot_corrupt); the full replay gives the same book', async () => {
    const r = await setup();
    const snapshots = snapshotsOf(r);
    const p1 = await processor(r, { snapshots });
    await p1.start();
    await respond(r, secret('one'));
    await respond(r, LEAKY, 'sess-2');
    await p1.idle();
    await p1.stop();
    const dir = join(r.dir, 'snapshots');
    const file = join(dir, readdirSync(dir)[0]!);
    writeFileSync(file, readFileSync(file).toString('utf8').replace('"occurrences":1', '"occurrences":7'));
    const { logger: warnings, lines } = capturingLogger();
    const p2 = await processor(r, { snapshots, logger: warnings });
    await p2.start();
    expect(p2.stats).toMatchObject({ fromSnapshot: false, snapshotsRejected: 1, replayRead: await ends(r) });
    expect(lines.map((l) => l['reason'])).toEqual(['snapshot_corrupt']);
    const full = casesOf(p2);
    await p2.stop();
    // The snapshot p2 wrote at its stop is good, and gives the same book.
    const p3 = await processor(r, { snapshots });
    await p3.start();
    expect(p3.stats).toMatchObject({ fromSnapshot: true, replayRead: 0 });
    expect(casesOf(p3)).toEqual(full);
  });
});
