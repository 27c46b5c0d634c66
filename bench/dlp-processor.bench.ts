/**
 * DLP processor, log → derived evidence, backlog drain on the in-memory log: a "gateway" producer
 * appends N gateway.response.completed events (Messages API response JSON, ~1.3 KB of content, a
 * share of them carrying an AWS secret key or a CVV next to a masked PAN), then a fresh DLP processor
 * (real emitter, keyring, PAN HMAC key, DLP engine) drains them: start (rebuild) → idle (everything
 * committed, outputs durable). Wall time and CPU time (process.cpuUsage), median of the runs after a
 * warm-up run; the engine's share (scan + derive) is reported from the processor's stats.
 *
 *   node --import tsx bench/dlp-processor.bench.ts [--events 20000] [--runs 3] [--leaky 0.1] [--partitions 4]
 *
 * The in-memory log has no I/O: this is the shell's and the engine's CPU cost, the ceiling of what a
 * DLP processor on the file log or Kafka can do per core.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { checkpointFile, EvidenceEmitter } from '../services/common/src/evidence/emitter';
import { panHmacKeyFrom } from '../services/common/src/evidence/pan-hmac';
import { SAMPLE_PARTS } from '../services/common/src/events/fixtures';
import { InMemoryKeyStore, Keyring } from '../services/common/src/integrity';
import { MemoryEventLog } from '../services/common/src/log';
import { dlpPolicySchema } from '../services/common/src/dlp/index';
import { DlpProcessor } from '../services/processors/src/dlp-processor';

function arg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(process.argv[i + 1]) : NaN;
  return Number.isFinite(v) && v > 0 ? v : dflt;
}
const EVENTS = arg('events', 20_000);
const RUNS = arg('runs', 3);
const LEAKY = arg('leaky', 0.1);
const PARTITIONS = arg('partitions', 4);

const logger = pino({ level: 'silent' });
const policy = dlpPolicySchema.parse({ dataSecurityCategories: ['card', 'sad', 'secret'] });
const panKey = panHmacKeyFrom('pan-hmac-bench', randomBytes(32));
const FILLER = 'Here is the summary of the quarterly report you asked for, with the key figures and the next steps. ';

function content(i: number, leaky: boolean): string {
  const extra = !leaky
    ? `Order ${i} shipped on 2024-05-01; ticket #${1000 + (i % 97)} closed.`
    : i % 2 === 0
      ? `Deploy with aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY (rotate ${i}).`
      : `The card on file is 411111******1111 cvv ${100 + (i % 900)}, expiring soon.`;
  return JSON.stringify({
    id: `msg_${i}`,
    type: 'message',
    role: 'assistant',
    model: 'claude-sonnet-4-5',
    content: [{ type: 'text', text: FILLER.repeat(10) }, { type: 'text', text: extra }],
    stop_reason: 'end_turn',
    usage: { input_tokens: 812, output_tokens: 301 },
  });
}

interface Run {
  wallMs: number;
  cpuMs: number;
  engineMs: number;
  derived: number;
  outputs: number;
  bytes: number;
}

async function once(): Promise<Run> {
  const dir = mkdtempSync(join(tmpdir(), 'attest-dlp-bench-'));
  const log = new MemoryEventLog({ partitions: PARTITIONS });
  const keyring = await Keyring.open(new InMemoryKeyStore());
  await keyring.rotate();
  const gateway = await EvidenceEmitter.open({ log, keyring, producerId: 'gateway-bench', tenantId: 'acme', checkpoints: checkpointFile(dir, 'gateway-bench'), logger });
  const { tenantId: _t, ...parts } = SAMPLE_PARTS['gateway.response.completed'];
  let bytes = 0;
  const every = Math.max(1, Math.round(1 / LEAKY));
  for (let i = 0; i < EVENTS; i += 200) {
    const session = `s-${(i / 200) % 64}`;
    const batch = [];
    for (let j = i; j < Math.min(EVENTS, i + 200); j++) {
      const c = content(j, j % every === 0);
      bytes += c.length;
      batch.push(gateway.build('gateway.response.completed', { ...parts, correlation: { sessionId: session, requestId: `bench-${j}`, upstreamRequestId: null }, payload: { ...parts.payload, content: c } }));
    }
    await gateway.emit(batch, session);
  }
  const emitter = await EvidenceEmitter.open({ log, keyring, producerId: 'dlp-bench', tenantId: 'acme', checkpoints: checkpointFile(dir, 'dlp-bench'), logger });
  const p = new DlpProcessor({ log, emitter, policy, panKey, logger, maxBatchRecords: 1_000, maxWaitMs: 10 });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await p.start();
  await p.idle();
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  if (p.stats.scanned !== EVENTS) throw new Error(`scanned ${p.stats.scanned} of ${EVENTS}`);
  await p.stop();
  await emitter.close();
  await gateway.close();
  await log.close();
  rmSync(dir, { recursive: true, force: true });
  return { wallMs, cpuMs: (cpu.user + cpu.system) / 1000, engineMs: p.stats.scanMs, derived: p.stats.derived, outputs: p.stats.outputsEmitted, bytes };
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  console.log(`dlp-processor bench: ${EVENTS} events, ${Math.round(LEAKY * 100)}% leaky, ${PARTITIONS} partitions, ${RUNS} runs after a warm-up; node ${process.version}, ${cpus().length} cpus`);
  await once();
  const runs: Run[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = await once();
    runs.push(r);
    console.log(
      `  run ${i + 1}: ${Math.round((EVENTS / r.wallMs) * 1000)} events/s wall, ${Math.round((EVENTS / r.cpuMs) * 1000)} events/s CPU, engine ${((r.engineMs / r.wallMs) * 100).toFixed(0)}% of wall; ${r.derived} derived, ${r.outputs} outputs`,
    );
  }
  const wall = median(runs.map((r) => r.wallMs));
  const cpu = median(runs.map((r) => r.cpuMs));
  const engine = median(runs.map((r) => r.engineMs));
  const mb = runs[0]!.bytes / 1e6;
  console.log(
    `median: ${Math.round((EVENTS / wall) * 1000)} events/s wall (${(mb / (wall / 1000)).toFixed(1)} MB/s of content), ${Math.round((EVENTS / cpu) * 1000)} events/s CPU; engine alone ${Math.round((EVENTS / engine) * 1000)} events/s (${((engine / wall) * 100).toFixed(0)}% of wall)`,
  );
}

await main();
