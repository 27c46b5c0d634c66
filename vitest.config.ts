import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['services/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Integration tests bind real ports and start real components; keep parallelism modest on 2 cores.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
