/**
 * The Kafka adapter of the event log, in its own barrel: importing @platformatic/kafka costs most
 * of a second, which embedded-mode processes should not pay.
 */
export { DEFAULT_APPEND_TIMEOUT_MS, DEFAULT_KAFKA_COMPRESSION, DEFAULT_KAFKA_MAX_BATCH_BYTES, DEFAULT_MAX_FETCH_WAIT_MS, KAFKA_COMPRESSIONS, KafkaEventLog, kafkaPartitionForKey, openKafkaEventLog, type KafkaCompression, type KafkaLogOptions, type KafkaLogStats } from './kafka-log';
export { DEFAULT_KAFKA_TOPIC_NAMES, ensureKafkaTopics, kafkaTopicSpecs, type EnsuredTopic, type EnsureKafkaTopicsOptions, type KafkaTopicNames, type KafkaTopicSettings, type TopicSpec } from './kafka-topics';
export type { KafkaConnectionOptions } from './kafka-errors';
