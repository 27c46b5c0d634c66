import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['services/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // One Kafka broker for the whole run, started lazily by the first Kafka test file (a run with no
    // Kafka test only opens a local socket); see test/harness/kafka-global-setup.ts.
    globalSetup: ['test/harness/kafka-global-setup.ts'],
    // Integration tests bind real ports and start real components; keep parallelism modest on 2 cores.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
