/**
 * Child process for the crash test: appends records from many concurrent callers, forever, and prints
 * `ack <id> <partition> <offset>` for each one the log acknowledged. The test SIGKILLs it.
 * Usage: node --import tsx crash-writer.ts <dir> <firstId> <segmentBytes> [callers]
 * Few callers make small batches, written into preallocated segments; many make large ones, written
 * into growing segments (see PREALLOCATE_MAX_AVG_BATCH_BYTES).
 */
import { crashKey, crashValue } from './crash-fixture';
import { FileEventLog } from './file-log';

const [dir, firstArg, segmentArg, callersArg] = process.argv.slice(2);
if (dir === undefined) throw new Error('usage: crash-writer.ts <dir> <firstId> <segmentBytes> [callers]');
const log = await FileEventLog.open({ dir, partitions: 2, segmentBytes: Number(segmentArg ?? 262_144) });
let next = Number(firstArg ?? 0);
process.stdout.write(`ready ${log.recovery.length}\n`);

async function caller(): Promise<void> {
  for (;;) {
    const id = next++;
    const [r] = await log.append([{ key: crashKey(id), value: crashValue(id), headers: { id: String(id) } }]);
    // stdout to a pipe is synchronous on Linux, so a printed ack reached the test before any kill.
    process.stdout.write(`ack ${id} ${r!.partition} ${r!.offset}\n`);
  }
}

await Promise.all(Array.from({ length: Number(callersArg ?? 64) }, caller));
