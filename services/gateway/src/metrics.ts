import { Counter, Histogram, Gauge, Registry, collectDefaultMetrics } from 'prom-client';

/** Prometheus metrics of one gateway instance (its own registry, so tests can run several). */
export function createGatewayMetrics(opts: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'attest_', eventLoopMonitoringPrecision: 100 });
  return {
    registry,
    requests: new Counter({
      name: 'attest_gateway_requests_total',
      help: 'Requests handled, by route and response status.',
      labelNames: ['route', 'status'] as const,
      registers: [registry],
    }),
    latency: new Histogram({
      name: 'attest_gateway_request_duration_seconds',
      help: 'Time from request received to response complete (streams included), by route.',
      labelNames: ['route', 'stream'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers: [registry],
    }),
    ttfb: new Histogram({
      name: 'attest_gateway_time_to_first_byte_seconds',
      help: 'Time from request received to the first response byte sent to the caller.',
      labelNames: ['route', 'stream'] as const,
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    maskingHits: new Counter({
      name: 'attest_masking_hits_total',
      help: 'Card numbers detected, by rule, direction and the action taken.',
      labelNames: ['rule', 'direction', 'action'] as const,
      registers: [registry],
    }),
    authFailures: new Counter({
      name: 'attest_auth_failures_total',
      help: 'Rejected caller credentials, by reason.',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    approvals: new Counter({
      name: 'attest_approvals_total',
      help: 'Approval outcomes at this gateway (requested, released, rejected, expired, cancelled, ...), by mode.',
      labelNames: ['outcome', 'mode'] as const,
      registers: [registry],
    }),
    policyDenials: new Counter({
      name: 'attest_policy_denials_total',
      help: 'Requests refused by policy, by rule.',
      labelNames: ['rule'] as const,
      registers: [registry],
    }),
    upstreamErrors: new Counter({
      name: 'attest_upstream_errors_total',
      help: 'Failures talking to the upstream (connect, timeout, reset mid-stream).',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    inFlight: new Gauge({
      name: 'attest_gateway_in_flight_requests',
      help: 'Requests currently being served (held streams included).',
      registers: [registry],
    }),
  };
}

export type GatewayMetrics = ReturnType<typeof createGatewayMetrics>;

/** What the spool metrics read from the evidence log when it spools (SpoolingEventLog). */
export interface SpoolState {
  readonly isSpooling: boolean;
  readonly stats: { readonly stalled: unknown };
}

/**
 * Evidence spool gauges, read at scrape time: whether evidence is going to the local spool (the
 * shared log is unreachable) and whether the spool's drain has stopped at a record the shared log
 * refuses for good. Both deserve an alert: while either is 1, evidence is durable only on this
 * machine's disk.
 */
export function registerSpoolMetrics(registry: Registry, spool: SpoolState): void {
  new Gauge({
    name: 'attest_evidence_spooling',
    help: '1 while evidence is appended to the local spool because the shared event log (Kafka) is unreachable.',
    registers: [registry],
    collect() {
      this.set(spool.isSpooling ? 1 : 0);
    },
  });
  new Gauge({
    name: 'attest_evidence_spool_drain_stalled',
    help: '1 when the spool drain stopped at a record the shared event log refuses for good (see the error log line; raise the limit and restart).',
    registers: [registry],
    collect() {
      this.set(spool.stats.stalled === undefined ? 0 : 1);
    },
  });
}
