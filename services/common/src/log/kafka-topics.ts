/**
 * The Kafka topics of distributed mode, with their settings in one place (docs/kafka.md explains each):
 *
 * - events       the event log: every signed event the gateways emit, partitioned by session;
 * - control      decisions and suspensions the gateways must obey; every gateway reads it from the
 *                earliest record on start to rebuild its state, so it is compacted (latest per key);
 * - dead-letter  events a processor could not handle, kept for an operator to inspect and replay.
 *
 * `ensureKafkaTopics()` creates what is missing and leaves existing topics alone (it never changes a
 * live topic's settings), reporting every setting that differs from what we would have created so a
 * deployment check can flag drift. It refuses, rather than silently weakens, a replication factor
 * the cluster cannot provide.
 */
import { Admin, ConfigResourceTypes } from '@platformatic/kafka';
import { LogError } from './errors';
import { errorIds, kafkaBaseOptions, toLogError, type KafkaConnectionOptions } from './kafka-errors';

const DAY_MS = 24 * 60 * 60 * 1000;

/** Names are configurable per deployment (several environments may share one cluster). */
export interface KafkaTopicNames {
  readonly events: string;
  readonly control: string;
  readonly deadLetter: string;
}

export const DEFAULT_KAFKA_TOPIC_NAMES: KafkaTopicNames = {
  events: 'attest.events',
  control: 'attest.control',
  deadLetter: 'attest.events.dead-letter',
};

/** Replication across three brokers that survives one broker loss without refusing writes. */
export const DEFAULT_REPLICATION_FACTOR = 3;
export const DEFAULT_MIN_INSYNC_REPLICAS = 2;
/** Sessions spread over this many partitions; it caps the parallelism of each processor group. */
export const DEFAULT_EVENT_PARTITIONS = 12;
/**
 * 30 days: the evidence store (ClickHouse, TTL ≥ 365 days) is where evidence is kept; the event log
 * must outlast any processor outage and allow a full re-projection for a month. Raw events carry no
 * PAN (masked at the gateway), so a longer retention costs only disk.
 */
export const DEFAULT_EVENT_RETENTION_MS = 30 * DAY_MS;
export const DEFAULT_DEAD_LETTER_RETENTION_MS = 90 * DAY_MS;
/**
 * Upper bound of one record batch on the broker. The adapter packs at most maxBatchBytes (4 MiB) of
 * records per partition per request; this leaves room for Kafka's framing.
 */
export const DEFAULT_MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

export interface TopicSpec {
  readonly name: string;
  readonly role: keyof KafkaTopicNames;
  readonly partitions: number;
  readonly replicationFactor: number;
  readonly configs: Readonly<Record<string, string>>;
}

export interface KafkaTopicSettings {
  readonly names?: Partial<KafkaTopicNames>;
  /** Partitions of the events topic. Default 12. */
  readonly eventPartitions?: number;
  /** Partitions of the dead-letter topic. Default 3. */
  readonly deadLetterPartitions?: number;
  /** Default 3. Use 1 only for a single-broker development cluster. */
  readonly replicationFactor?: number;
  /** Default 2 (1 when replicationFactor is 1). Must be below replicationFactor to survive a broker loss. */
  readonly minInsyncReplicas?: number;
  readonly eventRetentionMs?: number;
  readonly deadLetterRetentionMs?: number;
  readonly maxMessageBytes?: number;
}

/** The three topics as they would be created: pure, so docs and tests can show the exact settings. */
export function kafkaTopicSpecs(settings: KafkaTopicSettings = {}): TopicSpec[] {
  const names = { ...DEFAULT_KAFKA_TOPIC_NAMES, ...settings.names };
  const rf = settings.replicationFactor ?? DEFAULT_REPLICATION_FACTOR;
  const minIsr = settings.minInsyncReplicas ?? Math.min(DEFAULT_MIN_INSYNC_REPLICAS, rf);
  checkPositive('replicationFactor', rf);
  checkPositive('minInsyncReplicas', minIsr);
  if (minIsr > rf) {
    throw new LogError('log_invalid_argument', `minInsyncReplicas ${minIsr} exceeds replicationFactor ${rf}: every write would be refused`, {
      where: 'minInsyncReplicas',
      fix: 'Use a minInsyncReplicas at most replicationFactor (2 of 3 is the usual choice).',
    });
  }
  for (const [role, name] of Object.entries(names)) checkTopicName(name, `names.${role}`);
  if (new Set(Object.values(names)).size !== 3) {
    throw new LogError('log_invalid_argument', 'the events, control and dead-letter topics need three different names', { where: 'names' });
  }
  const durable = {
    'min.insync.replicas': String(minIsr),
    // A replica that fell behind must never become leader: it would drop acknowledged events.
    'unclean.leader.election.enable': 'false',
    // The producer picks the codec (see kafka-log.ts); the broker keeps batches as they arrive.
    'compression.type': 'producer',
    'max.message.bytes': String(settings.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES),
  };
  const eventPartitions = settings.eventPartitions ?? DEFAULT_EVENT_PARTITIONS;
  const deadLetterPartitions = settings.deadLetterPartitions ?? 3;
  checkPositive('eventPartitions', eventPartitions);
  checkPositive('deadLetterPartitions', deadLetterPartitions);
  return [
    {
      name: names.events,
      role: 'events',
      partitions: eventPartitions,
      replicationFactor: rf,
      configs: {
        ...durable,
        'cleanup.policy': 'delete',
        'retention.ms': String(settings.eventRetentionMs ?? DEFAULT_EVENT_RETENTION_MS),
        'retention.bytes': '-1',
        // appendTimeMs is the broker's clock, as the port promises, whatever the producer's clock says.
        'message.timestamp.type': 'LogAppendTime',
      },
    },
    {
      name: names.control,
      role: 'control',
      // One partition: gateways apply decisions and suspensions in one total order.
      partitions: 1,
      replicationFactor: rf,
      configs: {
        ...durable,
        // Latest record per key (the identity or approval it controls) is kept forever, so a gateway
        // rebuilding from earliest reads current state, not years of history; history stays in events.
        'cleanup.policy': 'compact',
        'min.compaction.lag.ms': String(DAY_MS),
        'delete.retention.ms': String(7 * DAY_MS),
        'message.timestamp.type': 'LogAppendTime',
      },
    },
    {
      name: names.deadLetter,
      role: 'deadLetter',
      partitions: deadLetterPartitions,
      replicationFactor: rf,
      configs: {
        ...durable,
        'cleanup.policy': 'delete',
        'retention.ms': String(settings.deadLetterRetentionMs ?? DEFAULT_DEAD_LETTER_RETENTION_MS),
        'retention.bytes': '-1',
        // Keep the time the event was first appended, carried over by the processor that parks it.
        'message.timestamp.type': 'CreateTime',
      },
    },
  ];
}

export interface EnsuredTopic {
  readonly name: string;
  readonly role: keyof KafkaTopicNames;
  readonly created: boolean;
  readonly partitions: number;
  /** Settings of an existing topic that differ from the spec; empty when it matches or was created. */
  readonly differences: ReadonlyArray<{ readonly config: string; readonly expected: string; readonly actual: string | null }>;
}

export interface EnsureKafkaTopicsOptions extends KafkaTopicSettings, KafkaConnectionOptions {
  readonly brokers: readonly string[];
  readonly clientId: string;
  /** Only these roles; default all three. */
  readonly roles?: ReadonlyArray<keyof KafkaTopicNames>;
}

/**
 * Creates the missing topics and describes the existing ones. Idempotent; safe to run from every
 * instance at start (concurrent creators race to TOPIC_ALREADY_EXISTS, which counts as existing).
 * Throws LogError 'log_config_mismatch' when an existing topic has a different partition count for
 * the events topic's spec or the cluster has fewer brokers than the replication factor.
 */
export async function ensureKafkaTopics(opts: EnsureKafkaTopicsOptions): Promise<EnsuredTopic[]> {
  const specs = kafkaTopicSpecs(opts).filter((s) => opts.roles === undefined || opts.roles.includes(s.role));
  const admin = new Admin(kafkaBaseOptions(opts));
  try {
    const out: EnsuredTopic[] = [];
    for (const spec of specs) out.push(await ensureOne(admin, spec, opts.brokers));
    return out;
  } finally {
    await admin.close().catch(() => {});
  }
}

async function ensureOne(admin: Admin, spec: TopicSpec, brokers: readonly string[]): Promise<EnsuredTopic> {
  const existing = await existingPartitions(admin, spec.name, brokers);
  if (existing === undefined) {
    const cluster = await admin.metadata({ topics: [] }).catch((err: unknown) => {
      throw toLogError(err, `reading the Kafka cluster metadata from ${brokers.join(',')}`, brokers);
    });
    if (cluster.brokers.size < spec.replicationFactor) {
      throw new LogError(
        'log_config_mismatch',
        `topic ${spec.name} needs replication factor ${spec.replicationFactor}, but the cluster has ${cluster.brokers.size} broker(s)`,
        {
          where: 'replicationFactor',
          fix: 'Add brokers, or set replicationFactor (and minInsyncReplicas) to 1 for a single-broker development cluster.',
        },
      );
    }
    try {
      await admin.createTopics({
        topics: [spec.name],
        partitions: spec.partitions,
        replicas: spec.replicationFactor,
        configs: Object.entries(spec.configs).map(([name, value]) => ({ name, value })),
      });
      return { name: spec.name, role: spec.role, created: true, partitions: spec.partitions, differences: [] };
    } catch (err) {
      // Another instance created it between our look and our create: it exists now, compare below.
      if (!errorIds(err).includes('TOPIC_ALREADY_EXISTS')) throw toLogError(err, `creating Kafka topic ${spec.name}`, brokers);
    }
  }
  const partitions = existing ?? (await existingPartitions(admin, spec.name, brokers)) ?? spec.partitions;
  const differences = await configDifferences(admin, spec, brokers);
  if (partitions !== spec.partitions) differences.unshift({ config: 'partitions', expected: String(spec.partitions), actual: String(partitions) });
  return { name: spec.name, role: spec.role, created: false, partitions, differences };
}

/** Partition count of a topic, or undefined when it does not exist. */
export async function existingPartitions(admin: Admin, topic: string, brokers: readonly string[]): Promise<number | undefined> {
  try {
    // Listing first: asking metadata for a missing topic is retried by the client as if transient.
    if (!(await admin.listTopics({ includeInternals: false })).includes(topic)) return undefined;
    const meta = await admin.metadata({ topics: [topic], forceUpdate: true });
    return meta.topics.get(topic)?.partitionsCount;
  } catch (err) {
    throw toLogError(err, `reading metadata of Kafka topic ${topic}`, brokers);
  }
}

async function configDifferences(admin: Admin, spec: TopicSpec, brokers: readonly string[]): Promise<Array<{ config: string; expected: string; actual: string | null }>> {
  const described = await admin
    .describeConfigs({ resources: [{ resourceType: ConfigResourceTypes.TOPIC, resourceName: spec.name, configurationKeys: Object.keys(spec.configs) }] })
    .catch((err: unknown) => {
      throw toLogError(err, `describing Kafka topic ${spec.name}`, brokers);
    });
  const actual = new Map((described[0]?.configs ?? []).map((c) => [c.name, c.value]));
  return Object.entries(spec.configs)
    .filter(([k, v]) => actual.get(k) !== v)
    .map(([config, expected]) => ({ config, expected, actual: actual.get(config) ?? null }));
}

/** Kafka's own rule: 1-249 of [a-zA-Z0-9._-], not "." or "..". */
export function checkTopicName(name: string, where = 'topic'): void {
  if (typeof name !== 'string' || !/^[A-Za-z0-9._-]{1,249}$/.test(name) || name === '.' || name === '..') {
    throw new LogError('log_invalid_argument', `Kafka topic name ${JSON.stringify(name)} is invalid`, {
      where,
      fix: 'Use 1-249 characters from A-Z a-z 0-9 . _ -',
    });
  }
}

function checkPositive(what: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 1) throw new LogError('log_invalid_argument', `${what} must be a positive integer, got ${n}`, { where: what });
}
