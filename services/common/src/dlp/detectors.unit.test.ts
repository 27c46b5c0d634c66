import { describe, expect, it } from 'vitest';
import { BUILTIN_DETECTORS, type BuiltinDetectorId } from './detectors/index';
import { ibanMod97 } from './detectors/iban';
import { ssnValid } from './detectors/ssn';
import { isPlaceholder } from './detectors/secrets';
import { DEFAULT_DLP_POLICY } from './policy';
import { detect } from './scan';

/** Values the engine reports for `text` (after context, floors and overlaps), as "detector:value". */
function found(text: string): string[] {
  return detect(text, DEFAULT_DLP_POLICY).map((r) => `${r.winner.detectorId}:${text.slice(r.start, r.end)}`);
}
function only(id: BuiltinDetectorId, text: string): string[] {
  return found(text).filter((f) => f.startsWith(`${id}:`));
}

const b64u = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');

describe('detector metadata', () => {
  it('every built-in has an id matching its key, a category, a severity and a check', () => {
    for (const [id, d] of Object.entries(BUILTIN_DETECTORS)) {
      expect(d.id).toBe(id);
      expect(d.check.length).toBeGreaterThan(5);
      expect(['info', 'low', 'medium', 'high', 'critical']).toContain(d.severity);
    }
  });
});

describe('pan (shared engine)', () => {
  it('finds Luhn-valid PANs in any layout and carries BIN/last4', () => {
    expect(only('pan', 'card 4111 1111 1111 1111 ok')).toEqual(['pan:4111 1111 1111 1111']);
    const r = detect('pay with 5555555555554444', DEFAULT_DLP_POLICY)[0]!;
    expect(r.winner.pan).toMatchObject({ bin: '555555', last4: '4444', brand: 'mastercard' });
  });
  it('ignores Luhn failures, glued ids and masked PANs', () => {
    expect(only('pan', 'card 4111111111111112, txn_4111111111111111, 411111******1111')).toEqual([]);
  });
});

describe('track_data', () => {
  it('track 1 and track 2, with sentinels, EMV D separator, and with a gateway-masked PAN', () => {
    expect(only('track_data', '%B4111111111111111^DOE/JOHN^25121010000000000?')).toHaveLength(1);
    expect(only('track_data', ';4111111111111111=25121010000000000?')).toHaveLength(1);
    expect(only('track_data', 'tag57 4111111111111111D25122010000000F')).toHaveLength(1);
    expect(only('track_data', 'log ;411111******1111=2512101000000?')).toHaveLength(1);
  });
  it('refuses a non-Luhn PAN, a bad month, and key=value look-alikes', () => {
    expect(only('track_data', ';4111111111111112=25121010000000000?')).toEqual([]);
    expect(only('track_data', ';4111111111111111=25131010000000000?')).toEqual([]);
    expect(only('track_data', 'x=1234567890123=2512345')).toEqual([]);
  });
});

describe('cvv and expiry', () => {
  it('a code after a PAN in a record, after a CVV word, or after a masked PAN', () => {
    expect(only('cvv', '4111111111111111|1227|123')).toEqual(['cvv:123']);
    expect(only('cvv', 'CVC2: 987')).toEqual(['cvv:987']);
    expect(only('cvv', '411111******1111 456')).toEqual(['cvv:456']);
    expect(only('cvv', 'amex 378282246310005 1234')).toEqual(['cvv:1234']);
  });
  it('no code without a PAN or a word; amounts and units after a PAN are not codes', () => {
    expect(only('cvv', 'port 443 and error code 500')).toEqual([]);
    expect(only('cvv', 'card 4111111111111111 charged 125 USD')).toEqual([]);
    expect(only('cvv', '4111111111111111 100.00')).toEqual([]);
    expect(only('cvv', 'visa 4111111111111111 1234')).toEqual([]); // 4 digits only for Amex
  });
  it('expiry near a PAN or with card words, not dates in prose', () => {
    expect(only('expiry', '4111111111111111 12/27')).toEqual(['expiry:12/27']);
    expect(only('expiry', 'card exp 0928')).toEqual(['expiry:0928']);
    expect(only('expiry', 'meeting on 12/25, ratio 3/4, expires 12/27/2026')).toEqual([]);
    expect(only('expiry', 'subscription expires 11/26')).toEqual([]);
  });
});

describe('iban', () => {
  it('mod-97 and the country length decide', () => {
    expect(ibanMod97('DE89370400440532013000')).toBe(true);
    expect(ibanMod97('DE89370400440532013001')).toBe(false);
    expect(only('iban', 'IBAN DE89 3704 0044 0532 0130 00.')).toEqual(['iban:DE89 3704 0044 0532 0130 00']);
    expect(only('iban', 'GB82WEST12345698765432')).toEqual(['iban:GB82WEST12345698765432']);
    expect(only('iban', 'DE89 3704 0044 0532 0130 01 / XX89370400440532013000 / DE8937040044053201300099')).toEqual([]);
  });
  it('spaced IBANs must be grouped in fours', () => {
    expect(only('iban', 'DE89 37040044 0532013000')).toEqual([]);
  });
});

describe('us_ssn', () => {
  it('SSA rules', () => {
    expect(ssnValid('512', '44', '1234')).toBe(true);
    for (const [a, g, s] of [['000', '12', '3456'], ['666', '12', '3456'], ['912', '12', '3456'], ['512', '00', '1234'], ['512', '44', '0000'], ['078', '05', '1120']] as const) {
      expect(ssnValid(a, g, s)).toBe(false);
    }
  });
  it('dashed alone, spaced or bare only with an SSN word, suppressed by order/phone words', () => {
    expect(only('us_ssn', 'record 512-44-1234')).toEqual(['us_ssn:512-44-1234']);
    expect(only('us_ssn', 'id 512441234')).toEqual([]);
    expect(only('us_ssn', 'SSN 512441234')).toEqual(['us_ssn:512441234']);
    expect(only('us_ssn', 'invoice 512-44-1234')).toEqual([]);
  });
});

describe('email and phone', () => {
  it('e-mail: addresses yes; image names, packages, git remotes, URL user-info no', () => {
    expect(only('email', 'mail carol.smith@example.co.uk now')).toEqual(['email:carol.smith@example.co.uk']);
    expect(only('email', 'icon@2x.png lodash@4.17.21 git@github.com:o/r.git ssh://git@github.com/o/r user@localhost')).toEqual([]);
    expect(found('postgres://app:pw12345@db.example.com/x').filter((f) => f.startsWith('email'))).toEqual([]);
  });
  it('phone: E.164, NANP with valid codes; dates, IPs, versions, N11 codes no', () => {
    expect(only('phone', 'call +44 20 7946 0958')).toEqual(['phone:+44 20 7946 0958']);
    expect(only('phone', 'call (415) 555-0132')).toEqual(['phone:(415) 555-0132']);
    expect(only('phone', '2024-01-15 10:23:45 ip 192.168.100.200 v1.234.567 411-555-0132 415-555.0132')).toEqual([]);
    expect(only('phone', 'order #415 555 0132')).toEqual([]);
    expect(only('phone', 'tel 030 1234 5678')).toEqual(['phone:030 1234 5678']);
  });
});

describe('secrets', () => {
  const ant = `sk-ant-api03-${'aB3dE5gH7jK9mN1pQ3sT5vW7yZ9bC1dF3hJ5kL7'}AA`;
  it('Anthropic and OpenAI keys; placeholders and slugs refused', () => {
    expect(only('secret.anthropic_key', `key ${ant}`)).toEqual([`secret.anthropic_key:${ant}`]);
    expect(only('secret.anthropic_key', 'sk-ant-your-key sk-ant-api03-XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX')).toEqual([]);
    const oai = 'sk-proj-Ab3De5Gh7Jk9Mn1Pq3St5Vw7Yz9Bc1Df3Hj5Kl7Np9Rs1Tu3Wx5Za7';
    expect(only('secret.openai_key', `OPENAI_API_KEY=${oai}`)).toEqual([`secret.openai_key:${oai}`]);
    expect(found(`x ${ant}`).some((f) => f.startsWith('secret.openai_key'))).toBe(false);
    expect(only('secret.openai_key', 'sk-this-is-not-a-key-just-a-slug-name sk-learn sk_live_abcdefghijklmnopqrstuvwx')).toEqual([]);
  });
  it('AWS key ids are base32; secret keys need a name or an id before them', () => {
    expect(only('secret.aws_access_key_id', 'AKIAIOSFODNN7EXAMPLE')).toEqual(['secret.aws_access_key_id:AKIAIOSFODNN7EXAMPLE']);
    expect(only('secret.aws_access_key_id', 'AKIA1234567890ABCDEF ASIAN')).toEqual([]);
    const s = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY';
    expect(only('secret.aws_secret_key', `aws_secret_access_key = ${s}`)).toEqual([`secret.aws_secret_key:${s}`]);
    expect(only('secret.aws_secret_key', `blob ${s}`)).toEqual([]);
    expect(only('secret.aws_secret_key', `AKIAIOSFODNN7EXAMPLE,${'a'.repeat(20)}${'0123456789'.repeat(2)}`)).toEqual([]);
  });
  it('JWT: header must be JSON with alg', () => {
    const t = `${b64u({ alg: 'RS256', typ: 'JWT' })}.${b64u({ sub: '1' })}.c2lnbmF0dXJl`;
    expect(only('secret.jwt', `Bearer ${t}`)).toEqual([`secret.jwt:${t}`]);
    expect(only('secret.jwt', `${b64u({ typ: 'JWT' })}.${b64u({ sub: '1' })}.c2ln`)).toEqual([]);
  });
  it('PEM private keys (whole, JSON-escaped, truncated); public keys and certificates no', () => {
    const body = 'MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj';
    const pem = `-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----`;
    expect(only('secret.private_key', `k:\n${pem}\nbye`)).toEqual([`secret.private_key:${pem}`]);
    expect(only('secret.private_key', `{"k":"${pem.replace(/\n/g, '\\n')}"}`)).toHaveLength(1);
    expect(only('secret.private_key', `-----BEGIN RSA PRIVATE KEY-----\n${body}`)).toHaveLength(1);
    expect(only('secret.private_key', `-----BEGIN PUBLIC KEY-----\n${body}\n-----END PUBLIC KEY-----`)).toEqual([]);
    expect(only('secret.private_key', '-----BEGIN PRIVATE KEY-----\n...\n-----END PRIVATE KEY-----')).toEqual([]);
  });
  it('connection-string passwords, not placeholders or ports', () => {
    expect(only('secret.connection_password', 'postgres://app:Sup3rS3cret@db/x')).toEqual(['secret.connection_password:Sup3rS3cret']);
    expect(only('secret.connection_password', 'Server=s;Database=d;User Id=u;Password="a b;c";')).toEqual(['secret.connection_password:a b;c']);
    for (const t of ['http://example.com:8080/@alice', 'postgres://app:${PW}@db', 'Password=****;Server=s', 'please reset your password=now']) {
      expect(only('secret.connection_password', t), t).toEqual([]);
    }
    expect(isPlaceholder('${DB_PASSWORD}')).toBe(true);
    expect(isPlaceholder('hunter2')).toBe(false);
  });
});
