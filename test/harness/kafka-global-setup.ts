/**
 * Vitest global setup: one real Kafka broker shared by every Kafka test file of a run, started only
 * when the first test file asks for it.
 *
 * A broker costs 8-30 s to start, so starting one per test file (or eagerly for runs that select no
 * Kafka test) is waste. This setup runs once in vitest's main process and serves a tiny HTTP
 * endpoint on 127.0.0.1; `kafkaForTests()` (test/harness/kafka.ts) asks it for the brokers, and the
 * first ask starts the broker (concurrent asks share the start). A run without Kafka tests pays for
 * one listening socket (< 1 ms) and nothing else. Teardown stops the broker if one was started.
 *
 * With KAFKA_BROKERS set, that cluster is used and nothing is started (startKafka's own rule).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestProject } from 'vitest/node';
import { startKafka, type KafkaBroker } from './kafka';

declare module 'vitest' {
  export interface ProvidedContext {
    /** URL of the shared-broker endpoint; GET answers {"brokers": ["host:port", …]}. */
    attestKafkaService: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let broker: Promise<KafkaBroker> | undefined;
  const server: Server = createServer((_req, res) => {
    broker ??= startKafka();
    broker.then(
      (b) => {
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify({ brokers: b.brokers }));
      },
      (err: unknown) => {
        // Let a later file try again rather than fail every file on one bad start.
        broker = undefined;
        res.statusCode = 500;
        res.end((err as Error).message);
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  project.provide('attestKafkaService', `http://127.0.0.1:${port}/`);

  return async () => {
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      // Workers' fetch() keeps connections alive; they must not hold the run open.
      server.closeAllConnections();
    });
    if (broker) await (await broker.catch(() => undefined))?.close();
  };
}
