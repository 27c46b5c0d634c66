/**
 * Child process for the crash test: appends records from many concurrent callers, forever, and prints
 * `ack <id> <partition> <offset>` for each one the log acknowledged. The test SIGKILLs it.
 * Usage: node --import tsx crash-writer.ts <dir> <firstId> <segmentBytes>
 */
import { crashKey, crashValue } from './crash-fixture';
import { FileEventLog } from './file-log';

const [dir, firstArg, segmentArg] = process.argv.slice(2);
if (dir === undefined) throw new Error('usage: crash-writer.ts <dir> <firstId> <segmentBytes>');
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

await Promise.all(Array.from({ length: 64 }, caller));
