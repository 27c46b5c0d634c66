/**
 * Credentials. Formats with a fixed envelope (Anthropic and OpenAI keys, AWS access key ids, JWTs,
 * PEM private keys) are recognised on their own; an AWS secret access key (40 base64 characters) and
 * a bare password only in their setting (a key name, an access key id before it, a connection string).
 * Placeholders ("sk-ant-your-key", "${DB_PASSWORD}", "********", "<password>") are not secrets: a
 * low-variety or template-shaped value is refused.
 */
import type { Detector, DlpSpan } from '../types';

/** Fewer than `min` distinct characters: "XXXXXXXX…", "000000…", "abcabc…" are placeholders. */
function lowVariety(s: string, min = 8): boolean {
  return new Set(s).size < min;
}

const ANTHROPIC_RE = /(?<![A-Za-z0-9_-])sk-ant-[a-z0-9]{2,12}-[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])/g;

export const anthropicKey: Detector = {
  id: 'secret.anthropic_key',
  category: 'secret',
  severity: 'critical',
  specificity: 95,
  check: "'sk-ant-<kind>-' prefix, ≥ 20 key characters, not a placeholder",
  defaultStrategy: 'redact',
  detect(text) {
    if (!text.includes('sk-ant-')) return [];
    const out: DlpSpan[] = [];
    for (const m of text.matchAll(ANTHROPIC_RE)) {
      const body = m[0].slice(m[0].indexOf('-', 7) + 1);
      if (lowVariety(body)) continue;
      out.push({ start: m.index, end: m.index + m[0].length, detectorId: 'secret.anthropic_key', confidence: 0.99, normalized: m[0] });
    }
    return out;
  },
  partial(value) {
    return `${value.slice(0, value.indexOf('-', 7) + 1)}…[REDACTED]`;
  },
};

const OPENAI_RE = /(?<![A-Za-z0-9_-])sk-(?:(proj|svcacct|admin|None)-)?([A-Za-z0-9_-]{20,})(?![A-Za-z0-9_-])/g;

export const openaiKey: Detector = {
  id: 'secret.openai_key',
  category: 'secret',
  severity: 'critical',
  specificity: 94,
  check: "'sk-' / 'sk-proj-' / 'sk-svcacct-' / 'sk-admin-' keys; 'T3BlbkFJ' marker; mixed-case entropy for others",
  defaultStrategy: 'redact',
  detect(text) {
    if (!text.includes('sk-')) return [];
    const out: DlpSpan[] = [];
    for (const m of text.matchAll(OPENAI_RE)) {
      const kind = m[1];
      const body = m[2]!;
      if (body.startsWith('ant-') || lowVariety(body)) continue;
      const mixed = /[a-z]/.test(body) && /[A-Z]/.test(body) && /[0-9]/.test(body);
      let confidence: number;
      // 'T3BlbkFJ' is base64 of "OpenAI", embedded in every key since 2023.
      if (body.includes('T3BlbkFJ')) confidence = 0.99;
      else if (kind !== undefined && body.length >= 40 && mixed) confidence = 0.95;
      else if (/^[A-Za-z0-9]{48}$/.test(body) && mixed) confidence = 0.9;
      else if (body.length >= 32 && mixed && !body.includes('--')) confidence = 0.7;
      else confidence = 0.3; // a slug like sk-this-is-not-a-key
      out.push({ start: m.index, end: m.index + m[0].length, detectorId: 'secret.openai_key', confidence, normalized: m[0] });
    }
    return out;
  },
  partial(value) {
    return `${value.startsWith('sk-proj-') ? 'sk-proj-' : 'sk-'}…[REDACTED]`;
  },
};

/** Long-term (AKIA), temporary (ASIA), bearer (ABIA) and context (ACCA) credential ids; base32 body. */
const AWS_ID_RE = /(?<![A-Za-z0-9])(AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}(?![A-Za-z0-9])/g;

export const awsAccessKeyId: Detector = {
  id: 'secret.aws_access_key_id',
  category: 'secret',
  severity: 'high',
  specificity: 92,
  check: 'AKIA/ASIA/ABIA/ACCA + 16 base32 characters (A–Z, 2–7)',
  defaultStrategy: 'redact',
  detect(text) {
    if (!/A(?:KI|SI|BI|CC)A/.test(text)) return [];
    const out: DlpSpan[] = [];
    for (const m of text.matchAll(AWS_ID_RE)) {
      out.push({ start: m.index, end: m.index + m[0].length, detectorId: 'secret.aws_access_key_id', confidence: 0.95, normalized: m[0] });
    }
    return out;
  },
  partial(value) {
    return `${value.slice(0, 4)}…${value.slice(-4)}`;
  },
};

const AWS_SECRET_NAMED_RE =
  /(?<![A-Za-z0-9])(?:aws[_-]?secret(?:[_-]?access)?(?:[_-]?key)?|secret[_-]?access[_-]?key)["']?\s*[:=]\s*["']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])/gid;
const AWS_SECRET_AFTER_ID_RE = /(?<![A-Za-z0-9])(?:AKIA|ASIA)[A-Z2-7]{16}["']?[\s,:;|=]{1,3}["']?([A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])/gd;

export const awsSecretKey: Detector = {
  id: 'secret.aws_secret_key',
  category: 'secret',
  severity: 'critical',
  specificity: 91,
  check: '40 base64 characters after an AWS secret key name or right after an access key id',
  defaultStrategy: 'redact',
  detect(text) {
    const out: DlpSpan[] = [];
    const seen = new Set<number>();
    const add = (m: RegExpMatchArray, confidence: number): void => {
      const g = m.indices?.[1];
      const v = m[1]!;
      if (g === undefined || seen.has(g[0]) || lowVariety(v, 12)) return;
      seen.add(g[0]);
      out.push({ start: g[0], end: g[1], detectorId: 'secret.aws_secret_key', confidence, normalized: v });
    };
    if (/secret/i.test(text)) for (const m of text.matchAll(AWS_SECRET_NAMED_RE)) add(m, 0.95);
    if (/AKIA|ASIA/.test(text)) {
      for (const m of text.matchAll(AWS_SECRET_AFTER_ID_RE)) {
        // A git SHA or hex digest next to a key id is not the secret: real secrets mix case.
        const v = m[1]!;
        if (/^[0-9a-f]+$/i.test(v) || !/[a-z]/.test(v) || !/[A-Z]/.test(v)) continue;
        add(m, 0.9);
      }
    }
    return out;
  },
};

const JWT_RE = /(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*(?![A-Za-z0-9_-]|\.[A-Za-z0-9_-])/g;

function b64urlJson(seg: string): unknown {
  try {
    return JSON.parse(Buffer.from(seg, 'base64url').toString('utf8'));
  } catch {
    return undefined;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export const jwt: Detector = {
  id: 'secret.jwt',
  category: 'secret',
  severity: 'high',
  specificity: 93,
  check: 'three base64url segments; header is a JSON object with a string "alg"; payload is JSON',
  defaultStrategy: 'redact',
  detect(text) {
    if (!text.includes('eyJ')) return [];
    const out: DlpSpan[] = [];
    for (const m of text.matchAll(JWT_RE)) {
      const [h, p] = m[0].split('.');
      const header = b64urlJson(h!);
      if (!isObject(header) || typeof header['alg'] !== 'string') continue;
      const confidence = isObject(b64urlJson(p!)) ? 0.97 : 0.7;
      out.push({ start: m.index, end: m.index + m[0].length, detectorId: 'secret.jwt', confidence, normalized: m[0] });
    }
    return out;
  },
};

const PEM_BEGIN_RE = /-----BEGIN ((?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY(?: BLOCK)?)-----/g;
/** Body of a PEM block: base64, header lines ("Proc-Type: 4,ENCRYPTED"), real or JSON-escaped line breaks. */
const PEM_BODY_RE = /(?:[A-Za-z0-9+/=\s:,-]|\\[nr])*/y;

export const privateKey: Detector = {
  id: 'secret.private_key',
  category: 'secret',
  severity: 'critical',
  specificity: 99,
  check: 'PEM/OpenSSH/PGP private key block with ≥ 40 base64 characters; truncated blocks too',
  defaultStrategy: 'redact',
  detect(text) {
    if (!text.includes('-----BEGIN ')) return [];
    const out: DlpSpan[] = [];
    for (const m of text.matchAll(PEM_BEGIN_RE)) {
      const bodyStart = m.index + m[0].length;
      const endMarker = `-----END ${m[1]!}-----`;
      const endAt = text.indexOf(endMarker, bodyStart);
      let bodyEnd: number;
      let end: number;
      if (endAt >= 0) {
        bodyEnd = endAt;
        end = endAt + endMarker.length;
      } else {
        // Truncated (a paste cut short): everything that still looks like the body goes.
        PEM_BODY_RE.lastIndex = bodyStart;
        PEM_BODY_RE.exec(text);
        bodyEnd = end = PEM_BODY_RE.lastIndex;
      }
      const b64 = text.slice(bodyStart, bodyEnd).replace(/\\[nr]|\s/g, '').replace(/[^A-Za-z0-9+/=]/g, '');
      if (b64.length < 40 || lowVariety(b64, 16)) continue;
      out.push({ start: m.index, end, detectorId: 'secret.private_key', confidence: 0.99 });
    }
    return out;
  },
};

/** scheme://user:password@host — the password is the span (user and host stay readable). */
const URL_CRED_RE = /(?<![A-Za-z0-9+.-])([a-z][a-z0-9+.-]{1,20}):\/\/[^\s:@/?#'"<>]{1,128}:([^\s@/?#'"<>]{1,256})@[A-Za-z0-9[]/gid;
/** key=value connection strings (ADO.NET, libpq, JDBC query): Password=…; pwd=…; password=… */
const KV_PASSWORD_RE = /(?<![A-Za-z0-9_])(?:password|passwd|pwd)\s*=\s*(?:(["'])(.{1,256}?)\1|([^\s;&"'{}]{1,256}))/gid;
const CONN_CONTEXT_RE =
  /(?<![A-Za-z0-9_])(?:server|host|hostaddr|data source|user id|uid|user|username|database|dbname|initial catalog|port|sslmode|driver|jdbc|dsn|provider)\s*=|:\/\/|jdbc:/i;
const KNOWN_SCHEMES = new Set([
  'postgres', 'postgresql', 'mysql', 'mariadb', 'mongodb', 'mongodb+srv', 'redis', 'rediss', 'amqp', 'amqps', 'mssql',
  'sqlserver', 'oracle', 'ftp', 'ftps', 'sftp', 'smtp', 'smtps', 'imap', 'ldap', 'ldaps', 'kafka', 'nats', 'clickhouse',
  'http', 'https', 'cockroachdb', 'snowflake', 'db2', 'couchdb', 'elasticsearch', 'mqtt', 'jdbc:postgresql', 'jdbc:mysql',
]);

/** Template and masked values: ${X}, $X, %s, {{x}}, <x>, ***, [REDACTED…], ?, :name, xxx. */
export function isPlaceholder(v: string): boolean {
  return /^(?:\$\{[^}]*\}?|\$[A-Za-z_][A-Za-z0-9_]*|%[sdv]|\{\{.*\}\}|<[^>]*>|\*+|x{3,}|X{3,}|\.{3}|…|\?|:[A-Za-z_]\w*|\[REDACTED.*|REDACTED|\[TOKEN:.*|\[DROPPED:.*)$/.test(v);
}

export const connectionPassword: Detector = {
  id: 'secret.connection_password',
  category: 'secret',
  severity: 'high',
  specificity: 88,
  check: 'password in URL user-info, or Password=/pwd= in a string with other connection keys; placeholders refused',
  defaultStrategy: 'redact',
  detect(text) {
    const out: DlpSpan[] = [];
    // User-info needs '@' after '://'; most URLs have none, and the regex is then skipped entirely.
    const sep = text.indexOf('://');
    if (sep >= 0 && text.indexOf('@', sep) >= 0) {
      for (const m of text.matchAll(URL_CRED_RE)) {
        const g = m.indices?.[2];
        const pw = m[2]!;
        if (g === undefined || isPlaceholder(pw)) continue;
        const confidence = KNOWN_SCHEMES.has(m[1]!.toLowerCase()) ? 0.95 : 0.85;
        out.push({ start: g[0], end: g[1], detectorId: 'secret.connection_password', confidence, normalized: pw });
      }
    }
    if (/p(?:ass)?w(?:or)?d/i.test(text)) {
      for (const m of text.matchAll(KV_PASSWORD_RE)) {
        const g = m.indices?.[2] ?? m.indices?.[3];
        const pw = m[2] ?? m[3] ?? '';
        if (g === undefined || pw.length === 0 || isPlaceholder(pw)) continue;
        // Only in a connection string: another connection key within 200 characters.
        const around = text.slice(Math.max(0, m.index - 200), Math.min(text.length, g[1] + 200));
        if (!CONN_CONTEXT_RE.test(around)) continue;
        out.push({ start: g[0], end: g[1], detectorId: 'secret.connection_password', confidence: 0.9, normalized: pw });
      }
    }
    return out;
  },
};
