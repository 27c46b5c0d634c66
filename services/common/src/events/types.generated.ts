// Generated from schemas/avro by `node --import tsx schemas/fixtures/generate.ts`. Do not edit:
// change the .avsc files (and docs there), then regenerate. A test fails when this file is stale.
import type { AttestEvent } from './types';

/** What the event is, when and where it was recorded, and its place in its producer's hash chain. */
export interface Metadata {
  /**
   * Globally unique id of this event, a UUIDv7 (time-ordered). Stable across retries and
   * re-deliveries: sinks deduplicate on it.
   */
  readonly eventId: string;
  /** Event type, dot-separated, e.g. 'gateway.request.received'. PCI DSS 10.2.2 'type of event'. */
  readonly type: string;
  /**
   * Stable short code of the event type, e.g. 'AG1001' (scheme in docs/events.md). Never reused for
   * another type.
   */
  readonly code: string;
  /** Version of this type's schema the event was written with (1, 2, ...). */
  readonly schemaVersion: number;
  /**
   * When the event happened, in microseconds since the Unix epoch, UTC. PCI DSS 10.2.2 'date and
   * time'.
   */
  readonly timeUs: number;
  /**
   * Id of the component instance that recorded the event, e.g. 'gateway-7f9c'. One hash chain per
   * producer.
   */
  readonly producer: string;
  /**
   * Id of this run of the producer (a UUIDv7 taken at start): sequences restart at every epoch, so
   * a restart is recognisable.
   */
  readonly producerEpoch: string | null;
  /**
   * Position of the event in its producer's chain within the epoch: 1, 2, 3, ... with no gaps; 0
   * for events outside the chain (integrity.checkpoint). Set by the chaining emitter.
   */
  readonly sequence: number;
  /**
   * SHA-256 of the previous event's complete encoded bytes (single-object header included) from the
   * same producer and epoch; for sequence 1, the epoch's starting link (the hash of the producer's
   * last checkpoint, or 32 zero bytes if it never had one). Set by the chaining emitter.
   */
  readonly prevHash: Sha256;
  /**
   * The customer the event belongs to (PCI DSS A1.2.x: per-customer logs). 'default' in
   * single-tenant deployments.
   */
  readonly tenantId: string;
  /**
   * PCI DSS v4.0.1 requirement ids this event is evidence for, e.g. '10.2.1.1', from the per-type
   * table in docs/events.md.
   */
  readonly pciRequirements: readonly string[];
}

/**
 * A SHA-256 digest (32 raw bytes). Never computed over content that may still hold a PAN: an
 * unkeyed hash of low-entropy card data can be brute-forced (PCI DSS 3.5.1.1).
 */
export type Sha256 = Buffer; // fixed(32)

/**
 * Who did it: the authenticated principal. PCI DSS 10.2.2 'user identification' and 8.2.1 (a unique
 * id per user).
 */
export interface Actor {
  /**
   * The principal's unique id at its issuer (the OIDC 'sub' claim, or a service account id). Never
   * a shared or generic account name.
   */
  readonly subject: string;
  /** Who vouches for the subject: the OIDC issuer URL, or 'attest' for Attest's own components. */
  readonly issuer: string;
  /** OAuth client the token was issued to ('azp' or 'client_id'), when known. */
  readonly clientId: string | null;
  /**
   * Groups the principal held when the event happened (from the configured groups claim). Empty if
   * none.
   */
  readonly groups: readonly string[];
  /** What kind of principal the subject is. */
  readonly kind: ActorKind;
  /**
   * Subject of the human an agent or service acts for (token exchange 'act' / delegated claim), so
   * each action traces back to an individual (PCI DSS 8.2.1, 8.2.2).
   */
  readonly onBehalfOf: string | null;
  /**
   * True when the identity came from a development shortcut (no real identity provider). Must be
   * false in production evidence.
   */
  readonly dev: boolean;
}

/** Symbols of {@link ActorKind}, in schema order. */
export const ACTOR_KIND_SYMBOLS = ['human', 'agent', 'service', 'system', 'unknown'] as const;
/**
 * human: a person; agent: an AI agent; service: a non-agent program; system: an Attest component;
 * unknown: not established (e.g. a failed login).
 */
export type ActorKind = (typeof ACTOR_KIND_SYMBOLS)[number];

/** Where the action came from. PCI DSS 10.2.2 'origination of event'. */
export interface Source {
  /**
   * Network address of the caller as seen by the producer (IPv4/IPv6, or 'unix:' plus socket path;
   * 'internal' for actions originating inside an Attest component).
   */
  readonly address: string;
  /**
   * User agent or client application name the caller presented, when any (HTTP User-Agent,
   * PostgreSQL application_name).
   */
  readonly userAgent: string | null;
}

/**
 * What the action was aimed at. PCI DSS 10.2.2 'identity or name of affected data, system
 * component, resource, or service'.
 */
export interface Target {
  /** Protocol through which the target was reached. */
  readonly protocol: Protocol;
  /** The service or system component, e.g. 'anthropic', 'postgres:payments', 'attest:gateway'. */
  readonly service: string;
  /**
   * The resource within the service: a route or path ('/v1/messages'), a database or table
   * ('payments.cards'), a config object ('policy'), a key id.
   */
  readonly resource: string;
  /** Model requested from an AI API, e.g. 'claude-sonnet-4-5', when the target is one. */
  readonly model: string | null;
}

/** Symbols of {@link Protocol}, in schema order. */
export const PROTOCOL_SYMBOLS = ['http', 'postgres', 'kafka', 'clickhouse', 'internal', 'unknown'] as const;
/**
 * http: HTTP APIs (Claude, internal); postgres: PostgreSQL wire protocol; kafka/clickhouse: the
 * evidence pipeline; internal: an Attest component's own state (config, keys, findings).
 */
export type Protocol = (typeof PROTOCOL_SYMBOLS)[number];

/** How it ended. PCI DSS 10.2.2 'success and failure indication'. */
export interface Outcome {
  /** Whether the action succeeded. */
  readonly result: OutcomeResult;
  /** Protocol status, when there is one: the HTTP status returned to the caller, or a numeric code. */
  readonly status: number | null;
  /**
   * Short machine-readable reason for a failure or an unknown result, e.g. 'policy_denied',
   * 'upstream_timeout'. Never contains content.
   */
  readonly reason: string | null;
}

/** Symbols of {@link OutcomeResult}, in schema order. */
export const OUTCOME_RESULT_SYMBOLS = ['success', 'failure', 'unknown'] as const;
/**
 * success: the action did what was asked; failure: it was refused or failed; unknown: not yet known
 * or not observable (e.g. a client disconnect before the upstream answered).
 */
export type OutcomeResult = (typeof OUTCOME_RESULT_SYMBOLS)[number];

/** Ids that tie events of one session and one request together across producers. */
export interface Correlation {
  /**
   * Session the event belongs to (a gateway connection or agent session). Events not caused by a
   * caller use the id of the operation that caused them, e.g. 'system:' plus the producer epoch.
   */
  readonly sessionId: string;
  /**
   * Request the event belongs to, assigned by the gateway when the request arrives; echoed to the
   * caller. Events not caused by a request use their own operation id.
   */
  readonly requestId: string;
  /** Request id the upstream returned (e.g. Anthropic's 'request-id' header), when known. */
  readonly upstreamRequestId: string | null;
}

/** Payload of session.started. */
export interface SessionStartedPayload {
  /** Client software name, e.g. 'claude-code', when presented. */
  readonly clientName: string | null;
  /** Client software version, when presented. */
  readonly clientVersion: string | null;
  /** How the session's caller authenticated. */
  readonly authMethod: AuthMethod;
  /** Id ('jti') of the credential that opened the session. Never the credential itself. */
  readonly tokenId: string | null;
  /** When that credential expires, in microseconds since the Unix epoch, UTC. */
  readonly tokenExpiresAtUs: number | null;
  /** TLS version negotiated with the caller, e.g. 'TLSv1.3'; null for a local plaintext transport. */
  readonly tlsVersion: string | null;
}

/** Symbols of {@link AuthMethod}, in schema order. */
export const AUTH_METHOD_SYMBOLS = ['oidc_jwt', 'mtls', 'api_key', 'session_cookie', 'dev', 'unknown'] as const;
/**
 * How the caller authenticated: oidc_jwt (a bearer JWT from an OIDC issuer), mtls (a client
 * certificate), api_key, session_cookie (console login), dev (development shortcut, never in
 * production).
 */
export type AuthMethod = (typeof AUTH_METHOD_SYMBOLS)[number];

/** Payload of session.ended. */
export interface SessionEndedPayload {
  /** Why the session ended. */
  readonly reason: SessionEndReason;
  /** How long the session lasted, in microseconds. */
  readonly durationUs: number;
  /** Requests (or statements) handled in the session. */
  readonly requestCount: number;
  /** Bytes received from the caller over the session. */
  readonly bytesIn: number;
  /** Bytes sent to the caller over the session. */
  readonly bytesOut: number;
}

/** Symbols of {@link SessionEndReason}, in schema order. */
export const SESSION_END_REASON_SYMBOLS = ['client_closed', 'idle_timeout', 'token_expired', 'suspended', 'server_shutdown', 'error', 'unknown'] as const;
/** Why the session ended. */
export type SessionEndReason = (typeof SESSION_END_REASON_SYMBOLS)[number];

/** Payload of auth.succeeded. */
export interface AuthSucceededPayload {
  /** How the caller authenticated. */
  readonly method: AuthMethod;
  /**
   * Authentication methods references from the credential ('pwd', 'otp', 'hwk', 'mfa', ...):
   * evidence of multi-factor authentication (PCI DSS 8.4). Empty when the credential carries none.
   */
  readonly amr: readonly string[];
  /** Authentication context class reference from the credential, when present. */
  readonly acr: string | null;
  /** Id ('jti') of the credential. Never the credential itself. */
  readonly tokenId: string | null;
  /** When the credential was issued, in microseconds since the Unix epoch, UTC. */
  readonly tokenIssuedAtUs: number | null;
  /** When the credential expires, in microseconds since the Unix epoch, UTC. */
  readonly tokenExpiresAtUs: number | null;
  /** The credential's audiences. */
  readonly audience: readonly string[];
}

/** Payload of auth.failed. */
export interface AuthFailedPayload {
  /** How the caller tried to authenticate. */
  readonly method: AuthMethod;
  /** Why authentication failed. */
  readonly reasonCode: AuthFailureReason;
  /**
   * True when the actor fields come from a credential whose signature verified and the failure came
   * later (e.g. 'insufficient_assurance', 'identity_suspended'); false when they are only as
   * presented.
   */
  readonly claimsVerified: boolean;
  /** Authentication methods references presented, if any could be read. */
  readonly amr: readonly string[];
  /** Authentication context class reference presented, if any. */
  readonly acr: string | null;
  /** Id ('jti') of the presented credential, if it could be read. Never the credential itself. */
  readonly tokenId: string | null;
}

/** Symbols of {@link AuthFailureReason}, in schema order. */
export const AUTH_FAILURE_REASON_SYMBOLS = ['missing_credentials', 'malformed_credentials', 'bad_signature', 'expired', 'not_yet_valid', 'wrong_audience', 'unknown_issuer', 'insufficient_assurance', 'identity_suspended', 'revoked', 'unknown'] as const;
/** Why authentication failed. */
export type AuthFailureReason = (typeof AUTH_FAILURE_REASON_SYMBOLS)[number];

/** Payload of gateway.request.received. */
export interface GatewayRequestReceivedPayload {
  /** HTTP method, e.g. 'POST'. */
  readonly method: string;
  /** Route template the request matched, e.g. '/v1/messages'. The concrete path is target.resource. */
  readonly route: string;
  /** Model named in the request body, when any. */
  readonly model: string | null;
  /** True when the caller asked for a streamed (SSE) response. */
  readonly stream: boolean;
  /** Content type of the request body, when any. */
  readonly contentType: string | null;
  /** Size of the request body as received, in bytes. */
  readonly bodyBytes: number;
  /**
   * SHA-256 of the request body after inline masking (the bytes forwarded), never of the raw body;
   * where those bytes still hold a card number (a hit the policy allows, a refused body), of the
   * body with every card number masked by the text masker.
   */
  readonly bodyDigest: Sha256;
  /** What inline masking did to the request. */
  readonly masking: MaskingSummary;
  /**
   * The request body after inline masking, as text: exactly the bytes forwarded upstream, whose
   * SHA-256 is gateway.request.forwarded's bodyDigest. Null when it is not kept: the body is over
   * 262144 UTF-16 characters, was not walked by the masker (a request refused before masking), or
   * would still hold a card number (a hit the policy allows, a request blocked for card data, or
   * one the encoder's guard still finds); always null in events written before version 2.
   */
  readonly content: string | null;
}

/**
 * What inline masking did to a message: totals, and counts per rule and direction. The per-hit
 * detail is in data.masked.
 */
export interface MaskingSummary {
  /**
   * True when card data (a PAN or sensitive authentication data) was detected, so accesses to
   * cardholder data can be flagged (PCI DSS 10.2.1.1).
   */
  readonly cardDataPresent: boolean;
  /** Total number of hits over all rules. */
  readonly totalHits: number;
  /** Hits per rule and direction. Empty when nothing was masked. */
  readonly stats: readonly MaskingStat[];
}

/** How many times one masking rule fired in one direction. */
export interface MaskingStat {
  /**
   * Id of the masking rule, as named in the policy (built-in detectors are 'builtin.<name>', e.g.
   * 'builtin.pan').
   */
  readonly ruleId: string;
  /** Direction of the content the rule fired on. */
  readonly direction: Direction;
  /** What the rule did to each hit. */
  readonly action: MaskAction;
  /** Number of hits. */
  readonly hits: number;
}

/** Symbols of {@link Direction}, in schema order. */
export const DIRECTION_SYMBOLS = ['request', 'response'] as const;
/** Which way the content was flowing: request (caller to upstream) or response (upstream to caller). */
export type Direction = (typeof DIRECTION_SYMBOLS)[number];

/** Symbols of {@link MaskAction}, in schema order. */
export const MASK_ACTION_SYMBOLS = ['masked', 'dropped', 'blocked', 'tokenized', 'allowed', 'unknown'] as const;
/**
 * masked: replaced by BIN + last four at most (PCI DSS 3.4.1); dropped: removed entirely (sensitive
 * authentication data, 3.3.1); blocked: the whole message was refused; tokenized: replaced by a
 * keyed token; allowed: detected and let through unchanged because the policy allows it (still
 * recorded).
 */
export type MaskAction = (typeof MASK_ACTION_SYMBOLS)[number];

/** Payload of policy.decided. */
export interface PolicyDecidedPayload {
  /** Id of the policy document that decided. */
  readonly policyId: string;
  /** Version of that policy document as loaded (its revision or content digest). */
  readonly policyVersion: string;
  /** The decision. */
  readonly decision: PolicyDecision;
  /** Ids of the rules that matched, in evaluation order. */
  readonly ruleIds: readonly string[];
  /**
   * Reason the deciding rule gives, e.g. 'group payments-ro may not use model claude-opus'. Never
   * contains content.
   */
  readonly reason: string | null;
  /** Approval request created, when the decision is 'hold'. */
  readonly approvalId: string | null;
}

/** Symbols of {@link PolicyDecision}, in schema order. */
export const POLICY_DECISION_SYMBOLS = ['allow', 'deny', 'mask', 'hold', 'unknown'] as const;
/**
 * allow: forwarded as is; deny: refused; mask: forwarded after masking; hold: held for a human
 * approver; unknown: a decision a reader does not know (newer writer).
 */
export type PolicyDecision = (typeof POLICY_DECISION_SYMBOLS)[number];

/** Payload of gateway.request.forwarded. */
export interface GatewayRequestForwardedPayload {
  /** Host the request was sent to, e.g. 'api.anthropic.com'. */
  readonly upstreamHost: string;
  /** 1 for the first attempt, incremented on each retry. */
  readonly attempt: number;
  /**
   * Id of the upstream credential the gateway attached. The secret never leaves the gateway (PCI
   * DSS 8.6).
   */
  readonly credentialId: string | null;
  /** True when the forwarded body differs from the received body because of masking. */
  readonly masked: boolean;
  /** Size of the forwarded body, in bytes. */
  readonly bodyBytes: number;
  /**
   * SHA-256 of the forwarded (masked) body; where it still holds a card number the policy allows,
   * of the body with every card number masked by the text masker (never an unkeyed hash over a
   * PAN).
   */
  readonly bodyDigest: Sha256;
}

/** Payload of gateway.request.blocked. */
export interface GatewayRequestBlockedPayload {
  /** Id of the rule that blocked the message. */
  readonly ruleId: string;
  /**
   * Direction of the blocked message: a request never forwarded, or a response never (fully)
   * delivered.
   */
  readonly direction: Direction;
  /** Which control blocked the message. */
  readonly stage: BlockStage;
  /** Approval that was rejected or expired, when the block came from one. */
  readonly approvalId: string | null;
}

/** Symbols of {@link BlockStage}, in schema order. */
export const BLOCK_STAGE_SYMBOLS = ['authorization', 'policy', 'masking', 'approval', 'suspension', 'rate_limit', 'unknown'] as const;
/** Which control blocked the message. */
export type BlockStage = (typeof BLOCK_STAGE_SYMBOLS)[number];

/** Payload of gateway.response.completed. */
export interface GatewayResponseCompletedPayload {
  /** HTTP status the upstream returned; null if it never answered. */
  readonly upstreamStatus: number | null;
  /** Stop reason the model reported, e.g. 'end_turn', 'max_tokens', 'tool_use'. */
  readonly stopReason: string | null;
  /** True when the response was streamed (SSE). */
  readonly stream: boolean;
  /**
   * True when the response ended early: the caller disconnected, the upstream failed mid-stream, or
   * the gateway cut it.
   */
  readonly aborted: boolean;
  /**
   * The delivered response body after masking, when policy keeps content; null when only its digest
   * and size are kept.
   */
  readonly content: string | null;
  /** SHA-256 of the delivered (masked) response body. */
  readonly contentDigest: Sha256;
  /** Size of the delivered response body, in bytes. */
  readonly contentBytes: number;
  /** Masking statistics for the whole exchange, per rule and direction (request and response). */
  readonly masking: MaskingSummary;
  /** Token usage; null when the upstream reported none. */
  readonly usage: TokenUsage | null;
  /** Time from request received to last byte delivered, in microseconds. */
  readonly latencyUs: number;
  /**
   * Time from request received to the first response byte delivered to the caller, in microseconds;
   * null when nothing was delivered.
   */
  readonly timeToFirstByteUs: number | null;
}

/** Token counts the upstream reported. */
export interface TokenUsage {
  /** Input tokens billed. */
  readonly inputTokens: number;
  /** Output tokens generated. */
  readonly outputTokens: number;
  /** Input tokens read from the prompt cache, when reported. */
  readonly cacheReadInputTokens: number | null;
  /** Input tokens written to the prompt cache, when reported. */
  readonly cacheCreationInputTokens: number | null;
}

/** Payload of data.masked. */
export interface DataMaskedPayload {
  /**
   * Event that carries the content these hits were in, when it already existed (a processor masking
   * stored content more deeply); null for inline masking, whose events share correlation.requestId.
   */
  readonly subjectEventId: string | null;
  /**
   * What this masking derives from (provenance). For a derived (processor) pass: the subject
   * event's chain hash, SHA-256 of its encoded bytes (what its successor's prevHash names). For an
   * inline pass that did not rewrite the body (a block, or a hit the policy allows): SHA-256 of the
   * body with every card number masked (never an unkeyed hash over a PAN). Null for an inline pass
   * that masked.
   */
  readonly originalDigest: Sha256 | null;
  /** SHA-256 of the content after masking. */
  readonly maskedDigest: Sha256;
  /**
   * For a derived pass whose result the evidence store keeps instead of the original: SHA-256 of
   * the redacted event, i.e. the subject event encoded again with its content field replaced by the
   * redacted content (metadata and chain position unchanged). A verifier accepts a stored event
   * whose bytes hash to this, in the place of the event whose hash is originalDigest. Null for
   * inline masking and in events written before version 2.
   */
  readonly redactedEventDigest: Sha256 | null;
  /** The hits, in order of appearance. */
  readonly hits: readonly MaskHit[];
}

/**
 * One detection and what was done to it. Carries at most BIN and last four of a PAN, plus a keyed
 * hash of the whole PAN.
 */
export interface MaskHit {
  /** Masking rule that fired ('builtin.pan', or a policy rule id). */
  readonly ruleId: string;
  /** What kind of data was detected. */
  readonly detector: Detector;
  /** Direction of the content. */
  readonly direction: Direction;
  /** Where in the message the hit was. */
  readonly location: MaskLocation;
  /**
   * First six or eight digits of the PAN (the most PCI DSS 3.4.1 allows to display, per brand
   * rules); null for non-PAN detections.
   */
  readonly bin: string | null;
  /** Last four digits of the PAN; null for non-PAN detections. */
  readonly last4: string | null;
  /**
   * HMAC-SHA-256 of the full PAN digits under key panHmacKeyId, so an investigator can ask where a
   * card appeared without the store holding it (PCI DSS 3.5.1.1).
   */
  readonly panHmac: HmacSha256 | null;
  /** Id of the HMAC key for panHmac. */
  readonly panHmacKeyId: string | null;
  /** What was done to the hit. */
  readonly action: MaskAction;
}

/** Symbols of {@link Detector}, in schema order. */
export const DETECTOR_SYMBOLS = ['pan', 'track_data', 'cvv', 'pin_block', 'custom', 'unknown'] as const;
/** What kind of data was detected. */
export type Detector = (typeof DETECTOR_SYMBOLS)[number];

/** Where in the message the hit was. */
export interface MaskLocation {
  /**
   * JSON path of the string holding the hit, e.g. '$.messages[2].content[0].text'; '$' for a
   * non-JSON body; the SQL parameter or column for PostgreSQL.
   */
  readonly jsonPath: string;
  /** Index of the content block (Messages API) or SSE event holding the hit, when relevant. */
  readonly contentBlockIndex: number | null;
  /** Offset of the first character of the hit in that string, in UTF-16 code units. */
  readonly charOffset: number | null;
}

/**
 * An HMAC-SHA-256 tag (32 raw bytes), always stored next to the id of the key that produced it so a
 * rotation keeps old tags verifiable (PCI DSS 3.5.1.1, 3.6).
 */
export type HmacSha256 = Buffer; // fixed(32)

/** Payload of approval.requested. */
export interface ApprovalRequestedPayload {
  /** Id of the approval request. */
  readonly approvalId: string;
  /** What approving releases, e.g. 'request', 'unmask:pan', 'export:evidence'. */
  readonly scope: string;
  /** Rule that required approval. */
  readonly policyRuleId: string;
  /** The requester's stated reason, when given. */
  readonly justification: string | null;
  /** Groups whose members may approve. */
  readonly approverGroups: readonly string[];
  /** Approvals needed. */
  readonly quorum: number;
  /** When the request expires unanswered, in microseconds since the Unix epoch, UTC. */
  readonly expiresAtUs: number;
  /**
   * How the caller waits, from the rule: 'hold' (the gateway keeps the request and forwards it once
   * approved) or 'ask_and_retry' (the caller is refused and retries the same request with the
   * approval id). Null in events written before version 2; such an approval can never release a
   * request.
   */
  readonly mode: string | null;
  /**
   * The request digest (64 lowercase hex characters) of the one request approving releases: a keyed
   * or unkeyed SHA-256 over the canonical request after masking, never over raw card data (PCI DSS
   * 3.5.1.1). A release must present the same digest. Null in events written before version 2.
   */
  readonly requestDigest: string | null;
  /**
   * Why the rule matched, one entry per condition that held, e.g. "caller is in group
   * 'contractors'" or "prompt matches pattern #1 of rule 'bulk-export'"; PAN-masked, never the
   * content itself. Empty in events written before version 2.
   */
  readonly reasons: readonly string[];
  /**
   * The excerpt of the prompt shown to approvers, PAN-masked (BIN and last four at most, PCI DSS
   * 3.4.1) before it was cut to 500 characters (an ellipsis marks a cut). Null when none was shown,
   * and in events written before version 2.
   */
  readonly excerpt: string | null;
  /**
   * The held request approving releases. In hold mode only this very hold can be released; in
   * ask-and-retry mode it names the request that asked. Null in events written before version 2.
   */
  readonly hold: ApprovalHold | null;
  /**
   * How long an approval stays usable once approved, in microseconds; unused by then, it expires
   * (approval.expired, stage 'unreleased'). Null in events written before version 2.
   */
  readonly releaseWindowUs: number | null;
}

/** The held request an approval may release: one gateway run's one hold. */
export interface ApprovalHold {
  /** Stable id of the gateway that holds the request (its producer id). */
  readonly gatewayId: string;
  /**
   * Id of the gateway run holding it (its producer epoch): a restart changes it, and a new run
   * cannot release an old run's hold.
   */
  readonly instanceId: string;
  /** Id of the held request within the run (the gateway's request id). */
  readonly holdId: string;
}

/** Payload of approval.decided. */
export interface ApprovalDecidedPayload {
  /** Id of the approval request. */
  readonly approvalId: string;
  /** The approver's decision. */
  readonly decision: ApprovalDecision;
  /** Subjects of everyone who has approved so far, this actor included when approving. */
  readonly approvers: readonly string[];
  /** Approvals needed. */
  readonly quorum: number;
  /** True when this decision completed the quorum and the held request is released. */
  readonly quorumMet: boolean;
  /** The approver's comment, when given. */
  readonly comment: string | null;
}

/** Symbols of {@link ApprovalDecision}, in schema order. */
export const APPROVAL_DECISION_SYMBOLS = ['approved', 'rejected', 'unknown'] as const;
/** The approver's decision. */
export type ApprovalDecision = (typeof APPROVAL_DECISION_SYMBOLS)[number];

/** Payload of approval.expired. */
export interface ApprovalExpiredPayload {
  /** Id of the approval request. */
  readonly approvalId: string;
  /** When approval was requested, in microseconds since the Unix epoch, UTC. */
  readonly requestedAtUs: number;
  /** When it expired, in microseconds since the Unix epoch, UTC. */
  readonly expiresAtUs: number;
  /** Approvals received before expiry. */
  readonly approvals: number;
  /** Approvals that were needed. */
  readonly quorum: number;
  /**
   * What expired: 'pending' (no quorum before expiresAtUs) or 'unreleased' (approved, but the
   * request was not released within the release window that ended at expiresAtUs). Null in events
   * written before version 2.
   */
  readonly stage: string | null;
}

/** Payload of db.query.executed. */
export interface DbQueryExecutedPayload {
  /** Database the statement ran against. */
  readonly database: string;
  /** Database role the gateway executed the statement as. */
  readonly dbUser: string;
  /** Kind of SQL statement. */
  readonly statementKind: StatementKind;
  /** The statement text with card data masked; null when policy keeps only its digest. */
  readonly statement: string | null;
  /** SHA-256 of the normalised, masked statement text. */
  readonly statementDigest: Sha256;
  /** Schema-qualified tables the statement touches. */
  readonly tables: readonly string[];
  /** Policy decision for the statement. */
  readonly decision: PolicyDecision;
  /** Rows returned to the caller, when the statement returns rows. */
  readonly rowsReturned: number | null;
  /** Rows inserted, updated or deleted, when applicable. */
  readonly rowsAffected: number | null;
  /** Execution time as seen by the gateway, in microseconds; null when not executed. */
  readonly durationUs: number | null;
  /** SQLSTATE of the error, when the statement failed. */
  readonly sqlState: string | null;
  /** What masking did to the statement and its result rows. */
  readonly masking: MaskingSummary;
}

/** Symbols of {@link StatementKind}, in schema order. */
export const STATEMENT_KIND_SYMBOLS = ['select', 'insert', 'update', 'delete', 'ddl', 'dcl', 'transaction', 'other', 'unknown'] as const;
/** Kind of SQL statement. */
export type StatementKind = (typeof STATEMENT_KIND_SYMBOLS)[number];

/** Payload of risk.detected. */
export interface RiskDetectedPayload {
  /** Detector that fired, e.g. 'risk.denial-burst'. */
  readonly detectorId: string;
  /** Severity assigned by the detector. */
  readonly severity: Severity;
  /** Detector score in [0, 1]. */
  readonly score: number;
  /** Identity the risk concerns. */
  readonly principal: PrincipalRef;
  /** What was detected, without content. */
  readonly description: string;
  /** Events that triggered the detection. */
  readonly evidenceEventIds: readonly string[];
  /** Finding opened or updated for it, when any. */
  readonly findingId: string | null;
}

/** Symbols of {@link Severity}, in schema order. */
export const SEVERITY_SYMBOLS = ['info', 'low', 'medium', 'high', 'critical', 'unknown'] as const;
/** Severity of a risk or a finding. */
export type Severity = (typeof SEVERITY_SYMBOLS)[number];

/** A reference to an identity that an event is about (rather than the actor doing it). */
export interface PrincipalRef {
  /** The principal's unique id at its issuer. */
  readonly subject: string;
  /** The issuer that vouches for the subject. */
  readonly issuer: string;
}

/** Payload of identity.suspended. */
export interface IdentitySuspendedPayload {
  /** The suspended identity. */
  readonly principal: PrincipalRef;
  /** Why, machine-readable, e.g. 'risk:exfiltration-pattern', 'admin:offboarding'. */
  readonly reason: string;
  /** Finding behind the suspension, when any. */
  readonly findingId: string | null;
  /**
   * When the suspension lapses by itself, in microseconds since the Unix epoch, UTC; null until
   * explicitly restored.
   */
  readonly untilUs: number | null;
  /** Live sessions the gateways were told to close. */
  readonly sessionsTerminated: number;
}

/** Payload of identity.restored. */
export interface IdentityRestoredPayload {
  /** The restored identity. */
  readonly principal: PrincipalRef;
  /** Why, machine-readable. */
  readonly reason: string;
  /** The identity.suspended event this lifts, when known. */
  readonly suspendedEventId: string | null;
  /** True when the suspension lapsed by itself (untilUs reached). */
  readonly automatic: boolean;
}

/** Payload of config.changed. */
export interface ConfigChangedPayload {
  /** Kind of object changed. */
  readonly objectKind: ConfigObjectKind;
  /** Which object, e.g. 'policy', 'retention.days', 'sink:splunk', 'table:events'. */
  readonly what: string;
  /**
   * What happened to the object (created and deleted are system-level object events, PCI DSS
   * 10.2.1.7).
   */
  readonly change: ConfigChange;
  /** Version before the change; null when created. */
  readonly oldVersion: string | null;
  /** Version after the change; null when deleted. */
  readonly newVersion: string | null;
  /** SHA-256 of the canonical document before the change; null when created. */
  readonly oldDigest: Sha256 | null;
  /** SHA-256 of the canonical document after the change; null when deleted. */
  readonly newDigest: Sha256 | null;
  /**
   * True when a safety check was explicitly overridden, e.g. retention below 365 days (PCI DSS
   * 10.5.1).
   */
  readonly override: boolean;
  /** Short description of the change. Never secrets or content. */
  readonly summary: string | null;
}

/** Symbols of {@link ConfigObjectKind}, in schema order. */
export const CONFIG_OBJECT_KIND_SYMBOLS = ['policy', 'retention', 'sink', 'route', 'key', 'topic', 'table', 'producer', 'other', 'unknown'] as const;
/** Kind of object changed. */
export type ConfigObjectKind = (typeof CONFIG_OBJECT_KIND_SYMBOLS)[number];

/** Symbols of {@link ConfigChange}, in schema order. */
export const CONFIG_CHANGE_SYMBOLS = ['created', 'updated', 'deleted', 'unknown'] as const;
/** What happened to the object. */
export type ConfigChange = (typeof CONFIG_CHANGE_SYMBOLS)[number];

/** Payload of key.rotated. */
export interface KeyRotatedPayload {
  /** What the key is for. */
  readonly purpose: KeyPurpose;
  /** Id of the key replaced; null for the first key. */
  readonly oldKeyId: string | null;
  /** Id of the new key. */
  readonly newKeyId: string;
  /** Algorithm of the new key, e.g. 'Ed25519', 'HMAC-SHA-256'. */
  readonly algorithm: string;
  /** Why the key was rotated. */
  readonly reason: KeyRotationReason;
  /**
   * From when the old key no longer produces anything, in microseconds since the Unix epoch, UTC.
   * Public keys stay published for verification.
   */
  readonly oldKeyRetiresAtUs: number | null;
  /** RFC 7638 JWK thumbprint of the new public key, for signing keys; null for secret keys. */
  readonly publicKeyThumbprint: string | null;
}

/** Symbols of {@link KeyPurpose}, in schema order. */
export const KEY_PURPOSE_SYMBOLS = ['event_signing', 'checkpoint_signing', 'pan_hmac', 'upstream_credential', 'tls', 'other', 'unknown'] as const;
/** What the key is for. */
export type KeyPurpose = (typeof KEY_PURPOSE_SYMBOLS)[number];

/** Symbols of {@link KeyRotationReason}, in schema order. */
export const KEY_ROTATION_REASON_SYMBOLS = ['initial', 'scheduled', 'compromise_suspected', 'manual', 'unknown'] as const;
/** Why the key was rotated. */
export type KeyRotationReason = (typeof KEY_ROTATION_REASON_SYMBOLS)[number];

/** Payload of audit.started. */
export interface AuditStartedPayload {
  /** Component whose audit logging started, e.g. 'gateway'. */
  readonly component: string;
  /** Version of the component software. */
  readonly softwareVersion: string;
  /** SHA-256 of the canonical configuration the component started with. */
  readonly configDigest: Sha256 | null;
  /** Epoch of the previous run of this producer, when known. */
  readonly previousEpoch: string | null;
  /**
   * False when the previous run ended without an audit.stopped (a crash or kill): the gap is
   * unexplained and raises a finding (PCI DSS 10.7.2).
   */
  readonly previousStopRecorded: boolean;
}

/** Payload of audit.stopped. */
export interface AuditStoppedPayload {
  /** Component whose audit logging stopped. */
  readonly component: string;
  /** Why logging stopped. */
  readonly reason: AuditStopReason;
  /** More detail, when any. Never secrets or content. */
  readonly detail: string | null;
  /** True for a restart or pause, false for a decommission. */
  readonly resumeExpected: boolean;
}

/** Symbols of {@link AuditStopReason}, in schema order. */
export const AUDIT_STOP_REASON_SYMBOLS = ['shutdown', 'restart', 'paused', 'config_change', 'operator', 'failure', 'unknown'] as const;
/** Why logging stopped. */
export type AuditStopReason = (typeof AUDIT_STOP_REASON_SYMBOLS)[number];

/** Payload of evidence.accessed. */
export interface EvidenceAccessedPayload {
  /** How the evidence was read. */
  readonly accessKind: EvidenceAccessKind;
  /** Id of the documented evidence query, e.g. 'pci.10.2.1.4', or 'adhoc'. */
  readonly queryId: string;
  /** Query parameters as strings (time range, filters). A PAN lookup passes its HMAC, never the PAN. */
  readonly parameters: Readonly<Record<string, string>>;
  /** Rows returned or exported. */
  readonly rowCount: number;
  /** Export format, e.g. 'ocsf-json', 'csv'; null for interactive queries. */
  readonly format: string | null;
  /** SHA-256 of the exported artifact, for exports. */
  readonly exportDigest: Sha256 | null;
  /** Approval that authorised the access, when one was required (PCI DSS 3.4.2). */
  readonly approvalId: string | null;
}

/** Symbols of {@link EvidenceAccessKind}, in schema order. */
export const EVIDENCE_ACCESS_KIND_SYMBOLS = ['query', 'export', 'siem_pull', 'verify', 'dashboard', 'unknown'] as const;
/** How the evidence was read. */
export type EvidenceAccessKind = (typeof EVIDENCE_ACCESS_KIND_SYMBOLS)[number];

/** Payload of integrity.checkpoint. */
export interface IntegrityCheckpointPayload {
  /** Producer whose chain this checkpoint covers. */
  readonly producer: string;
  /** Epoch (run) of the covered producer. */
  readonly epoch: string;
  /** First sequence covered. For an empty (idle) checkpoint, lastSequence + 1. */
  readonly firstSequence: number;
  /** Last sequence covered, inclusive (the previous checkpoint's lastSequence when empty). */
  readonly lastSequence: number;
  /** Number of events covered: lastSequence - firstSequence + 1, 0 for an idle checkpoint. */
  readonly count: number;
  /**
   * Start of the window covered (the previous checkpoint's toTimeUs, or the epoch start), in
   * microseconds since the Unix epoch, UTC.
   */
  readonly fromTimeUs: number;
  /** When the checkpoint was cut, in microseconds since the Unix epoch, UTC. */
  readonly toTimeUs: number;
  /**
   * SHA-256 of the encoded event at lastSequence; for an empty range, carried over from the
   * previous checkpoint (the epoch's starting link at first).
   */
  readonly lastHash: Sha256;
  /**
   * RFC 9162 Merkle tree hash over the covered events' hashes (SHA-256 of the empty string when
   * empty).
   */
  readonly merkleRoot: Sha256;
  /**
   * Hash of the producer's previous checkpoint (across epochs); 32 zero bytes for its first.
   * Missing checkpoints are provable from this link.
   */
  readonly prevCheckpointHash: Sha256;
  /**
   * True on the last checkpoint of an epoch that ended cleanly: nothing may follow it in that
   * epoch.
   */
  readonly closed: boolean;
  /** Id of the signing key (JWKS kid). */
  readonly keyId: string;
  /**
   * Version of the signed checkpoint payload format these fields were signed in (the integrity
   * module's CHECKPOINT_VERSION).
   */
  readonly formatVersion: number;
  /**
   * The signature over the checkpoint payload rebuilt from these fields (64 bytes for Ed25519):
   * with them it reassembles the detached-payload JWS (docs/integrity.md).
   */
  readonly signature: Buffer;
}

/** Payload of finding.opened. */
export interface FindingOpenedPayload {
  /** Id of the finding. */
  readonly findingId: string;
  /** Kind of finding. */
  readonly category: FindingCategory;
  /** Severity. */
  readonly severity: Severity;
  /** One-line title. */
  readonly title: string;
  /** What is wrong, without content. */
  readonly description: string;
  /** What raised it, e.g. 'integrity.chain-gap' or 'manual'. */
  readonly detectorId: string;
  /** Events that show the problem. */
  readonly relatedEventIds: readonly string[];
  /**
   * Where the problem is, when it has a place, e.g. the store, table and column holding unexpected
   * card data.
   */
  readonly location: string | null;
  /**
   * When the condition began, if before the finding was opened (e.g. the start of a chain gap), in
   * microseconds since the Unix epoch, UTC.
   */
  readonly startedAtUs: number | null;
}

/** Symbols of {@link FindingCategory}, in schema order. */
export const FINDING_CATEGORY_SYMBOLS = ['risk', 'integrity', 'data_security', 'logging_failure', 'access_review', 'control_failure', 'unknown'] as const;
/** Kind of finding. */
export type FindingCategory = (typeof FINDING_CATEGORY_SYMBOLS)[number];

/** Payload of finding.updated. */
export interface FindingUpdatedPayload {
  /** Id of the finding. */
  readonly findingId: string;
  /** Status after the update. */
  readonly status: FindingStatus;
  /** New severity; null when unchanged. */
  readonly severity: Severity | null;
  /** Subject now responsible; null when unchanged. */
  readonly assignee: string | null;
  /** What changed and why. */
  readonly note: string;
  /** Events added to the finding. */
  readonly relatedEventIds: readonly string[];
}

/** Symbols of {@link FindingStatus}, in schema order. */
export const FINDING_STATUS_SYMBOLS = ['open', 'acknowledged', 'investigating', 'mitigated', 'unknown'] as const;
/** Status of an open finding. */
export type FindingStatus = (typeof FINDING_STATUS_SYMBOLS)[number];

/** Payload of finding.closed. */
export interface FindingClosedPayload {
  /** Id of the finding. */
  readonly findingId: string;
  /** How the finding was closed. */
  readonly resolution: FindingResolution;
  /** Why it was closed that way. */
  readonly reason: string;
  /** When the finding was opened, in microseconds since the Unix epoch, UTC. */
  readonly openedAtUs: number;
  /**
   * When the underlying condition ended, for failures with a start and an end (PCI DSS 10.7.3), in
   * microseconds since the Unix epoch, UTC.
   */
  readonly endedAtUs: number | null;
}

/** Symbols of {@link FindingResolution}, in schema order. */
export const FINDING_RESOLUTION_SYMBOLS = ['resolved', 'false_positive', 'accepted_risk', 'duplicate', 'unknown'] as const;
/** How the finding was closed. */
export type FindingResolution = (typeof FINDING_RESOLUTION_SYMBOLS)[number];

/** Payload of approval.released. */
export interface ApprovalReleasedPayload {
  /** Id of the approval request. */
  readonly approvalId: string;
  /**
   * Request digest (64 lowercase hex characters) of the released request; equals the one in
   * approval.requested.
   */
  readonly requestDigest: string;
  /** Stable id of the gateway that forwarded the request (its producer id). */
  readonly gatewayId: string;
  /** Id of the gateway run that forwarded it (its producer epoch). */
  readonly instanceId: string;
  /**
   * Id of the released request within that run: the held request in hold mode, the retried request
   * in ask-and-retry mode.
   */
  readonly holdId: string;
}

/** Payload of approval.cancelled. */
export interface ApprovalCancelledPayload {
  /** Id of the approval request. */
  readonly approvalId: string;
  /** Why it was cancelled. */
  readonly reason: ApprovalCancelReason;
}

/** Symbols of {@link ApprovalCancelReason}, in schema order. */
export const APPROVAL_CANCEL_REASON_SYMBOLS = ['caller_disconnected', 'gateway_restarted', 'gateway_shutdown', 'withdrawn', 'unknown'] as const;
/**
 * Why the held request can no longer be released: caller_disconnected (the caller closed the
 * connection while held), gateway_restarted (a new gateway run found the hold of an old one),
 * gateway_shutdown (the gateway stopped while holding it), withdrawn (the request was withdrawn).
 */
export type ApprovalCancelReason = (typeof APPROVAL_CANCEL_REASON_SYMBOLS)[number];

/** Payload type of every event type. */
export interface PayloadMap {
  readonly 'session.started': SessionStartedPayload;
  readonly 'session.ended': SessionEndedPayload;
  readonly 'auth.succeeded': AuthSucceededPayload;
  readonly 'auth.failed': AuthFailedPayload;
  readonly 'gateway.request.received': GatewayRequestReceivedPayload;
  readonly 'policy.decided': PolicyDecidedPayload;
  readonly 'gateway.request.forwarded': GatewayRequestForwardedPayload;
  readonly 'gateway.request.blocked': GatewayRequestBlockedPayload;
  readonly 'gateway.response.completed': GatewayResponseCompletedPayload;
  readonly 'data.masked': DataMaskedPayload;
  readonly 'approval.requested': ApprovalRequestedPayload;
  readonly 'approval.decided': ApprovalDecidedPayload;
  readonly 'approval.expired': ApprovalExpiredPayload;
  readonly 'db.query.executed': DbQueryExecutedPayload;
  readonly 'risk.detected': RiskDetectedPayload;
  readonly 'identity.suspended': IdentitySuspendedPayload;
  readonly 'identity.restored': IdentityRestoredPayload;
  readonly 'config.changed': ConfigChangedPayload;
  readonly 'key.rotated': KeyRotatedPayload;
  readonly 'audit.started': AuditStartedPayload;
  readonly 'audit.stopped': AuditStoppedPayload;
  readonly 'evidence.accessed': EvidenceAccessedPayload;
  readonly 'integrity.checkpoint': IntegrityCheckpointPayload;
  readonly 'finding.opened': FindingOpenedPayload;
  readonly 'finding.updated': FindingUpdatedPayload;
  readonly 'finding.closed': FindingClosedPayload;
  readonly 'approval.released': ApprovalReleasedPayload;
  readonly 'approval.cancelled': ApprovalCancelledPayload;
}

export type SessionStartedEvent = AttestEvent<'session.started'>;
export type SessionEndedEvent = AttestEvent<'session.ended'>;
export type AuthSucceededEvent = AttestEvent<'auth.succeeded'>;
export type AuthFailedEvent = AttestEvent<'auth.failed'>;
export type GatewayRequestReceivedEvent = AttestEvent<'gateway.request.received'>;
export type PolicyDecidedEvent = AttestEvent<'policy.decided'>;
export type GatewayRequestForwardedEvent = AttestEvent<'gateway.request.forwarded'>;
export type GatewayRequestBlockedEvent = AttestEvent<'gateway.request.blocked'>;
export type GatewayResponseCompletedEvent = AttestEvent<'gateway.response.completed'>;
export type DataMaskedEvent = AttestEvent<'data.masked'>;
export type ApprovalRequestedEvent = AttestEvent<'approval.requested'>;
export type ApprovalDecidedEvent = AttestEvent<'approval.decided'>;
export type ApprovalExpiredEvent = AttestEvent<'approval.expired'>;
export type DbQueryExecutedEvent = AttestEvent<'db.query.executed'>;
export type RiskDetectedEvent = AttestEvent<'risk.detected'>;
export type IdentitySuspendedEvent = AttestEvent<'identity.suspended'>;
export type IdentityRestoredEvent = AttestEvent<'identity.restored'>;
export type ConfigChangedEvent = AttestEvent<'config.changed'>;
export type KeyRotatedEvent = AttestEvent<'key.rotated'>;
export type AuditStartedEvent = AttestEvent<'audit.started'>;
export type AuditStoppedEvent = AttestEvent<'audit.stopped'>;
export type EvidenceAccessedEvent = AttestEvent<'evidence.accessed'>;
export type IntegrityCheckpointEvent = AttestEvent<'integrity.checkpoint'>;
export type FindingOpenedEvent = AttestEvent<'finding.opened'>;
export type FindingUpdatedEvent = AttestEvent<'finding.updated'>;
export type FindingClosedEvent = AttestEvent<'finding.closed'>;
export type ApprovalReleasedEvent = AttestEvent<'approval.released'>;
export type ApprovalCancelledEvent = AttestEvent<'approval.cancelled'>;

/** Exactly the keys of T: a missing or extra field fails to compile. */
type FieldSet<T> = { readonly [K in keyof T]-?: true };

/** Field names of every record, in schema order, checked against the interfaces by the compiler. */
export const RECORD_FIELDS: Readonly<Record<string, readonly string[]>> = {
  'dev.attest.events.SessionStarted': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'session.started'>>),
  'dev.attest.events.Metadata': Object.keys({ eventId: true, type: true, code: true, schemaVersion: true, timeUs: true, producer: true, producerEpoch: true, sequence: true, prevHash: true, tenantId: true, pciRequirements: true } satisfies FieldSet<Metadata>),
  'dev.attest.events.Actor': Object.keys({ subject: true, issuer: true, clientId: true, groups: true, kind: true, onBehalfOf: true, dev: true } satisfies FieldSet<Actor>),
  'dev.attest.events.Source': Object.keys({ address: true, userAgent: true } satisfies FieldSet<Source>),
  'dev.attest.events.Target': Object.keys({ protocol: true, service: true, resource: true, model: true } satisfies FieldSet<Target>),
  'dev.attest.events.Outcome': Object.keys({ result: true, status: true, reason: true } satisfies FieldSet<Outcome>),
  'dev.attest.events.Correlation': Object.keys({ sessionId: true, requestId: true, upstreamRequestId: true } satisfies FieldSet<Correlation>),
  'dev.attest.events.SessionStartedPayload': Object.keys({ clientName: true, clientVersion: true, authMethod: true, tokenId: true, tokenExpiresAtUs: true, tlsVersion: true } satisfies FieldSet<SessionStartedPayload>),
  'dev.attest.events.SessionEnded': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'session.ended'>>),
  'dev.attest.events.SessionEndedPayload': Object.keys({ reason: true, durationUs: true, requestCount: true, bytesIn: true, bytesOut: true } satisfies FieldSet<SessionEndedPayload>),
  'dev.attest.events.AuthSucceeded': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'auth.succeeded'>>),
  'dev.attest.events.AuthSucceededPayload': Object.keys({ method: true, amr: true, acr: true, tokenId: true, tokenIssuedAtUs: true, tokenExpiresAtUs: true, audience: true } satisfies FieldSet<AuthSucceededPayload>),
  'dev.attest.events.AuthFailed': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'auth.failed'>>),
  'dev.attest.events.AuthFailedPayload': Object.keys({ method: true, reasonCode: true, claimsVerified: true, amr: true, acr: true, tokenId: true } satisfies FieldSet<AuthFailedPayload>),
  'dev.attest.events.GatewayRequestReceived': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'gateway.request.received'>>),
  'dev.attest.events.GatewayRequestReceivedPayload': Object.keys({ method: true, route: true, model: true, stream: true, contentType: true, bodyBytes: true, bodyDigest: true, masking: true, content: true } satisfies FieldSet<GatewayRequestReceivedPayload>),
  'dev.attest.events.MaskingSummary': Object.keys({ cardDataPresent: true, totalHits: true, stats: true } satisfies FieldSet<MaskingSummary>),
  'dev.attest.events.MaskingStat': Object.keys({ ruleId: true, direction: true, action: true, hits: true } satisfies FieldSet<MaskingStat>),
  'dev.attest.events.PolicyDecided': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'policy.decided'>>),
  'dev.attest.events.PolicyDecidedPayload': Object.keys({ policyId: true, policyVersion: true, decision: true, ruleIds: true, reason: true, approvalId: true } satisfies FieldSet<PolicyDecidedPayload>),
  'dev.attest.events.GatewayRequestForwarded': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'gateway.request.forwarded'>>),
  'dev.attest.events.GatewayRequestForwardedPayload': Object.keys({ upstreamHost: true, attempt: true, credentialId: true, masked: true, bodyBytes: true, bodyDigest: true } satisfies FieldSet<GatewayRequestForwardedPayload>),
  'dev.attest.events.GatewayRequestBlocked': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'gateway.request.blocked'>>),
  'dev.attest.events.GatewayRequestBlockedPayload': Object.keys({ ruleId: true, direction: true, stage: true, approvalId: true } satisfies FieldSet<GatewayRequestBlockedPayload>),
  'dev.attest.events.GatewayResponseCompleted': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'gateway.response.completed'>>),
  'dev.attest.events.GatewayResponseCompletedPayload': Object.keys({ upstreamStatus: true, stopReason: true, stream: true, aborted: true, content: true, contentDigest: true, contentBytes: true, masking: true, usage: true, latencyUs: true, timeToFirstByteUs: true } satisfies FieldSet<GatewayResponseCompletedPayload>),
  'dev.attest.events.TokenUsage': Object.keys({ inputTokens: true, outputTokens: true, cacheReadInputTokens: true, cacheCreationInputTokens: true } satisfies FieldSet<TokenUsage>),
  'dev.attest.events.DataMasked': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'data.masked'>>),
  'dev.attest.events.DataMaskedPayload': Object.keys({ subjectEventId: true, originalDigest: true, maskedDigest: true, redactedEventDigest: true, hits: true } satisfies FieldSet<DataMaskedPayload>),
  'dev.attest.events.MaskHit': Object.keys({ ruleId: true, detector: true, direction: true, location: true, bin: true, last4: true, panHmac: true, panHmacKeyId: true, action: true } satisfies FieldSet<MaskHit>),
  'dev.attest.events.MaskLocation': Object.keys({ jsonPath: true, contentBlockIndex: true, charOffset: true } satisfies FieldSet<MaskLocation>),
  'dev.attest.events.ApprovalRequested': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'approval.requested'>>),
  'dev.attest.events.ApprovalRequestedPayload': Object.keys({ approvalId: true, scope: true, policyRuleId: true, justification: true, approverGroups: true, quorum: true, expiresAtUs: true, mode: true, requestDigest: true, reasons: true, excerpt: true, hold: true, releaseWindowUs: true } satisfies FieldSet<ApprovalRequestedPayload>),
  'dev.attest.events.ApprovalHold': Object.keys({ gatewayId: true, instanceId: true, holdId: true } satisfies FieldSet<ApprovalHold>),
  'dev.attest.events.ApprovalDecided': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'approval.decided'>>),
  'dev.attest.events.ApprovalDecidedPayload': Object.keys({ approvalId: true, decision: true, approvers: true, quorum: true, quorumMet: true, comment: true } satisfies FieldSet<ApprovalDecidedPayload>),
  'dev.attest.events.ApprovalExpired': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'approval.expired'>>),
  'dev.attest.events.ApprovalExpiredPayload': Object.keys({ approvalId: true, requestedAtUs: true, expiresAtUs: true, approvals: true, quorum: true, stage: true } satisfies FieldSet<ApprovalExpiredPayload>),
  'dev.attest.events.DbQueryExecuted': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'db.query.executed'>>),
  'dev.attest.events.DbQueryExecutedPayload': Object.keys({ database: true, dbUser: true, statementKind: true, statement: true, statementDigest: true, tables: true, decision: true, rowsReturned: true, rowsAffected: true, durationUs: true, sqlState: true, masking: true } satisfies FieldSet<DbQueryExecutedPayload>),
  'dev.attest.events.RiskDetected': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'risk.detected'>>),
  'dev.attest.events.RiskDetectedPayload': Object.keys({ detectorId: true, severity: true, score: true, principal: true, description: true, evidenceEventIds: true, findingId: true } satisfies FieldSet<RiskDetectedPayload>),
  'dev.attest.events.PrincipalRef': Object.keys({ subject: true, issuer: true } satisfies FieldSet<PrincipalRef>),
  'dev.attest.events.IdentitySuspended': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'identity.suspended'>>),
  'dev.attest.events.IdentitySuspendedPayload': Object.keys({ principal: true, reason: true, findingId: true, untilUs: true, sessionsTerminated: true } satisfies FieldSet<IdentitySuspendedPayload>),
  'dev.attest.events.IdentityRestored': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'identity.restored'>>),
  'dev.attest.events.IdentityRestoredPayload': Object.keys({ principal: true, reason: true, suspendedEventId: true, automatic: true } satisfies FieldSet<IdentityRestoredPayload>),
  'dev.attest.events.ConfigChanged': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'config.changed'>>),
  'dev.attest.events.ConfigChangedPayload': Object.keys({ objectKind: true, what: true, change: true, oldVersion: true, newVersion: true, oldDigest: true, newDigest: true, override: true, summary: true } satisfies FieldSet<ConfigChangedPayload>),
  'dev.attest.events.KeyRotated': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'key.rotated'>>),
  'dev.attest.events.KeyRotatedPayload': Object.keys({ purpose: true, oldKeyId: true, newKeyId: true, algorithm: true, reason: true, oldKeyRetiresAtUs: true, publicKeyThumbprint: true } satisfies FieldSet<KeyRotatedPayload>),
  'dev.attest.events.AuditStarted': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'audit.started'>>),
  'dev.attest.events.AuditStartedPayload': Object.keys({ component: true, softwareVersion: true, configDigest: true, previousEpoch: true, previousStopRecorded: true } satisfies FieldSet<AuditStartedPayload>),
  'dev.attest.events.AuditStopped': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'audit.stopped'>>),
  'dev.attest.events.AuditStoppedPayload': Object.keys({ component: true, reason: true, detail: true, resumeExpected: true } satisfies FieldSet<AuditStoppedPayload>),
  'dev.attest.events.EvidenceAccessed': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'evidence.accessed'>>),
  'dev.attest.events.EvidenceAccessedPayload': Object.keys({ accessKind: true, queryId: true, parameters: true, rowCount: true, format: true, exportDigest: true, approvalId: true } satisfies FieldSet<EvidenceAccessedPayload>),
  'dev.attest.events.IntegrityCheckpoint': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'integrity.checkpoint'>>),
  'dev.attest.events.IntegrityCheckpointPayload': Object.keys({ producer: true, epoch: true, firstSequence: true, lastSequence: true, count: true, fromTimeUs: true, toTimeUs: true, lastHash: true, merkleRoot: true, prevCheckpointHash: true, closed: true, keyId: true, formatVersion: true, signature: true } satisfies FieldSet<IntegrityCheckpointPayload>),
  'dev.attest.events.FindingOpened': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'finding.opened'>>),
  'dev.attest.events.FindingOpenedPayload': Object.keys({ findingId: true, category: true, severity: true, title: true, description: true, detectorId: true, relatedEventIds: true, location: true, startedAtUs: true } satisfies FieldSet<FindingOpenedPayload>),
  'dev.attest.events.FindingUpdated': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'finding.updated'>>),
  'dev.attest.events.FindingUpdatedPayload': Object.keys({ findingId: true, status: true, severity: true, assignee: true, note: true, relatedEventIds: true } satisfies FieldSet<FindingUpdatedPayload>),
  'dev.attest.events.FindingClosed': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'finding.closed'>>),
  'dev.attest.events.FindingClosedPayload': Object.keys({ findingId: true, resolution: true, reason: true, openedAtUs: true, endedAtUs: true } satisfies FieldSet<FindingClosedPayload>),
  'dev.attest.events.ApprovalReleased': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'approval.released'>>),
  'dev.attest.events.ApprovalReleasedPayload': Object.keys({ approvalId: true, requestDigest: true, gatewayId: true, instanceId: true, holdId: true } satisfies FieldSet<ApprovalReleasedPayload>),
  'dev.attest.events.ApprovalCancelled': Object.keys({ metadata: true, actor: true, source: true, target: true, outcome: true, correlation: true, payload: true } satisfies FieldSet<AttestEvent<'approval.cancelled'>>),
  'dev.attest.events.ApprovalCancelledPayload': Object.keys({ approvalId: true, reason: true } satisfies FieldSet<ApprovalCancelledPayload>),
};

/** Symbols of every enum, in schema order. */
export const ENUM_SYMBOLS: Readonly<Record<string, readonly string[]>> = {
  'dev.attest.events.ActorKind': ACTOR_KIND_SYMBOLS,
  'dev.attest.events.Protocol': PROTOCOL_SYMBOLS,
  'dev.attest.events.OutcomeResult': OUTCOME_RESULT_SYMBOLS,
  'dev.attest.events.AuthMethod': AUTH_METHOD_SYMBOLS,
  'dev.attest.events.SessionEndReason': SESSION_END_REASON_SYMBOLS,
  'dev.attest.events.AuthFailureReason': AUTH_FAILURE_REASON_SYMBOLS,
  'dev.attest.events.Direction': DIRECTION_SYMBOLS,
  'dev.attest.events.MaskAction': MASK_ACTION_SYMBOLS,
  'dev.attest.events.PolicyDecision': POLICY_DECISION_SYMBOLS,
  'dev.attest.events.BlockStage': BLOCK_STAGE_SYMBOLS,
  'dev.attest.events.Detector': DETECTOR_SYMBOLS,
  'dev.attest.events.ApprovalDecision': APPROVAL_DECISION_SYMBOLS,
  'dev.attest.events.StatementKind': STATEMENT_KIND_SYMBOLS,
  'dev.attest.events.Severity': SEVERITY_SYMBOLS,
  'dev.attest.events.ConfigObjectKind': CONFIG_OBJECT_KIND_SYMBOLS,
  'dev.attest.events.ConfigChange': CONFIG_CHANGE_SYMBOLS,
  'dev.attest.events.KeyPurpose': KEY_PURPOSE_SYMBOLS,
  'dev.attest.events.KeyRotationReason': KEY_ROTATION_REASON_SYMBOLS,
  'dev.attest.events.AuditStopReason': AUDIT_STOP_REASON_SYMBOLS,
  'dev.attest.events.EvidenceAccessKind': EVIDENCE_ACCESS_KIND_SYMBOLS,
  'dev.attest.events.FindingCategory': FINDING_CATEGORY_SYMBOLS,
  'dev.attest.events.FindingStatus': FINDING_STATUS_SYMBOLS,
  'dev.attest.events.FindingResolution': FINDING_RESOLUTION_SYMBOLS,
  'dev.attest.events.ApprovalCancelReason': APPROVAL_CANCEL_REASON_SYMBOLS,
};
