/**
 * The evidence query catalog: one named, documented query per PCI DSS requirement the events
 * support (docs/evidence-store.md, "Evidence queries"). Each runs over the store port with bound
 * parameters only, takes the same filters (time range, tenant, identity, session), and returns
 * columns + rows that render as a table, JSON or CSV (render.ts). The result carries the
 * parameters as strings, ready for the `evidence.accessed` event that every auditor read must
 * produce (PCI DSS 10.2.1.3; emitting it is the caller's job).
 */
import { findPans, IIN_RULES, luhnValid } from '../masking';
import { PCI_10_2_2_REQUIRED_PATHS } from '../events';
import { StoreError } from './errors';
import { parseTtlDays } from './migrations';
import { DEFAULT_QUERY_MAX_ROWS, type Cell, type EvidenceStore, type QueryParams, type ResultColumn, type Row } from './port';

/** A point in time: a Date, an ISO-8601 string, or microseconds since the epoch. */
export type TimeInput = Date | string | number;

export interface EvidenceFilters {
  /** Inclusive start of the time range. */
  readonly from?: TimeInput;
  /** Exclusive end of the time range. */
  readonly to?: TimeInput;
  readonly tenantId?: string;
  /** A person or agent: matches the actor's subject or the person it acted on behalf of. */
  readonly actor?: string;
  readonly sessionId?: string;
}

export interface EvidenceRunOptions {
  /** Row cap (default 10 000); `truncated` says when more existed. */
  readonly maxRows?: number;
  /** `now` for queries that measure age (10.5.1), µs since the epoch. Default: the wall clock. */
  readonly nowUs?: number;
  readonly signal?: AbortSignal;
}

export interface EvidenceColumn {
  readonly name: string;
  readonly description: string;
}

export interface EvidenceResult {
  readonly queryId: string;
  readonly requirement: string;
  readonly title: string;
  /** The filters and arguments as strings: what `evidence.accessed.parameters` records. */
  readonly parameters: Readonly<Record<string, string>>;
  readonly columns: readonly ResultColumn[];
  readonly rows: readonly Row[];
  readonly truncated: boolean;
  /** Totals that prove a negative or a bound (e.g. `missing: 0`), for queries that have them. */
  readonly summary: Readonly<Record<string, Cell>>;
}

export interface EvidenceQuery<A = undefined> {
  /** Stable id, e.g. `pci.10.2.1.4`; recorded as `evidence.accessed.queryId`. */
  readonly id: string;
  readonly requirement: string;
  readonly title: string;
  readonly description: string;
  /** Result columns in order. */
  readonly columns: readonly EvidenceColumn[];
  /** Extra arguments beyond the common filters, described for the docs and the CLI. */
  readonly args: readonly EvidenceColumn[];
  run(store: EvidenceStore, filters: EvidenceFilters, args: A, opts?: EvidenceRunOptions): Promise<EvidenceResult>;
}

// ---------------------------------------------------------------------------------------------
// Filters

/** Microseconds since the epoch from a TimeInput; refuses what it cannot read. */
export function toMicros(t: TimeInput, where: string): number {
  let us: number;
  if (t instanceof Date) us = t.getTime() * 1000;
  else if (typeof t === 'number') us = t;
  else {
    const ms = Date.parse(t);
    if (Number.isNaN(ms)) throw new StoreError('store_invalid_argument', `${where} is not a date: use ISO 8601, e.g. 2026-01-31T00:00:00Z`, { where });
    // Date.parse keeps milliseconds only; an explicit fraction carries the microseconds.
    const frac = /\.(\d{4,6})\d*(?:Z|[+-]\d\d:?\d\d)?$/i.exec(t);
    us = ms * 1000 + (frac !== null ? Number((frac[1] ?? '').padEnd(6, '0').slice(3)) : 0);
  }
  if (!Number.isSafeInteger(us)) throw new StoreError('store_invalid_argument', `${where} is out of range`, { where });
  return us;
}

function isoOfMicros(us: number): string {
  const ms = Math.floor(us / 1000);
  const rest = us - ms * 1000;
  const iso = new Date(ms).toISOString();
  return rest === 0 ? iso : `${iso.slice(0, -1)}${String(rest).padStart(3, '0')}Z`;
}

interface Where {
  readonly conditions: string[];
  readonly params: Record<string, QueryParams[string]>;
  readonly parameters: Record<string, string>;
}

/**
 * The common filters as SQL conditions over a table with `time`, `tenant_id`, `session_id` and
 * the actor columns named in `actorColumns`. Values are always bound parameters.
 */
function commonWhere(f: EvidenceFilters, actorColumns: readonly string[] = ['actor_subject', 'actor_on_behalf_of']): Where {
  const conditions: string[] = [];
  const params: Record<string, QueryParams[string]> = {};
  const parameters: Record<string, string> = {};
  if (f.from !== undefined) {
    const us = toMicros(f.from, 'from');
    conditions.push("time >= fromUnixTimestamp64Micro({from_us:Int64}, 'UTC')");
    params['from_us'] = us;
    parameters['from'] = isoOfMicros(us);
  }
  if (f.to !== undefined) {
    const us = toMicros(f.to, 'to');
    conditions.push("time < fromUnixTimestamp64Micro({to_us:Int64}, 'UTC')");
    params['to_us'] = us;
    parameters['to'] = isoOfMicros(us);
  }
  if (f.tenantId !== undefined) {
    conditions.push('tenant_id = {tenant:String}');
    params['tenant'] = f.tenantId;
    parameters['tenant'] = f.tenantId;
  }
  if (f.actor !== undefined) {
    conditions.push(`(${actorColumns.map((c) => `${c} = {actor:String}`).join(' OR ')})`);
    params['actor'] = f.actor;
    parameters['actor'] = f.actor;
  }
  if (f.sessionId !== undefined) {
    conditions.push('session_id = {session:String}');
    params['session'] = f.sessionId;
    parameters['session'] = f.sessionId;
  }
  return { conditions, params, parameters };
}

function and(conditions: readonly string[]): string {
  return conditions.length === 0 ? '1' : conditions.map((c) => `(${c})`).join(' AND ');
}

async function select(
  store: EvidenceStore,
  def: Pick<EvidenceQuery<unknown>, 'id' | 'requirement' | 'title'>,
  sql: string,
  where: Where,
  opts: EvidenceRunOptions,
  summary: Record<string, Cell> = {},
): Promise<EvidenceResult> {
  const maxRows = opts.maxRows ?? DEFAULT_QUERY_MAX_ROWS;
  // LIMIT lets the engine keep only the first rows while sorting (a top-N, not a full sort); one
  // row more than asked tells whether the result was cut.
  const limited = `${sql}\n      LIMIT {evidence_limit:UInt64}`;
  const params = { ...where.params, evidence_limit: maxRows + 1 };
  const r = await store.query(limited, params, { maxRows, ...(opts.signal === undefined ? {} : { signal: opts.signal }) });
  return { queryId: def.id, requirement: def.requirement, title: def.title, parameters: where.parameters, columns: r.columns, rows: r.rows, truncated: r.truncated, summary };
}

const col = (name: string, description: string): EvidenceColumn => ({ name, description });
const ACTOR_COLUMNS = [
  col('actor_subject', 'Who: the authenticated principal (OIDC subject or service account).'),
  col('actor_on_behalf_of', 'The person an agent acted for, when the actor is an agent.'),
  col('actor_kind', 'human, agent, service, system or unknown.'),
  col('source_address', 'Where from: the caller address as the gateway saw it.'),
];

// ---------------------------------------------------------------------------------------------
// 10.2.1.1 individual access to cardholder data

const ACCESS_TYPES = ['gateway.request.received', 'gateway.request.forwarded', 'gateway.response.completed', 'gateway.request.blocked', 'data.masked', 'db.query.executed'];

export const accessToCardholderData: EvidenceQuery = {
  id: 'pci.10.2.1.1',
  requirement: '10.2.1.1',
  title: 'Individual access to cardholder data',
  description:
    'Every exchange through the gateway (Claude API request/response or PostgreSQL statement), one row per request, attributed to the individual and flagged when card data was present in it.',
  columns: [
    col('time', 'When the request arrived (first event of the exchange), UTC.'),
    col('tenant_id', 'Customer the exchange belongs to.'),
    col('session_id', 'Session the exchange belongs to.'),
    col('request_id', 'Request id assigned by the gateway.'),
    ...ACTOR_COLUMNS,
    col('target_service', 'Service reached, e.g. anthropic or postgres:payments.'),
    col('target_resource', 'Route, database or table.'),
    col('target_model', 'Model requested, for AI APIs.'),
    col('outcome', 'Result of the exchange: the result of its last event.'),
    col('status', 'HTTP status (or protocol status) of the last event.'),
    col('card_data_present', 'True when card data (PAN or sensitive authentication data) was detected anywhere in the exchange.'),
    col('events', 'Number of events recorded for the exchange.'),
  ],
  args: [],
  async run(store, filters, _args, opts = {}) {
    const w = commonWhere(filters);
    w.conditions.push('type IN {access_types:Array(String)}');
    w.params['access_types'] = ACCESS_TYPES;
    // Aggregates are named x_… inside and renamed outside: in ClickHouse an alias is visible in
    // WHERE, so `any(actor_subject) AS actor_subject` would capture the actor filter.
    const sql = `
      SELECT x_time AS time, tenant_id, session_id, request_id, x_actor_subject AS actor_subject, x_actor_on_behalf_of AS actor_on_behalf_of,
        x_actor_kind AS actor_kind, x_source_address AS source_address, x_target_service AS target_service,
        x_target_resource AS target_resource, x_target_model AS target_model, outcome, status, x_card_data_present AS card_data_present, events
      FROM (
      SELECT
        min(time) AS x_time, tenant_id, session_id, request_id,
        any(actor_subject) AS x_actor_subject, any(actor_on_behalf_of) AS x_actor_on_behalf_of, any(actor_kind) AS x_actor_kind,
        any(source_address) AS x_source_address,
        any(target_service) AS x_target_service, any(target_resource) AS x_target_resource, any(target_model) AS x_target_model,
        argMax(outcome_result, time) AS outcome, argMax(outcome_status, time) AS status,
        max(card_data_present) AS x_card_data_present, count() AS events
      FROM events
      WHERE ${and(w.conditions)}
      GROUP BY tenant_id, session_id, request_id)
      ORDER BY time, request_id`;
    return select(store, this, sql, w, opts);
  },
};

// ---------------------------------------------------------------------------------------------
// 10.2.1.2 administrative actions

export const adminActions: EvidenceQuery = {
  id: 'pci.10.2.1.2',
  requirement: '10.2.1.2',
  title: 'Actions by administrators',
  description: 'Every configuration, policy, retention and key change (config.changed, key.rotated), with who made it, from where, what changed and whether a safety check was overridden.',
  columns: [
    col('time', 'When the change was recorded, UTC.'),
    col('tenant_id', 'Customer the change belongs to.'),
    col('type', 'config.changed or key.rotated.'),
    ...ACTOR_COLUMNS,
    col('object', 'What changed: <kind>:<object> for configuration, key:<purpose> for keys.'),
    col('change', 'created, updated, deleted, or rotated.'),
    col('old_version', 'Version (or key id) before the change.'),
    col('new_version', 'Version (or key id) after the change.'),
    col('override', 'True when a safety check was explicitly overridden (e.g. retention below 365 days).'),
    col('outcome', 'success, failure or unknown.'),
    col('event_id', 'The event, for verification and drill-down.'),
  ],
  args: [],
  async run(store, filters, _args, opts = {}) {
    const w = commonWhere(filters);
    w.conditions.push("type IN ('config.changed', 'key.rotated')");
    const sql = `
      SELECT time, tenant_id, type, actor_subject, actor_on_behalf_of, actor_kind, source_address,
        if(type = 'config.changed', concat(JSONExtractString(payload, 'objectKind'), ':', JSONExtractString(payload, 'what')), concat('key:', JSONExtractString(payload, 'purpose'))) AS object,
        if(type = 'config.changed', JSONExtractString(payload, 'change'), 'rotated') AS change,
        if(type = 'config.changed', JSONExtract(payload, 'oldVersion', 'Nullable(String)'), JSONExtract(payload, 'oldKeyId', 'Nullable(String)')) AS old_version,
        if(type = 'config.changed', JSONExtract(payload, 'newVersion', 'Nullable(String)'), JSONExtract(payload, 'newKeyId', 'Nullable(String)')) AS new_version,
        JSONExtractBool(payload, 'override') AS override,
        outcome_result AS outcome, toString(event_id) AS event_id
      FROM events
      WHERE ${and(w.conditions)}
      ORDER BY time, event_id`;
    return select(store, this, sql, w, opts);
  },
};

// ---------------------------------------------------------------------------------------------
// 10.2.1.3 access to audit logs

export const auditLogAccess: EvidenceQuery = {
  id: 'pci.10.2.1.3',
  requirement: '10.2.1.3',
  title: 'Access to audit logs',
  description: 'Every evidence query, export, SIEM pull and verification (evidence.accessed), with who ran it and what it returned.',
  columns: [
    col('time', 'When the evidence was read, UTC.'),
    col('tenant_id', 'Customer whose evidence was read.'),
    ...ACTOR_COLUMNS,
    col('access_kind', 'query, export, siem_pull, verify or dashboard.'),
    col('query_id', 'Evidence query id, or adhoc.'),
    col('row_count', 'Rows returned or exported.'),
    col('format', 'Export format, for exports.'),
    col('approval_id', 'Approval that authorised the access, when one was required.'),
    col('event_id', 'The event, for verification and drill-down.'),
  ],
  args: [],
  async run(store, filters, _args, opts = {}) {
    const w = commonWhere(filters);
    w.conditions.push("type = 'evidence.accessed'");
    const sql = `
      SELECT time, tenant_id, actor_subject, actor_on_behalf_of, actor_kind, source_address,
        JSONExtractString(payload, 'accessKind') AS access_kind, JSONExtractString(payload, 'queryId') AS query_id,
        JSONExtractInt(payload, 'rowCount') AS row_count, JSONExtract(payload, 'format', 'Nullable(String)') AS format,
        JSONExtract(payload, 'approvalId', 'Nullable(String)') AS approval_id, toString(event_id) AS event_id
      FROM events
      WHERE ${and(w.conditions)}
      ORDER BY time, event_id`;
    return select(store, this, sql, w, opts);
  },
};

// ---------------------------------------------------------------------------------------------
// 10.2.1.4 invalid logical access attempts

export const invalidAccessAttempts: EvidenceQuery = {
  id: 'pci.10.2.1.4',
  requirement: '10.2.1.4',
  title: 'Invalid logical access attempts',
  description:
    'Failed authentications (auth.failed), policy denials (policy.decided), requests the gateway refused (gateway.request.blocked), each with outcome failure, and denied SQL statements (db.query.executed with decision deny).',
  columns: [
    col('time', 'When the attempt was refused, UTC.'),
    col('tenant_id', 'Customer the attempt was against.'),
    col('type', 'The event type that recorded the refusal.'),
    ...ACTOR_COLUMNS,
    col('target_service', 'Service the attempt was aimed at.'),
    col('target_resource', 'Route, database or table.'),
    col('status', 'Status returned to the caller (401, 403, ...).'),
    col('reason', 'Machine-readable reason, e.g. bad_signature, policy_denied.'),
    col('session_id', 'Session, when the caller had one.'),
    col('request_id', 'Request id.'),
    col('event_id', 'The event, for verification and drill-down.'),
  ],
  args: [],
  async run(store, filters, _args, opts = {}) {
    const w = commonWhere(filters);
    // The event contract puts "was this an invalid attempt" in outcome.result; only a failed SQL
    // statement needs its payload read, to tell a denial from a database error.
    w.conditions.push(
      "(type IN ('auth.failed', 'policy.decided', 'gateway.request.blocked') AND outcome_result = 'failure') OR (type = 'db.query.executed' AND outcome_result = 'failure' AND JSONExtractString(payload, 'decision') = 'deny')",
    );
    const sql = `
      SELECT time, tenant_id, type, actor_subject, actor_on_behalf_of, actor_kind, source_address,
        target_service, target_resource, outcome_status AS status, outcome_reason AS reason,
        session_id, request_id, toString(event_id) AS event_id
      FROM events
      WHERE ${and(w.conditions)}
      ORDER BY time, event_id`;
    return select(store, this, sql, w, opts);
  },
};

// ---------------------------------------------------------------------------------------------
// 10.2.1.5 changes to identification and authentication credentials

export const credentialChanges: EvidenceQuery = {
  id: 'pci.10.2.1.5',
  requirement: '10.2.1.5',
  title: 'Changes to identification and authentication credentials',
  description: 'Identities suspended and restored, and signing, HMAC and credential keys created, rotated or retired.',
  columns: [
    col('time', 'When the change was recorded, UTC.'),
    col('tenant_id', 'Customer the change belongs to.'),
    col('type', 'identity.suspended, identity.restored or key.rotated.'),
    ...ACTOR_COLUMNS,
    col('subject', 'The identity suspended or restored, or key:<purpose> for a key.'),
    col('reason', 'Why, machine-readable.'),
    col('event_id', 'The event, for verification and drill-down.'),
  ],
  args: [],
  async run(store, filters, _args, opts = {}) {
    const w = commonWhere(filters);
    w.conditions.push("type IN ('identity.suspended', 'identity.restored', 'key.rotated')");
    const sql = `
      SELECT time, tenant_id, type, actor_subject, actor_on_behalf_of, actor_kind, source_address,
        if(type = 'key.rotated', concat('key:', JSONExtractString(payload, 'purpose')), JSONExtractString(payload, 'principal', 'subject')) AS subject,
        JSONExtractString(payload, 'reason') AS reason, toString(event_id) AS event_id
      FROM events
      WHERE ${and(w.conditions)}
      ORDER BY time, event_id`;
    return select(store, this, sql, w, opts);
  },
};

// ---------------------------------------------------------------------------------------------
// 10.2.1.6 start, stop, pause of audit logging

export const auditLoggingStartStop: EvidenceQuery = {
  id: 'pci.10.2.1.6',
  requirement: '10.2.1.6',
  title: 'Audit logging started, stopped or paused',
  description: 'Every start and stop (or pause) of a component\'s audit logging, and every retention change, per producer.',
  columns: [
    col('time', 'When it happened, UTC.'),
    col('tenant_id', 'Customer the event was recorded under.'),
    col('producer', 'Component instance whose logging started or stopped.'),
    col('producer_epoch', 'Run of the producer.'),
    col('type', 'audit.started, audit.stopped, or config.changed (retention).'),
    col('component', 'Component name, or retention.days.'),
    col('reason', 'Why logging stopped (shutdown, restart, paused, ...), or the retention change.'),
    col('detail', 'More detail: previous run recorded its stop (start), resume expected (stop).'),
    col('actor_subject', 'Who (a system actor for start and stop, the administrator for retention).'),
    col('event_id', 'The event, for verification and drill-down.'),
  ],
  args: [],
  async run(store, filters, _args, opts = {}) {
    const w = commonWhere(filters);
    w.conditions.push("type IN ('audit.started', 'audit.stopped') OR (type = 'config.changed' AND JSONExtractString(payload, 'objectKind') = 'retention')");
    const sql = `
      SELECT time, tenant_id, producer, producer_epoch, type,
        if(type = 'config.changed', JSONExtractString(payload, 'what'), JSONExtractString(payload, 'component')) AS component,
        multiIf(type = 'audit.stopped', JSONExtractString(payload, 'reason'),
                type = 'config.changed', concat(ifNull(JSONExtract(payload, 'oldVersion', 'Nullable(String)'), '∅'), ' -> ', ifNull(JSONExtract(payload, 'newVersion', 'Nullable(String)'), '∅'), if(JSONExtractBool(payload, 'override'), ' (override)', '')),
                'started') AS reason,
        multiIf(type = 'audit.started', concat('previous stop recorded: ', if(JSONExtractBool(payload, 'previousStopRecorded'), 'yes', 'no')),
                type = 'audit.stopped', concat('resume expected: ', if(JSONExtractBool(payload, 'resumeExpected'), 'yes', 'no')),
                ifNull(JSONExtract(payload, 'summary', 'Nullable(String)'), '')) AS detail,
        actor_subject, toString(event_id) AS event_id
      FROM events
      WHERE ${and(w.conditions)}
      ORDER BY time, event_id`;
    return select(store, this, sql, w, opts);
  },
};

// ---------------------------------------------------------------------------------------------
// 10.2.2 completeness

/** Envelope path (docs/events.md) → events column. */
export const REQUIRED_FIELD_COLUMNS: Readonly<Record<string, string>> = {
  'actor.subject': 'actor_subject',
  'actor.issuer': 'actor_issuer',
  'metadata.type': 'type',
  'metadata.code': 'code',
  'metadata.timeUs': 'time',
  'outcome.result': 'outcome_result',
  'source.address': 'source_address',
  'metadata.producer': 'producer',
  'target.service': 'target_service',
  'target.resource': 'target_resource',
};

function emptyCheck(path: string): string {
  const column = REQUIRED_FIELD_COLUMNS[path];
  if (column === undefined) throw new Error(`no events column for required field ${path}`);
  return column === 'time' ? "time <= toDateTime64(0, 6, 'UTC')" : `empty(trimBoth(${column}))`;
}

export const completeness: EvidenceQuery = {
  id: 'pci.10.2.2',
  requirement: '10.2.2',
  title: 'Audit log entries missing a required field',
  description:
    'Events missing any field PCI DSS 10.2.2 requires of every entry (user, type, date and time, success or failure, origin, affected resource): must be none. The summary gives the number of events checked and the number missing a field.',
  columns: [
    col('event_id', 'The incomplete event.'),
    col('time', 'Its time, UTC.'),
    col('type', 'Its type.'),
    col('producer', 'Who recorded it.'),
    col('missing', 'The required fields that are empty, as envelope paths.'),
  ],
  args: [],
  async run(store, filters, _args, opts = {}) {
    const w = commonWhere(filters);
    const checks = PCI_10_2_2_REQUIRED_PATHS.map((p) => `(${emptyCheck(p)}, '${p}')`);
    const missingExpr = `arrayFilter(x -> x.1, [${checks.join(', ')}])`;
    const summary = await store.query(
      `SELECT count() AS checked, countIf(notEmpty(${missingExpr})) AS missing FROM events WHERE ${and(w.conditions)}`,
      w.params,
    );
    const [checked, missing] = summary.rows[0] ?? [0, 0];
    const sql = `
      SELECT toString(event_id) AS event_id, time, type, producer, arrayMap(x -> x.2, ${missingExpr}) AS missing
      FROM events
      WHERE ${and([...w.conditions, `notEmpty(${missingExpr})`])}
      ORDER BY time, event_id`;
    return select(store, this, sql, w, opts, { checked: checked ?? 0, missing: missing ?? 0, required: PCI_10_2_2_REQUIRED_PATHS.join(', ') });
  },
};

// ---------------------------------------------------------------------------------------------
// 3.4.1 masking hits

export const maskingHits: EvidenceQuery = {
  id: 'pci.3.4.1.masking',
  requirement: '3.4.1',
  title: 'Card data masking by rule, direction and action',
  description: 'What inline masking found and did, from data.masked events: hits per rule, detector, direction and action, with how many messages they were in and when.',
  columns: [
    col('rule_id', 'Masking rule that fired (builtin.pan, builtin.cvv, or a policy rule).'),
    col('detector', 'What was detected: pan, track_data, cvv, pin_block, custom.'),
    col('direction', 'request (caller to upstream) or response (upstream to caller).'),
    col('action', 'masked (BIN and last four at most), dropped, blocked or tokenized.'),
    col('hits', 'Number of hits.'),
    col('messages', 'Number of data.masked events (messages) with such hits.'),
    col('first_seen', 'First hit in the range, UTC.'),
    col('last_seen', 'Last hit in the range, UTC.'),
  ],
  args: [],
  async run(store, filters, _args, opts = {}) {
    const w = commonWhere(filters);
    w.conditions.push("type = 'data.masked'");
    const sql = `
      SELECT JSONExtractString(hit, 'ruleId') AS rule_id, JSONExtractString(hit, 'detector') AS detector,
        JSONExtractString(hit, 'direction') AS direction, JSONExtractString(hit, 'action') AS action,
        count() AS hits, uniqExact(event_id) AS messages, min(time) AS first_seen, max(time) AS last_seen
      FROM events
      ARRAY JOIN JSONExtractArrayRaw(payload, 'hits') AS hit
      WHERE ${and(w.conditions)}
      GROUP BY rule_id, detector, direction, action
      ORDER BY hits DESC, rule_id, direction, action`;
    return select(store, this, sql, w, opts);
  },
};

// ---------------------------------------------------------------------------------------------
// 3.4.1 / 3.5.1 no PAN stored in any text column

/**
 * Runs of 13 or more digits (a space or dash allowed between digits) with the character before
 * them (a JSON number follows `:`, `,` or `[`) and any ASCII letter or `_` glued after them. RE2
 * syntax, run by ClickHouse. Like the masking engine, a run glued to a letter or `_` on either side
 * is an identifier (hex digests, UUIDs, `txn_…`), not a card number: the pattern does not start a
 * run after a letter, and reports a letter after it.
 */
export const PAN_CANDIDATE_PATTERN = '(^|[^0-9A-Za-z_])([0-9](?:[ -]?[0-9]){12,})([A-Za-z_]?)';
/**
 * UUIDs are blanked before candidates are taken: an all-digit tail group ("…-7227-341325508987")
 * would otherwise read as a dashed number. A card number is never inside a UUID.
 */
export const UUID_PATTERN = '[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}';

/** Text columns of `events` the scan reads (event_bytes is the encoded event, strings raw inside). */
export const SCANNED_EVENT_COLUMNS = [
  'payload',
  'event_bytes',
  'actor_subject',
  'actor_issuer',
  'actor_client_id',
  'actor_on_behalf_of',
  'source_address',
  'source_user_agent',
  'target_service',
  'target_resource',
  'target_model',
  'outcome_reason',
  'session_id',
  'request_id',
  'upstream_request_id',
  'producer',
  'producer_epoch',
  'tenant_id',
  'actor_groups',
  'pci_requirements',
] as const;
export const SCANNED_SIGHTING_COLUMNS = ['location', 'actor_subject', 'actor_on_behalf_of', 'session_id', 'request_id', 'pan_hmac_key_id'] as const;

function textExpr(column: string): string {
  if (column === 'actor_groups' || column === 'pci_requirements') return `arrayStringConcat(${column}, ' ')`;
  return `ifNull(toString(${column}), '')`;
}

export interface PanCandidate {
  /** Digits with separators removed. */
  readonly digits: string;
  /** The run as written (digits and separators), to ask the masking engine about. */
  readonly text: string;
  /** True when the run sits where a JSON number would (after `:`, `,` or `[`) without separators. */
  readonly numberLike: boolean;
}

/**
 * Luhn-valid card-number candidates in `text`: every 13–19-digit run (separators allowed), and in
 * longer separated runs every stretch of whole groups with 13–19 digits. A plain run of more than
 * 19 digits is an id, not a card.
 */
export function panCandidatesIn(text: string): PanCandidate[] {
  const out: PanCandidate[] = [];
  const re = new RegExp(PAN_CANDIDATE_PATTERN, 'g');
  const scanned = text.replace(new RegExp(UUID_PATTERN, 'g'), ' ');
  for (let m = re.exec(scanned); m !== null; m = re.exec(scanned)) {
    out.push(...candidatesOfRun(m[1] ?? '', m[2] ?? '', m[3] ?? ''));
  }
  return out;
}

function candidatesOfRun(prev: string, run: string, gluedAfter: string): PanCandidate[] {
  if (gluedAfter !== '') return [];
  const digits = run.replace(/[ -]/g, '');
  const found = new Map<string, PanCandidate>();
  if (digits.length <= 19 && luhnValid(digits)) {
    found.set(digits, { digits, text: run, numberLike: digits === run && (prev === ':' || prev === ',' || prev === '[') });
  }
  // Separated runs can join a card number to digits around it ("v1.3 4111-…", a list): every
  // stretch of whole groups with 13-19 digits is a candidate too. A plain run of more than 19
  // digits is an id, not a card.
  const groups = run.split(/[ -]/);
  for (let i = 0; groups.length > 1 && i < groups.length; i++) {
    let acc = '';
    for (let j = i; j < groups.length; j++) {
      acc += groups[j];
      if (acc.length > 19) break;
      if (acc.length >= 13 && !found.has(acc) && luhnValid(acc)) found.set(acc, { digits: acc, text: groups.slice(i, j + 1).join(' '), numberLike: false });
    }
  }
  return [...found.values()];
}

/** Strings (values and keys) inside a JSON document. */
function jsonStrings(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const v of value) jsonStrings(v, out);
  else if (typeof value === 'object' && value !== null) {
    for (const [k, v] of Object.entries(value)) {
      out.push(k);
      jsonStrings(v, out);
    }
  }
  return out;
}

/** The card brand whose issuer range and length the digits fit, if any (masking engine's IIN table). */
export function brandOf(digits: string): string | null {
  for (const rule of IIN_RULES) {
    if (!rule.lengths.includes(digits.length)) continue;
    const prefix = Number(digits.slice(0, rule.digits));
    if (prefix >= rule.lo && prefix <= rule.hi) return rule.brand;
  }
  return null;
}

/** What a report may show of a found number: BIN and last four (PCI DSS 3.4.1), never the rest. */
export function maskDigits(digits: string): string {
  return `${digits.slice(0, 6)}${'*'.repeat(Math.max(0, digits.length - 10))}${digits.slice(-4)}`;
}

const PAN_SCAN_BATCH = 500;

function finding(table: string, column: string, eventId: string, time: Cell, c: PanCandidate): Row {
  return [table, column, eventId, time, maskDigits(c.digits), c.digits.length, brandOf(c.digits), findPans(c.text).length > 0];
}

export const noPanStored: EvidenceQuery = {
  id: 'pci.3.4.1.pan-scan',
  requirement: '3.4.1, 3.5.1',
  title: 'No full card number stored in any text column',
  description:
    'Scans every text column of the store (event payloads, the encoded events, envelope text, PAN sightings) with a ClickHouse regular expression for runs of 13 or more digits (identifiers glued to letters and UUIDs excluded), then Luhn-checks the candidates in JavaScript; digits that are JSON numbers in a payload (times, sizes) are not text and are excluded after parsing the payload. Must find nothing; each finding shows only BIN and last four.',
  columns: [
    col('table_name', 'events or pan_sightings.'),
    col('column_name', 'The column holding the digits.'),
    col('event_id', 'The row (its event).'),
    col('time', 'Time of the row, UTC.'),
    col('masked', 'The found number as BIN and last four only.'),
    col('digits', 'How many digits it has.'),
    col('brand', 'Card brand whose issuer range it fits, when any.'),
    col('masking_engine', 'True when the masking engine itself calls these digits a PAN (so inline masking would have masked them).'),
  ],
  args: [],
  async run(store, filters, _args, opts = {}) {
    const findings: Row[] = [];
    let candidateRows = 0;
    let rowsScanned = 0;
    const scan = async (table: 'events' | 'pan_sightings', columns: readonly string[]): Promise<Where> => {
      const w = commonWhere(filters, table === 'events' ? ['actor_subject', 'actor_on_behalf_of'] : ['actor_subject', 'actor_on_behalf_of']);
      const count = await store.query(`SELECT count() FROM ${table} WHERE ${and(w.conditions)}`, w.params);
      rowsScanned += Number(count.rows[0]?.[0] ?? 0);
      const tuples = columns.map((c) => `tuple('${c}', replaceRegexpAll(${textExpr(c)}, {uuid:String}, ' '))`).join(', ');
      const prefilter = columns.map((c) => `match(${textExpr(c)}, {pattern:String})`).join(' OR ');
      // Runs glued to a letter after them are identifiers: dropped here, so only real candidates
      // reach JavaScript.
      const sql = `
        SELECT event_id, time, column_name, found FROM (
          SELECT toString(event_id) AS event_id, time, c.1 AS column_name,
            arrayFilter(g -> g[3] = '', extractAllGroups(c.2, {pattern:String})) AS found
          FROM (SELECT * FROM ${table} WHERE ${and([...w.conditions, prefilter])})
          ARRAY JOIN [${tuples}] AS c
          WHERE match(c.2, {pattern:String}))
        WHERE notEmpty(found)`;
      const params = { ...w.params, pattern: PAN_CANDIDATE_PATTERN, uuid: UUID_PATTERN };
      // Payload digits in JSON-number position are checked against the parsed payload below.
      const recheck = new Map<string, { time: Cell; digits: Set<string> }>();
      const stream = store.stream(sql, params, opts.signal === undefined ? {} : { signal: opts.signal });
      for await (const row of stream) {
        candidateRows += 1;
        const [eventId, time, column, found] = row as [string, string, string, [string, string, string][]];
        for (const [prev, run, glued] of found) {
          for (const c of candidatesOfRun(prev, run, glued)) {
            if (column === 'payload' && c.numberLike) {
              const r = recheck.get(eventId) ?? { time, digits: new Set<string>() };
              r.digits.add(c.digits);
              recheck.set(eventId, r);
            } else {
              findings.push(finding(table, column, eventId, time, c));
            }
          }
        }
      }
      const ids = [...recheck.keys()];
      for (let i = 0; i < ids.length; i += PAN_SCAN_BATCH) {
        const batch = ids.slice(i, i + PAN_SCAN_BATCH);
        const payloads = await store.query(`SELECT toString(event_id), payload FROM events WHERE event_id IN {ids:Array(UUID)}`, { ids: batch }, { maxRows: batch.length * 4 });
        for (const [id, payload] of payloads.rows as [string, string][]) {
          const r = recheck.get(id);
          if (r === undefined) continue;
          let strings: string[];
          try {
            strings = jsonStrings(JSON.parse(payload));
          } catch {
            // Not JSON (a damaged row): treat every candidate as text.
            strings = [payload];
          }
          const inText = new Map(strings.flatMap((s) => panCandidatesIn(s).map((c) => [c.digits, c] as const)));
          for (const d of r.digits) {
            const c = inText.get(d);
            if (c !== undefined) findings.push(finding(table, 'payload', id, r.time, c));
          }
          recheck.delete(id);
        }
      }
      return w;
    };
    const w = await scan('events', SCANNED_EVENT_COLUMNS);
    await scan('pan_sightings', SCANNED_SIGHTING_COLUMNS);
    const columns: ResultColumn[] = [
      { name: 'table_name', type: 'String' },
      { name: 'column_name', type: 'String' },
      { name: 'event_id', type: 'String' },
      { name: 'time', type: "DateTime64(6, 'UTC')" },
      { name: 'masked', type: 'String' },
      { name: 'digits', type: 'UInt8' },
      { name: 'brand', type: 'Nullable(String)' },
      { name: 'masking_engine', type: 'Bool' },
    ];
    const maxRows = opts.maxRows ?? 10_000;
    return {
      queryId: this.id,
      requirement: this.requirement,
      title: this.title,
      parameters: w.parameters,
      columns,
      rows: findings.slice(0, maxRows),
      truncated: findings.length > maxRows,
      summary: { rows_scanned: rowsScanned, rows_with_candidates: candidateRows, pan_findings: findings.length },
    };
  },
};

// ---------------------------------------------------------------------------------------------
// 10.5.1 retention

export const retention: EvidenceQuery = {
  id: 'pci.10.5.1',
  requirement: '10.5.1',
  title: 'Audit log retention',
  description:
    'The oldest and newest retained events, the retention (TTL) in force on each evidence table, and how long it took to retrieve an event about 90 days old (the "three months immediately available" part). One row per evidence table.',
  columns: [
    col('table_name', 'events or pan_sightings.'),
    col('ttl_days', 'Retention in days declared on the table (TTL); at least 365.'),
    col('rows', 'Rows retained.'),
    col('oldest', 'Oldest retained row, UTC.'),
    col('newest', 'Newest retained row, UTC.'),
    col('retained_days', 'Days between the oldest row and now.'),
    col('sample_event_id', 'events only: the newest event at least 90 days old, if any.'),
    col('sample_time', 'Its time, UTC.'),
    col('retrieval_ms', 'Milliseconds to retrieve that event by id (whole row, payload and encoded bytes).'),
  ],
  args: [],
  async run(store, filters, _args, opts = {}) {
    const nowUs = opts.nowUs ?? Date.now() * 1000;
    const w = commonWhere({ ...(filters.tenantId === undefined ? {} : { tenantId: filters.tenantId }) });
    const rows: Row[] = [];
    for (const table of ['events', 'pan_sightings'] as const) {
      const ddl = await store.query('SELECT create_table_query FROM system.tables WHERE database = currentDatabase() AND name = {table:String}', { table });
      const ttlDays = parseTtlDays(String(ddl.rows[0]?.[0] ?? ''));
      const stats = await store.query(
        `SELECT count(), toString(min(time)), toString(max(time)), toUnixTimestamp64Micro(min(time)) FROM ${table} WHERE ${and(w.conditions)}`,
        w.params,
      );
      const [count, oldest, newest, oldestUs] = stats.rows[0] ?? [0, null, null, null];
      const empty = Number(count) === 0;
      let sample: [Cell, Cell, Cell] = [null, null, null];
      if (table === 'events' && !empty) {
        const cutoff = { ...w.params, cutoff_us: nowUs - 90 * 86_400_000_000 };
        const pick = await store.query(
          `SELECT toString(event_id), toUnixTimestamp64Micro(time), toString(time) FROM events WHERE ${and([...w.conditions, "time <= fromUnixTimestamp64Micro({cutoff_us:Int64}, 'UTC')"])} ORDER BY time DESC LIMIT 1`,
          cutoff,
        );
        const [id, us, time] = pick.rows[0] ?? [];
        if (typeof id === 'string') {
          const t0 = performance.now();
          // The retrieval an auditor would do: the whole row by id and time.
          await store.query(
            "SELECT * FROM events WHERE event_id = {id:UUID} AND time = fromUnixTimestamp64Micro({us:Int64}, 'UTC')",
            { id, us: Number(us) },
          );
          sample = [id, time ?? null, Math.round((performance.now() - t0) * 1000) / 1000];
        }
      }
      const retainedDays = empty ? null : Math.floor((nowUs - Number(oldestUs)) / 86_400_000_000);
      rows.push([table, ttlDays, count ?? 0, empty ? null : (oldest ?? null), empty ? null : (newest ?? null), retainedDays, ...sample]);
    }
    const ttl = rows.map((r) => Number(r[1]));
    return {
      queryId: this.id,
      requirement: this.requirement,
      title: this.title,
      parameters: w.parameters,
      columns: [
        { name: 'table_name', type: 'String' },
        { name: 'ttl_days', type: 'Nullable(UInt32)' },
        { name: 'rows', type: 'UInt64' },
        { name: 'oldest', type: "Nullable(DateTime64(6, 'UTC'))" },
        { name: 'newest', type: "Nullable(DateTime64(6, 'UTC'))" },
        { name: 'retained_days', type: 'Nullable(Int64)' },
        { name: 'sample_event_id', type: 'Nullable(String)' },
        { name: 'sample_time', type: "Nullable(DateTime64(6, 'UTC'))" },
        { name: 'retrieval_ms', type: 'Nullable(Float64)' },
      ],
      rows,
      truncated: false,
      summary: { min_ttl_days: Math.min(...ttl), meets_365_days: ttl.every((d) => d >= 365) },
    };
  },
};

// ---------------------------------------------------------------------------------------------
// PAN lookup by fingerprint

export interface PanLookupArgs {
  /** HMAC-SHA-256 of the PAN under the store's PAN HMAC key, 64 hex characters. Never the PAN. */
  readonly fingerprint: string;
}

export const panLookup: EvidenceQuery<PanLookupArgs> = {
  id: 'pan-lookup',
  requirement: '3.5.1.1, 12.10.7',
  title: 'Where did this card appear?',
  description:
    'Every sighting of one card, found by the keyed HMAC of its number (compute it with the PAN HMAC key; the store never sees the number): when, in which message and where in it, which way, who, and what masking did.',
  columns: [
    col('time', 'When, UTC.'),
    col('tenant_id', 'Customer.'),
    col('bin', 'BIN (first six or eight digits).'),
    col('last4', 'Last four digits.'),
    col('pan_hmac_key_id', 'Id of the HMAC key the fingerprint was computed with.'),
    col('event_type', 'Event that recorded the hit (data.masked).'),
    col('direction', 'request or response.'),
    col('location', 'JSON path (or SQL parameter) of the text that held the card number.'),
    col('rule_id', 'Masking rule that fired.'),
    col('action', 'What masking did.'),
    col('actor_subject', 'Who sent or received it.'),
    col('actor_on_behalf_of', 'The person an agent acted for.'),
    col('session_id', 'Session.'),
    col('request_id', 'Request.'),
    col('event_id', 'The event, for verification and drill-down.'),
  ],
  args: [col('fingerprint', 'HMAC-SHA-256 of the card number, 64 hex characters.')],
  async run(store, filters, args, opts = {}) {
    // Only a 64-hex fingerprint is accepted: whatever else was typed (possibly a card number) is
    // neither queried nor echoed.
    if (typeof args?.fingerprint !== 'string' || !/^[0-9a-fA-F]{64}$/.test(args.fingerprint)) {
      throw new StoreError('store_invalid_argument', 'fingerprint must be the 64-hex-character HMAC-SHA-256 of the card number', {
        where: 'fingerprint',
        fix: 'compute the HMAC with the PAN HMAC key; never pass the card number itself',
      });
    }
    const w = commonWhere(filters);
    w.conditions.push('pan_hmac = unhex({fingerprint:String})');
    w.params['fingerprint'] = args.fingerprint.toLowerCase();
    w.parameters['fingerprint'] = args.fingerprint.toLowerCase();
    const sql = `
      SELECT time, tenant_id, bin, toString(last4) AS last4, pan_hmac_key_id, event_type, direction, location, rule_id, action,
        actor_subject, actor_on_behalf_of, session_id, request_id, toString(event_id) AS event_id
      FROM pan_sightings
      WHERE ${and(w.conditions)}
      ORDER BY time, event_id, location`;
    return select(store, this, sql, w, opts);
  },
};

// ---------------------------------------------------------------------------------------------
// Session replay

export interface SessionReplayArgs {
  readonly sessionId: string;
}

export const sessionReplay: EvidenceQuery<SessionReplayArgs> = {
  id: 'session-replay',
  requirement: '10.2.1.1, 10.2.2',
  title: 'Session replay',
  description: "One session's events in order: who did what, against what, with what result, with each payload.",
  columns: [
    col('time', 'When, UTC.'),
    col('type', 'Event type.'),
    col('code', 'Event code.'),
    col('actor_subject', 'Who.'),
    col('actor_on_behalf_of', 'For whom.'),
    col('target_service', 'Service.'),
    col('target_resource', 'Resource.'),
    col('outcome', 'success, failure or unknown.'),
    col('status', 'Status returned.'),
    col('reason', 'Reason, for failures.'),
    col('request_id', 'Request.'),
    col('card_data_present', 'Card data present in the exchange.'),
    col('producer', 'Component that recorded it.'),
    col('sequence', "Position in the producer's hash chain."),
    col('event_id', 'The event.'),
    col('payload', 'The event payload, JSON.'),
  ],
  args: [col('sessionId', 'The session to replay.')],
  async run(store, filters, args, opts = {}) {
    if (typeof args?.sessionId !== 'string' || args.sessionId === '') {
      throw new StoreError('store_invalid_argument', 'sessionId is required', { where: 'sessionId' });
    }
    const w = commonWhere({ ...filters, sessionId: args.sessionId });
    const sql = `
      SELECT time, type, code, actor_subject, actor_on_behalf_of, target_service, target_resource,
        outcome_result AS outcome, outcome_status AS status, outcome_reason AS reason, request_id, card_data_present,
        producer, sequence, toString(event_id) AS event_id, payload
      FROM events
      WHERE ${and(w.conditions)}
      ORDER BY time, producer, sequence, event_id`;
    return select(store, this, sql, w, opts);
  },
};

/** Every evidence query, by id. */
export const EVIDENCE_QUERIES = {
  [accessToCardholderData.id]: accessToCardholderData,
  [adminActions.id]: adminActions,
  [auditLogAccess.id]: auditLogAccess,
  [invalidAccessAttempts.id]: invalidAccessAttempts,
  [credentialChanges.id]: credentialChanges,
  [auditLoggingStartStop.id]: auditLoggingStartStop,
  [completeness.id]: completeness,
  [maskingHits.id]: maskingHits,
  [noPanStored.id]: noPanStored,
  [retention.id]: retention,
  [panLookup.id]: panLookup as EvidenceQuery<unknown>,
  [sessionReplay.id]: sessionReplay as EvidenceQuery<unknown>,
} as Readonly<Record<string, EvidenceQuery<unknown>>>;

/** Run a catalog query by id (store_invalid_argument for an unknown id). */
export async function runEvidenceQuery(store: EvidenceStore, id: string, filters: EvidenceFilters = {}, args?: unknown, opts?: EvidenceRunOptions): Promise<EvidenceResult> {
  const q = EVIDENCE_QUERIES[id];
  if (q === undefined) {
    throw new StoreError('store_invalid_argument', `unknown evidence query '${id}'`, { fix: `one of: ${Object.keys(EVIDENCE_QUERIES).join(', ')}` });
  }
  return q.run(store, filters, args, opts);
}

/** The catalog as Markdown, for docs/evidence-store.md (kept in sync by a test; write it with docs.ts). */
export function catalogMarkdown(): string {
  const out: string[] = [];
  out.push('| id | PCI DSS | what it answers |', '|---|---|---|');
  for (const q of Object.values(EVIDENCE_QUERIES)) out.push(`| [\`${q.id}\`](#${q.id.replace(/\./g, '')}) | ${q.requirement} | ${q.title} |`);
  out.push('');
  for (const q of Object.values(EVIDENCE_QUERIES)) {
    out.push(`### ${q.id}`, '', `**${q.title}.** PCI DSS ${q.requirement}. ${q.description}`, '');
    if (q.args.length > 0) out.push(`Arguments: ${q.args.map((a) => `\`${a.name}\` (${a.description})`).join('; ')}`, '');
    out.push('| column | meaning |', '|---|---|');
    for (const c of q.columns) out.push(`| \`${c.name}\` | ${c.description} |`);
    out.push('');
  }
  return out.join('\n');
}
