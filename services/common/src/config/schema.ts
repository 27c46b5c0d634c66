import { z } from 'zod';
import { approvalPolicySchema } from '../approvals/rules';
import { riskPolicySchema } from './risk-policy';
import { dlpPolicySchema } from '../dlp/policy';

/**
 * The one configuration file (YAML) of an Attest deployment. Every key here is documented in the
 * README's configuration table; `attest config check FILE` validates a file against this schema.
 * Objects are strict: an unknown key is an error, because a misspelt security setting that is
 * silently ignored is worse than a refusal to start.
 */

const MiB = 1024 * 1024;

export const MASKING_ACTIONS = ['mask', 'block', 'allow'] as const;
export type MaskingAction = (typeof MASKING_ACTIONS)[number];

export const ROUTES = ['messages', 'count_tokens', 'models'] as const;
export type RouteName = (typeof ROUTES)[number];

/** Asymmetric JWS algorithms only: `none` and HMAC are never acceptable for caller tokens. */
export const ALLOWED_JWT_ALGS = [
  'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA',
] as const;

const secretSource = z
  .strictObject({
    env: z.string().min(1).optional(),
    file: z.string().min(1).optional(),
  })
  .refine((s) => (s.env === undefined) !== (s.file === undefined), {
    message: 'give exactly one of `env` (an environment variable name) or `file` (a path)',
  });

const maskingPerDirection = z.strictObject({
  request: z.enum(MASKING_ACTIONS).optional(),
  response: z.enum(MASKING_ACTIONS).optional(),
});

const issuer = z.strictObject({
  issuer: z.url(),
  discoveryUrl: z.url().optional(),
  jwksUri: z.url().optional(),
  audiences: z.array(z.string().min(1)).min(1),
  groupsClaim: z.string().min(1).default('groups'),
  algorithms: z.array(z.enum(ALLOWED_JWT_ALGS)).min(1).optional(),
});

const group = z.strictObject({
  /** Which gateway routes the group may call. */
  routes: z.array(z.enum(ROUTES)).min(1).default([...ROUTES]),
  /** Model ids the group may use; `*` is a wildcard (e.g. `claude-sonnet-*`). Empty means none. */
  models: z.array(z.string().min(1)).default(['*']),
  /** Ceiling on `max_tokens`; a request above it is refused rather than silently lowered. */
  maxTokens: z.number().int().positive().optional(),
  streaming: z.boolean().default(true),
  /** Overrides the global masking actions for callers in this group. */
  masking: maskingPerDirection.optional(),
});

export const configSchema = z.strictObject({
  server: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(8080),
      /** Honour X-Forwarded-For from a load balancer in front (source address in evidence). */
      trustProxy: z.boolean().default(false),
    })
    .prefault({}),
  limits: z
    .strictObject({
      maxBodyBytes: z.number().int().positive().max(256 * MiB).default(32 * MiB),
      maxHeaderBytes: z.number().int().min(1024).max(1 * MiB).default(32 * 1024),
      maxTokenBytes: z.number().int().min(256).max(64 * 1024).default(8192),
      /** Whole-request timeout towards the upstream, streaming included. */
      upstreamTimeoutMs: z.number().int().positive().default(600_000),
      /** Time allowed for the upstream to send response headers. */
      upstreamHeadersTimeoutMs: z.number().int().positive().default(120_000),
      /** How long shutdown waits for in-flight requests and streams to finish. */
      shutdownGraceMs: z.number().int().nonnegative().default(30_000),
    })
    .prefault({}),
  upstream: z.strictObject({
    anthropic: z.strictObject({
      baseUrl: z.url().default('https://api.anthropic.com'),
      apiKey: secretSource,
      connections: z.number().int().positive().max(1024).default(64),
    }),
  }),
  identity: z
    .strictObject({
      clockToleranceSec: z.number().int().min(0).max(300).default(30),
      jwksCooldownMs: z.number().int().min(1000).default(30_000),
      issuers: z.array(issuer).default([]),
      devIssuer: z
        .strictObject({
          /** DEVELOPMENT ONLY: a local token issuer so Attest can be tried without an IdP. */
          enabled: z.boolean().default(false),
          audience: z.string().min(1).default('attest-dev'),
        })
        .prefault({}),
    })
    .prefault({}),
  masking: z
    .strictObject({
      /** How a PAN is shown after masking: first six and last four, or last four only. */
      format: z.enum(['bin6-last4', 'last4']).default('bin6-last4'),
      request: z.enum(MASKING_ACTIONS).default('mask'),
      response: z.enum(MASKING_ACTIONS).default('mask'),
    })
    .prefault({}),
  groups: z.record(z.string().min(1), group).default({}),
  evidence: z
    .strictObject({
      /** Tenant id written on every event (PCI DSS A1.2 for multi-tenant providers). */
      tenantId: z.string().min(1).max(128).default('default'),
      /** Stable id of this producer across restarts; default `<component>-<hostname>`. */
      producerId: z.string().regex(/^[A-Za-z0-9_.:-]{1,128}$/).optional(),
      /** Signed checkpoints are cut every N events or every T ms, whichever comes first, even when idle. */
      checkpointEveryEvents: z.number().int().min(1).max(1_000_000).default(10_000),
      checkpointEveryMs: z.number().int().min(100).max(3_600_000).default(60_000),
    })
    .prefault({}),
  store: z
    .strictObject({
      /** Evidence retention; PCI DSS 10.5.1 asks for 12 months, so less is refused without the override. */
      retentionDays: z.number().int().min(1).max(36_500).default(365),
      /** Allow retentionDays below 365; the change is then recorded as a config.changed event with override. */
      allowRetentionBelowMinimum: z.boolean().default(false),
      /** 'embedded': ClickHouse in-process (chdb) under dataDir/store; 'clickhouse': a ClickHouse server. */
      kind: z.enum(['embedded', 'clickhouse']).default('embedded'),
      clickhouse: z
        .strictObject({
          url: z.url(),
          database: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/).default('attest'),
          username: z.string().min(1).default('attest'),
          password: secretSource.optional(),
          /** The read-only user auditor queries run as (PCI DSS 10.3.1: evidence is read, never changed). */
          readonlyUsername: z.string().min(1).optional(),
          readonlyPassword: secretSource.optional(),
          asyncInsert: z.boolean().default(false),
        })
        .optional(),
    })
    .prefault({}),
  log: z
    .strictObject({
      /** 'file': the embedded durable log under dataDir/log; 'kafka': Apache Kafka. */
      kind: z.enum(['file', 'kafka']).default('file'),
      kafka: z
        .strictObject({
          brokers: z.array(z.string().regex(/^[^\s:]+:\d{1,5}$/, 'host:port')).min(1),
          clientId: z.string().min(1).max(200).default('attest'),
          topics: z
            .strictObject({
              events: z.string().min(1).default('attest.events'),
              control: z.string().min(1).default('attest.control'),
              deadLetter: z.string().min(1).default('attest.events.dead-letter'),
            })
            .prefault({}),
          /** Create missing topics at start with the documented defaults (docs/kafka.md). */
          createTopics: z.boolean().default(true),
          partitions: z.number().int().min(1).max(1000).default(12),
          replicationFactor: z.number().int().min(1).max(7).default(3),
          minInsyncReplicas: z.number().int().min(1).max(7).default(2),
          compression: z.enum(['none', 'gzip', 'snappy', 'lz4']).default('lz4'),
          /**
           * When the brokers are unreachable: 'fail_closed' (503, nothing is served without evidence)
           * or 'spool' (evidence goes durably to dataDir/spool and is delivered when Kafka is back).
           */
          onUnavailable: z.enum(['fail_closed', 'spool']).default('fail_closed'),
        })
        .optional(),
    })
    .prefault({}),
  console: z
    .strictObject({
      /** The auditors' evidence API (queries, session replay, card lookup, verification). */
      enabled: z.boolean().default(true),
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(8090),
      /** Groups whose members may read evidence (read-only). */
      auditorGroups: z.array(z.string().min(1)).min(1).default(['auditors']),
      /** Groups whose members may suspend and restore identities at every gateway. */
      adminGroups: z.array(z.string().min(1)).min(1).default(['attest-admins']),
      /** The approvals reviewer console: web sign-in (OIDC code + PKCE) and the /v1/approvals API. */
      reviewer: z
        .strictObject({
          issuer: z.url(),
          clientId: z.string().min(1),
          /** A confidential client's secret; absent: a public client (PKCE only). */
          clientSecret: secretSource.optional(),
          /** The console's external origin; the IdP must allow `${publicUrl}/reviewer/callback`. */
          publicUrl: z.url(),
          scopes: z.array(z.string().min(1)).default(['openid', 'profile']),
          groupsClaim: z.string().min(1).default('groups'),
          reviewerGroups: z.array(z.string().min(1)).min(1),
          /** Seals the session cookies: at least 32 random bytes, e.g. `openssl rand -base64 48`. */
          sessionKey: secretSource,
          sessionTtlSec: z.number().int().min(60).max(43_200).default(3600),
        })
        .optional(),
      maxRows: z.number().int().min(1).max(1_000_000).default(10_000),
    })
    .prefault({}),
  /** Requests a human must approve before the gateway forwards them (services/common/src/approvals). */
  approvals: approvalPolicySchema
    .and(
      z.strictObject({
        /** SSE comment interval while a streamed request is held, so proxies keep the connection. */
        keepAliveMs: z.number().int().min(1000).max(60_000).default(15_000),
        /** Where approvers are told: a Slack-compatible incoming webhook (its URL is a secret). */
        notify: z
          .strictObject({
            webhook: secretSource.optional(),
            /** Base URL of the reviewer console, for links in notifications. */
            consoleUrl: z.url().optional(),
          })
          .prefault({}),
      }),
    )
    .prefault({}),
  /** `attest processors` run alone: where its health and metrics are served. */
  processors: z
    .strictObject({
      host: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65535).default(8091),
      /**
       * State snapshots of the risk, DLP and approval books under dataDir/snapshots: a restart
       * replays only the log after the last one (a cache; never evidence, see docs/processors.md).
       */
      snapshots: z
        .strictObject({
          enabled: z.boolean().default(true),
          /** Take one after this many records committed since the last (and at every clean stop). */
          everyRecords: z.number().int().min(1).default(100_000),
          /** Take one after this long since the last, at the next commit. */
          everyMs: z.number().int().min(1_000).default(60_000),
        })
        .prefault({}),
    })
    .prefault({}),
  /** DLP beyond PAN in stored events: detectors, strategies, custom patterns (services/common/src/dlp). */
  dlp: dlpPolicySchema.prefault({}),
  /** Risk rules: signals, scoring, findings, automatic suspension (services/processors/src/risk). */
  risk: riskPolicySchema.prefault({}),
  dataDir: z.string().min(1).default('./data'),
  logging: z
    .strictObject({
      level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    })
    .prefault({}),
});

export type AttestConfig = z.infer<typeof configSchema>;
export type GroupConfig = z.infer<typeof group>;
export type IssuerConfig = z.infer<typeof issuer>;
