import { beforeAll, describe, expect, it } from 'vitest';
import { hashEquals, sha256 } from './hash';
import { InMemoryKeyStore, Keyring } from './keyring';
import { EMPTY_ROOT, merkleRoot } from './merkle';
import { ProducerChain } from './producer';
import { FakeClock } from './testkit';

let ring: Keyring;
beforeAll(async () => {
  ring = await Keyring.open(new InMemoryKeyStore(), { clock: new FakeClock(0) });
  await ring.rotate();
});

const bytesFor = (meta: { sequence: number; prevHash: Uint8Array }, tag = ''): Uint8Array =>
  new TextEncoder().encode(`${meta.sequence}:${Buffer.from(meta.prevHash).toString('hex')}:${tag}`);

function emit(chain: ProducerChain, n: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < n; i++) {
    const b = bytesFor(chain.nextMetadata());
    chain.append(b);
    out.push(b);
  }
  return out;
}

describe('ProducerChain', () => {
  it('Given events, When a checkpoint is cut, Then it covers exactly them with their Merkle root and the last hash', async () => {
    const chain = ProducerChain.start({ producer: 'gw', epoch: 'e1', startUs: 100 });
    const evs = emit(chain, 5);
    const cp = await chain.checkpoint(ring.signingKey(), 200);
    expect(cp.fields).toMatchObject({ firstSequence: 1, lastSequence: 5, count: 5, fromTimeUs: 100, toTimeUs: 200, closed: false });
    expect(cp.fields.merkleRoot).toEqual(merkleRoot(evs.map(sha256)));
    expect(cp.fields.lastHash).toEqual(sha256(evs[4]!));
    const idle = await chain.checkpoint(ring.signingKey(), 300);
    expect(idle.fields).toMatchObject({ firstSequence: 6, lastSequence: 5, count: 0, fromTimeUs: 200 });
    expect(idle.fields.merkleRoot).toEqual(EMPTY_ROOT);
    expect(idle.fields.prevCheckpointHash).toEqual(cp.hash);
  });

  it('Given a checkpoint still being signed, When events arrive, Then they go to the next range', async () => {
    const chain = ProducerChain.start({ producer: 'gw', epoch: 'e1', startUs: 0 });
    emit(chain, 3);
    const p1 = chain.checkpoint(ring.signingKey(), 10);
    emit(chain, 2);
    const p2 = chain.checkpoint(ring.signingKey(), 20);
    const [c1, c2] = await Promise.all([p1, p2]);
    expect([c1.fields.firstSequence, c1.fields.lastSequence, c2.fields.firstSequence, c2.fields.lastSequence]).toEqual([1, 3, 4, 5]);
    expect(c2.fields.prevCheckpointHash).toEqual(c1.hash);
  });

  it('Given a restart with the log readable, When resumed from the last checkpoint and the tail, Then the epoch continues seamlessly', async () => {
    const chain = ProducerChain.start({ producer: 'gw', epoch: 'e1', startUs: 0 });
    emit(chain, 3);
    const cp = await chain.checkpoint(ring.signingKey(), 10);
    const tailBytes = emit(chain, 2);
    const tail = tailBytes.map((bytes, k) => ({ sequence: 4 + k, prevHash: k === 0 ? cp.fields.lastHash : sha256(tailBytes[k - 1]!), bytes }));
    const resumed = ProducerChain.resume({ last: cp, tail });
    expect(resumed.state).toEqual(chain.state);
    expect(resumed.pending).toBe(2);
    const next = await resumed.checkpoint(ring.signingKey(), 20);
    expect(next.fields).toMatchObject({ firstSequence: 4, lastSequence: 5, fromTimeUs: 10 });
    expect(next.fields.prevCheckpointHash).toEqual(cp.hash);
  });

  it('Given a tail that does not continue the checkpoint, When resuming, Then it is refused (start a new epoch instead)', async () => {
    const chain = ProducerChain.start({ producer: 'gw', epoch: 'e1', startUs: 0 });
    emit(chain, 2);
    const cp = await chain.checkpoint(ring.signingKey(), 10);
    expect(() => ProducerChain.resume({ last: cp, tail: [{ sequence: 4, prevHash: cp.fields.lastHash, bytes: new Uint8Array(1) }] })).toThrow(
      expect.objectContaining({ code: 'integrity_resume_mismatch' }),
    );
  });

  it('Given a closed epoch, When appending, resuming or cutting again, Then it is refused; a new epoch links to the closing checkpoint', async () => {
    const chain = ProducerChain.start({ producer: 'gw', epoch: 'e1', startUs: 0 });
    emit(chain, 2);
    const last = await chain.checkpoint(ring.signingKey(), 10, { closed: true });
    expect(() => emit(chain, 1)).toThrow(expect.objectContaining({ code: 'integrity_epoch_closed' }));
    await expect(chain.checkpoint(ring.signingKey(), 20)).rejects.toMatchObject({ code: 'integrity_epoch_closed' });
    expect(() => ProducerChain.resume({ last })).toThrow(expect.objectContaining({ code: 'integrity_epoch_closed' }));
    const next = ProducerChain.start({ producer: 'gw', epoch: 'e2', startUs: 30, previous: last });
    expect(hashEquals(next.nextMetadata().prevHash, last.hash)).toBe(true);
    emit(next, 1);
    const first = await next.checkpoint(ring.signingKey(), 40);
    expect(first.fields).toMatchObject({ epoch: 'e2', firstSequence: 1, fromTimeUs: 30 });
    expect(first.fields.prevCheckpointHash).toEqual(last.hash);
  });
});
