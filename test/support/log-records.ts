/** Reading what a test's event log and data directory hold (tests only). */
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { EventLog } from '../../services/common/src/log';

/** Every record value on `log`, from the start, through a throwaway consumer group that keeps no position. */
export async function readLogRecords(log: EventLog): Promise<Uint8Array[]> {
  const consumer = await log.consumer(`test-read-${Math.random().toString(36).slice(2)}`, { startFrom: 'earliest', ephemeral: true });
  const out: Uint8Array[] = [];
  try {
    for (;;) {
      const batch = await consumer.poll(10_000, 50);
      if (batch.length === 0) break;
      for (const r of batch) out.push(r.value);
    }
  } finally {
    await consumer.close();
  }
  return out;
}

/** Every file under `dir`, recursively. */
export function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? filesUnder(p) : [p];
  });
}
