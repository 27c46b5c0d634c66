import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { FileKeyStore, Keyring, type Cadence } from '../integrity';
import { FileEventLog, type EventLog } from '../log';
import { checkpointFile, EvidenceEmitter, systemActor } from './emitter';
import { loadOrCreatePanHmacKey, type PanHmacKey } from './pan-hmac';
import { createHash } from 'node:crypto';

/**
 * Opens everything a producing component needs to emit evidence on one machine: the durable log,
 * the signing keyring, the PAN HMAC key and the chaining emitter; and records the platform auditing
 * itself (PCI DSS 10.2.1.2, 10.2.1.6): audit.started, key.rotated for keys created now,
 * config.changed when the configuration differs from the last run's.
 */

export interface EvidenceRuntime {
  log: EventLog;
  keyring: Keyring;
  emitter: EvidenceEmitter;
  panKey: PanHmacKey;
  /** audit.stopped, the closing checkpoint, then the log. */
  close(reason: 'shutdown' | 'failure'): Promise<void>;
}

export interface OpenEvidenceOptions {
  dataDir: string;
  component: string;
  producerId?: string;
  tenantId: string;
  logger: Logger;
  configText: string;
  configFile: string;
  softwareVersion: string;
  cadence?: Cadence;
  /** An already open log (shared by several components of one process). */
  log?: EventLog;
}

export async function openEvidence(opts: OpenEvidenceOptions): Promise<EvidenceRuntime> {
  const producerId = opts.producerId ?? `${opts.component}-${hostname()}`;
  const ownsLog = opts.log === undefined;
  const log = opts.log ?? (await FileEventLog.open({ dir: join(opts.dataDir, 'log') }));
  const keyring = await Keyring.open(new FileKeyStore(join(opts.dataDir, 'keys', 'signing')));
  const rotations = [...keyring.recovered];
  if (keyring.currentKid === undefined) rotations.push(await keyring.rotate());
  const panKey = await loadOrCreatePanHmacKey(join(opts.dataDir, 'keys'));
  const emitter = await EvidenceEmitter.open({
    log,
    keyring,
    producerId,
    tenantId: opts.tenantId,
    checkpoints: checkpointFile(join(opts.dataDir, 'producers'), producerId),
    logger: opts.logger,
    ...(opts.cadence ? { cadence: opts.cadence } : {}),
  });

  const system = {
    actor: systemActor(producerId),
    source: { address: 'local', userAgent: null },
    outcome: { result: 'success' as const, status: null, reason: null },
    correlation: { sessionId: `producer:${producerId}`, requestId: `start:${emitter.producer.epoch}`, upstreamRequestId: null },
  };
  const target = (resource: string) => ({ protocol: 'internal' as const, service: 'attest', resource, model: null });
  const configDigest = createHash('sha256').update(opts.configText).digest();
  const digestFile = join(opts.dataDir, 'producers', `${producerId.replace(/[^A-Za-z0-9_.-]/g, '_')}.config-digest`);
  const lastDigest = await readFile(digestFile, 'utf8').catch(() => undefined);

  const startEvents = [
    emitter.build('audit.started', {
      ...system,
      target: target(`component/${opts.component}`),
      payload: {
        component: opts.component,
        softwareVersion: opts.softwareVersion,
        configDigest,
        previousEpoch: emitter.previous.epoch,
        previousStopRecorded: emitter.previous.stopRecorded,
      },
    }),
    ...rotations.map((r) =>
      emitter.build('key.rotated', {
        ...system,
        target: target('keys/signing'),
        payload: {
          purpose: 'checkpoint_signing',
          oldKeyId: r.oldKeyId,
          newKeyId: r.newKeyId,
          algorithm: 'EdDSA',
          reason: r.oldKeyId === null ? 'initial' : 'scheduled',
          oldKeyRetiresAtUs: r.oldKeyRetiresAtUs,
          publicKeyThumbprint: r.newKeyId,
        },
      }),
    ),
    ...(panKey.created
      ? [
          emitter.build('key.rotated', {
            ...system,
            target: target('keys/pan-hmac'),
            payload: { purpose: 'pan_hmac', oldKeyId: null, newKeyId: panKey.kid, algorithm: 'HMAC-SHA256', reason: 'initial', oldKeyRetiresAtUs: null, publicKeyThumbprint: null },
          }),
        ]
      : []),
    ...(lastDigest !== configDigest.toString('hex')
      ? [
          emitter.build('config.changed', {
            ...system,
            target: target(`config/${opts.configFile}`),
            payload: {
              objectKind: 'policy',
              what: opts.configFile,
              change: lastDigest === undefined ? 'created' : 'updated',
              oldVersion: lastDigest?.slice(0, 12) ?? null,
              newVersion: configDigest.toString('hex').slice(0, 12),
              oldDigest: lastDigest ? Buffer.from(lastDigest, 'hex') : null,
              newDigest: configDigest,
              override: false,
              summary: lastDigest === undefined ? 'first start with this configuration' : 'configuration changed since the last start',
            },
          }),
        ]
      : []),
  ];
  await emitter.emit(startEvents, `producer:${producerId}`);
  await mkdir(join(opts.dataDir, 'producers'), { recursive: true });
  await writeFile(digestFile, configDigest.toString('hex'));

  return {
    log,
    keyring,
    emitter,
    panKey,
    async close(reason) {
      try {
        await emitter.emit(
          [
            emitter.build('audit.stopped', {
              ...system,
              correlation: { ...system.correlation, requestId: `stop:${emitter.producer.epoch}` },
              target: target(`component/${opts.component}`),
              payload: { component: opts.component, reason, detail: null, resumeExpected: reason === 'shutdown' },
            }),
          ],
          `producer:${producerId}`,
        );
        await emitter.close();
      } finally {
        if (ownsLog) await log.close();
      }
    },
  };
}
