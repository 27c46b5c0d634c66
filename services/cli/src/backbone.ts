import { join } from 'node:path';
import type { Logger } from 'pino';
import type { AttestConfig } from '../../common/src/config';
import { trustKeyDirectory, type TrustSource } from '../../common/src/control';
import { AttestError } from '../../common/src/errors';
import { hostname } from 'node:os';
import { FileEventLog, type EventLog } from '../../common/src/log';
import { SpoolingEventLog } from '../../common/src/log/spooling-log';
import { readSecret } from '../../common/src/secrets';
import { ChdbEvidenceStore, ClickHouseServerStore, type EvidenceStore } from '../../common/src/store';
import { EVIDENCE_WRITER_GROUP } from '../../processors/src/evidence-writer';

/**
 * What every Attest role stands on: the evidence log, the control log, the evidence store and the
 * keys subscribers trust. The config decides the adapters (same domain code either way):
 *
 *   log.kind   file  → dataDir/log and dataDir/control (one process: `attest start`)
 *              kafka → the events and control topics (any number of processes)
 *   store.kind embedded   → ClickHouse in-process (chdb) under dataDir/store (one process)
 *              clickhouse → a ClickHouse server over HTTP
 */

export interface Backbone {
  log: EventLog;
  /**
   * Called when evidence spooled during a Kafka outage has been delivered (log.kafka.onUnavailable:
   * spool); the role records the window as evidence.
   */
  onSpoolDrained?: (window: { fromUs: number; toUs: number; records: number }) => void;
  controlLog: EventLog;
  /** Public keys whose control messages are obeyed (the installation's signing keys). */
  trust: TrustSource;
  /** Opened on first use: a gateway never needs the store. */
  store(): Promise<EvidenceStore>;
  close(): Promise<void>;
}

export async function openBackbone(config: AttestConfig, logger: Logger, env: NodeJS.ProcessEnv, role = 'platform'): Promise<Backbone> {
  const backbone: Partial<Backbone> = {};
  const toClose: Array<() => Promise<void>> = [];
  const close = async () => {
    for (const c of toClose.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        logger.error({ code: (err as { code?: string }).code }, 'error while closing the backbone');
      }
    }
  };
  try {
    let log: EventLog;
    let controlLog: EventLog;
    if (config.log.kind === 'kafka') {
      const k = config.log.kafka!;
      // Loaded only in distributed mode: the client library costs most of a second to import.
      const { ensureKafkaTopics, openKafkaEventLog } = await import('../../common/src/log/kafka');
      if (k.createTopics) {
        await ensureKafkaTopics({
          brokers: k.brokers,
          clientId: `${k.clientId}-admin`,
          names: k.topics,
          eventPartitions: k.partitions,
          replicationFactor: k.replicationFactor,
          minInsyncReplicas: k.minInsyncReplicas,
        });
      }
      const kafkaLog = await openKafkaEventLog({ brokers: k.brokers, clientId: k.clientId, topic: k.topics.events, compression: k.compression });
      if (k.onUnavailable === 'spool') {
        // One spool per role and host: a restarted process drains what its predecessor left.
        const spool = await FileEventLog.open({ dir: join(config.dataDir, 'spool', `${role}-${hostname()}`), partitions: kafkaLog.partitionCount });
        log = await SpoolingEventLog.open({ primary: kafkaLog, spool, logger, onDrained: (w) => backbone.onSpoolDrained?.(w) });
      } else {
        log = kafkaLog;
      }
      toClose.push(() => log.close());
      controlLog = await openKafkaEventLog({ brokers: k.brokers, clientId: `${k.clientId}-control`, topic: k.topics.control, compression: k.compression });
      toClose.push(() => controlLog.close());
    } else {
      // Segments go only once the evidence writer has stored them, even before it first connects.
      log = await FileEventLog.open({ dir: join(config.dataDir, 'log'), retention: { requiredGroups: [EVIDENCE_WRITER_GROUP] } }).catch((err: unknown) => {
        throw onePerProcess(err, 'log');
      });
      toClose.push(() => log.close());
      // The control log sits beside the evidence log: in embedded mode it is the control "topic".
      controlLog = await FileEventLog.open({ dir: join(config.dataDir, 'control') });
      toClose.push(() => controlLog.close());
    }

    let store: Promise<EvidenceStore> | undefined;
    const openStore = async (): Promise<EvidenceStore> => {
      const retention = { days: config.store.retentionDays, allowBelowMinimum: config.store.allowRetentionBelowMinimum };
      if (config.store.kind === 'clickhouse') {
        const c = config.store.clickhouse!;
        return ClickHouseServerStore.open({
          url: c.url,
          database: c.database,
          username: c.username,
          password: c.password ? readSecret(c.password, 'store.clickhouse.password', env) : '',
          ...(c.readonlyUsername ? { readonlyUsername: c.readonlyUsername } : {}),
          ...(c.readonlyPassword ? { readonlyPassword: readSecret(c.readonlyPassword, 'store.clickhouse.readonlyPassword', env) } : {}),
          asyncInsert: c.asyncInsert,
          retention,
        });
      }
      return ChdbEvidenceStore.open({ dataDir: join(config.dataDir, 'store'), retention });
    };
    return Object.assign(backbone, {
      log,
      controlLog,
      trust: trustKeyDirectory(join(config.dataDir, 'keys', 'signing')),
      store: () => {
        if (!store) {
          store = openStore();
          toClose.push(async () => (await store!).close());
        }
        return store;
      },
      close,
    });
  } catch (err) {
    await close();
    throw err;
  }
}

function onePerProcess(err: unknown, what: string): unknown {
  if ((err as { code?: string }).code !== 'log_locked') return err;
  return new AttestError('log_locked', `the embedded ${what} in dataDir is in use by another Attest process`, {
    cause: err,
    fix: "the embedded log serves one process: run every role in it with `attest start`, or set log.kind: kafka to run `attest gateway`, `attest processors` and `attest console` as separate processes",
  });
}
