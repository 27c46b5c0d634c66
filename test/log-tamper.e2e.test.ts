/**
 * Tampering with one *log record* (issue #3): an insider who knows the segment format edits one
 * event in a segment file on disk and repairs the record's CRC, so the log itself opens clean. The
 * evidence writer then stores what the log holds, raises a finding, and `attest verify` names
 * exactly the edited event (its hash no longer matches what its successor and the signed checkpoint
 * recorded) and exits non-zero. Real components throughout: emitter, file log, evidence writer,
 * chdb store, console, the CLI command.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { FastifyInstance } from 'fastify';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openEvidence, type EvidenceRuntime } from '../services/common/src/evidence/producer';
import { decodeEvent, encodeEvent, type AnyAttestEvent } from '../services/common/src/events';
import { SAMPLE_PARTS } from '../services/common/src/events/fixtures';
import { createTokenVerifier, DevIssuer } from '../services/common/src/identity';
import { FileEventLog } from '../services/common/src/log';
import { BATCH_HEADER_BYTES, readBatchHeader } from '../services/common/src/log/frame';
import { ChdbEvidenceStore } from '../services/common/src/store';
import { buildConsole } from '../services/console/src/app';
import { verify, type CliIO } from '../services/cli/src/evidence-commands';
import { EvidenceWriter } from '../services/processors/src/evidence-writer';

const silent = pino({ level: 'silent' });
const CADENCE = { everyEvents: 100_000, everyMs: 600_000 };
const AUDIENCE = 'attest-console';

let dir: string;
let store: ChdbEvidenceStore | undefined;
let writerRt: EvidenceRuntime | undefined;
let consoleRt: EvidenceRuntime | undefined;
let writer: EvidenceWriter | undefined;
let log: FileEventLog | undefined;
let app: FastifyInstance | undefined;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'attest-log-tamper-'));
});

afterAll(async () => {
  await app?.close();
  await writer?.stop();
  await writerRt?.close('shutdown').catch(() => undefined);
  await consoleRt?.close('shutdown').catch(() => undefined);
  await log?.close();
  await store?.close();
  rmSync(dir, { recursive: true, force: true });
});

/**
 * Rewrites, in every segment of the log, the record whose value is `original` with `forged` (same
 * length) and repairs that record's CRC: what someone who knows the segment format would do.
 * Returns how many records were rewritten.
 */
function rewriteRecord(logDir: string, original: Uint8Array, forged: Uint8Array): number {
  expect(forged.length).toBe(original.length);
  let rewritten = 0;
  for (const part of readdirSync(logDir).filter((n) => /^p\d+$/.test(n))) {
    for (const seg of readdirSync(join(logDir, part)).filter((n) => n.endsWith('.seg'))) {
      const path = join(logDir, part, seg);
      const buf = readFileSync(path);
      let pos = 0;
      for (;;) {
        const h = readBatchHeader(buf, pos);
        if (h.kind !== 'ok') break; // end of the written part (a zero tail or the file's end)
        let p = pos + BATCH_HEADER_BYTES;
        for (let i = 0; i < h.header.recordCount; i++) {
          const frameEnd = p + 4 + buf.readUInt32LE(p);
          const valueStart = frameEnd - original.length;
          if (buf.readUInt32LE(valueStart - 4) === original.length && buf.subarray(valueStart, frameEnd).equals(original)) {
            buf.set(forged, valueStart);
            buf.writeUInt32LE(crc32(buf.subarray(p + 8, frameEnd)), p + 4);
            rewritten++;
          }
          p = frameEnd;
        }
        pos += h.header.totalBytes;
      }
      if (rewritten > 0) writeFileSync(path, buf);
    }
  }
  return rewritten;
}

describe('a log record edited on disk before the writer stored it', () => {
  it('opens clean as a log, is stored with a finding, and `attest verify` names exactly that event and exits non-zero', async () => {
    const logDir = join(dir, 'log');
    const common = { dataDir: join(dir, 'platform'), tenantId: 'acme', logger: silent, configText: 'x', configFile: 'attest.yaml', softwareVersion: 'test', cadence: CADENCE };

    // 1. A gateway producer's whole run (start, 6 exchanges, stop with its final checkpoint), with no writer running.
    log = await FileEventLog.open({ dir: logDir, partitions: 2 });
    const gateway = await openEvidence({ ...common, log, component: 'gateway', producerId: 'gateway-test' });
    for (let i = 0; i < 6; i++) {
      const sessionId = `sess-${i % 2}`;
      const events = (['gateway.request.received', 'policy.decided', 'gateway.request.forwarded', 'gateway.response.completed'] as const).map((t) => {
        const { tenantId: _t, ...parts } = SAMPLE_PARTS[t] as (typeof SAMPLE_PARTS)[typeof t] & { tenantId: string };
        return gateway.emitter.build(t, { ...parts, correlation: { sessionId, requestId: `req-${i}`, upstreamRequestId: null } } as never);
      });
      await gateway.emitter.emit(events, sessionId);
    }
    const jwks = gateway.keyring.jwks();
    await gateway.close('shutdown');
    await log.close();

    // 2. The edit: one mid-chain event, its actor changed, same length, record CRC repaired.
    const reader = await FileEventLog.open({ dir: logDir });
    const consumer = await reader.consumer('peek', { startFrom: 'earliest' });
    const records = await consumer.poll(10_000, 50);
    await consumer.close();
    await reader.close();
    const victim = records
      .map((r) => ({ bytes: Uint8Array.from(r.value), event: decodeEvent(r.value).event as AnyAttestEvent }))
      .find((r) => r.event.metadata.type === 'gateway.request.forwarded' && r.event.correlation.requestId === 'req-3');
    expect(victim).toBeDefined();
    const subject = victim!.event.actor.subject;
    const forged = encodeEvent({ ...victim!.event, actor: { ...victim!.event.actor, subject: subject.slice(0, -1) + (subject.endsWith('x') ? 'y' : 'x') } } as AnyAttestEvent);
    expect(rewriteRecord(logDir, victim!.bytes, forged)).toBe(1);

    // 3. The log opens without complaint: the edit is invisible to its own checks.
    log = await FileEventLog.open({ dir: logDir });
    expect(log.recovery).toEqual([]);

    // 4. The evidence writer stores everything the log holds, and raises a finding on the broken link.
    store = await ChdbEvidenceStore.open({ dataDir: join(dir, 'store'), retention: { days: 365 } });
    await store.migrate();
    writerRt = await openEvidence({ ...common, log, component: 'evidence-writer', producerId: 'writer-test' });
    consoleRt = await openEvidence({ ...common, log, component: 'console', producerId: 'console-test' });
    const allKeys = () => ({ keys: [...jwks.keys, ...writerRt!.keyring.jwks().keys, ...consoleRt!.keyring.jwks().keys] });
    writer = new EvidenceWriter({ log, store, emitter: writerRt.emitter, logger: silent, jwks: allKeys, reorderWindowMs: 50 });
    await writer.start();
    await writer.idle();
    const stored = await store.query("SELECT count() FROM events WHERE producer = 'gateway-test'");
    expect(Number(stored.rows[0]?.[0])).toBe(records.filter((r) => decodeEvent(r.value).event.metadata.producer === 'gateway-test').length);
    // The finding is itself an event the writer emits to the log and then stores: idle() can come
    // before that round trip on a loaded machine, so wait for it (as an auditor's dashboard would).
    const findingsNow = async () =>
      (await store!.query("SELECT payload FROM events WHERE type = 'finding.opened'")).rows.map((row) => JSON.parse(String(row[0])) as { detectorId: string; relatedEventIds: string[] });
    await expect.poll(async () => (await findingsNow()).map((f) => f.detectorId), { timeout: 20_000, interval: 200 }).toContain('evidence-writer.chain_link_mismatch');

    // 5. `attest verify` through the console: exactly the edited event, by id and sequence; exit 1.
    const dev = await DevIssuer.loadOrCreate(join(dir, 'idp'));
    const auditorToken = await dev.mint({ subject: 'auditor-1', groups: ['auditors'], audience: AUDIENCE, ttlSec: 600 });
    app = await buildConsole({
      store,
      verifier: createTokenVerifier({ issuers: [dev.issuerOptions([AUDIENCE])] }),
      auditorGroups: ['auditors'],
      emitter: consoleRt.emitter,
      jwks: allKeys,
      panKey: consoleRt.panKey,
      logger: silent,
      cadence: CADENCE,
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const addr = app.server.address();
    const url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    let out = '';
    const io: CliIO = { stdout: { write: (s: string) => (out += s) }, stderr: { write: () => true }, env: { ATTEST_CONSOLE_URL: url, ATTEST_TOKEN: auditorToken } };
    expect(await verify(['--format', 'json'], io)).toBe(1);
    const report = JSON.parse(out) as { ok: boolean; findings: { code: string; producer: string; eventIds: string[]; sequences: { from: number; to: number } | null }[] };
    expect(report.ok).toBe(false);
    const seq = victim!.event.metadata.sequence;
    expect(report.findings).toEqual([expect.objectContaining({ code: 'altered', producer: 'gateway-test', eventIds: [victim!.event.metadata.eventId], sequences: { from: seq, to: seq } })]);
  }, 120_000);
});
