/**
 * Card data: PANs (the shared PAN engine, not a second implementation), track data, and the card code
 * (CVV/CVC/CID) and expiry date next to a PAN.
 *
 * PCI DSS: track data and card codes are sensitive authentication data (3.3.1: never retained after
 * authorisation, so always dropped). The expiry date is cardholder data, not SAD: it may be kept if
 * protected, so its default is redact; a policy may choose drop.
 *
 * The DLP processor reads content after the gateway's inline masking, so the anchors for "next to a
 * PAN" include PANs the gateway already masked (411111******1111), and track data is recognised with
 * a masked PAN in it too: the gateway masks the PAN of ";4111…=2512…?" but leaves the rest of the track.
 */
import { luhnValid, maskedForm } from '../../masking/index';
import type { Detector, DlpSpan, PanAnchor, ScanContext } from '../types';
import { wordNear } from '../context';

export const pan: Detector = {
  id: 'pan',
  requires: 'digit',
  category: 'card',
  severity: 'high',
  specificity: 90,
  check: 'Luhn + issuer (IIN) prefix and length; Unicode digits and evasions (shared PAN engine)',
  defaultStrategy: 'partial',
  context: { boost: ['card', 'pan', 'visa', 'mastercard', 'amex', 'credit card', 'debit card', 'cc'] },
  detect(_text, ctx) {
    return ctx.pans().map((h) => ({
      start: h.start,
      end: h.end,
      detectorId: 'pan',
      confidence: 0.9,
      normalized: h.digits,
      pan: { bin: h.bin, last4: h.last4, digitCount: h.digitCount, brand: h.brand },
    }));
  },
  partial(_value, span) {
    // First six and last four at most (PCI DSS 3.4.1), same form as the gateway's inline masking.
    const p = span.pan;
    return p === undefined ? '[REDACTED:pan]' : maskedForm(p.bin, p.last4, p.digitCount, 'bin6-last4');
  },
};

/** Clear PAN (13–19 digits) or one the gateway masked: the card-number field of a track. */
const PAN_FIELD = String.raw`([0-9]{13,19}|[0-9]{6}\*{3,9}[0-9]{4}|\*{9,15}[0-9]{4})`;
/** Track 1 (ISO/IEC 7813 format B): %B PAN ^ NAME ^ YYMM service-code discretionary ? */
const TRACK1_RE = new RegExp(
  String.raw`(%)?(?<![A-Za-z0-9])B${PAN_FIELD}\^[A-Za-z0-9 /.'-]{2,26}\^([0-9]{2})([0-9]{2})[0-9]{3}[0-9 ]{0,60}\??`,
  'g',
);
/** Track 2: ;PAN=YYMM service-code discretionary ?   ('D' is the separator in EMV tag 57 hex form, 'F' pads it). */
const TRACK2_RE = new RegExp(
  String.raw`(;)?(?<![A-Za-z0-9=*])${PAN_FIELD}([=D])([0-9]{2})([0-9]{2})[0-9]{3}[0-9]{0,40}F?(\?)?(?![A-Za-z0-9=])`,
  'g',
);

const TRACK2_GATE = /[0-9*][=D][0-9]{4}/;

function panFieldOk(field: string): boolean {
  // A masked PAN was checked when it was masked; a clear one must pass Luhn.
  return field.includes('*') ? field.length >= 13 && field.length <= 19 : luhnValid(field);
}

function monthOk(mm: string): boolean {
  const m = Number(mm);
  return m >= 1 && m <= 12;
}

export const trackData: Detector = {
  id: 'track_data',
  requires: 'digit',
  category: 'sad',
  severity: 'critical',
  specificity: 100,
  check: 'track 1/2 layout (sentinels, separators, YYMM expiry, service code) + Luhn of the PAN',
  defaultStrategy: 'drop',
  context: { boost: ['track', 'track1', 'track2', 'magstripe', 'swipe', 'tag 57'] },
  detect(text) {
    const out: DlpSpan[] = [];
    if (text.includes('^')) {
      for (const m of text.matchAll(TRACK1_RE)) {
        const [, , field, , mm] = m;
        if (field === undefined || mm === undefined || !panFieldOk(field) || !monthOk(mm)) continue;
        out.push({ start: m.index, end: m.index + m[0].length, detectorId: 'track_data', confidence: m[1] === '%' ? 0.98 : 0.93 });
      }
    }
    // Cheap gate: a track 2 separator between a card-number digit (or mask) and an expiry digit.
    if (TRACK2_GATE.test(text)) {
      for (const m of text.matchAll(TRACK2_RE)) {
        const [, start, field, sep, , mm, end] = m;
        if (field === undefined || mm === undefined || !panFieldOk(field) || !monthOk(mm)) continue;
        // Without sentinels, "PAN=digits" is only track data when the separator is the track's own.
        const sentinels = (start === ';' ? 1 : 0) + (end === '?' ? 1 : 0);
        out.push({ start: m.index, end: m.index + m[0].length, detectorId: 'track_data', confidence: sentinels > 0 || sep === 'D' ? 0.97 : 0.9 });
      }
    }
    return out;
  },
};

const SEP = String.raw`[ \t|,;:]{1,3}`;
const MMYY = String.raw`(0[1-9]|1[0-2])(?:\s?[/-]\s?)?((?:20)?[0-9]{2})`;
/** Fields right after a PAN in a record: optional expiry, then the card code. */
const AFTER_PAN_RE = new RegExp(String.raw`${SEP}(?:(?:exp\w*\.?:?\s*)?${MMYY}${SEP})?([0-9]{3,4})(?![0-9/.,-]|\s?(?:%|[A-Za-z]))`, 'iy');
/** An expiry right after a PAN (with or without the word). */
const EXP_AFTER_PAN_RE = new RegExp(String.raw`${SEP}(?:exp\w*\.?:?\s*)?${MMYY}(?![0-9/.])`, 'iyd');
const CVV_WORD_RE =
  /(?<![A-Za-z0-9])(?:cvv2?|cvc2?|cav2|cvn|cid|csc|security\s+code|card\s+(?:verification\s+(?:value|code)|security\s+code|code))(?:\s*(?:#|no\.?|number))?\s*["']?\s*[:=]?\s*["']?([0-9]{3,4})(?![0-9])/gi;
const EXP_WORD_RE =
  /(?<![A-Za-z0-9])(?:exp(?:iry|iration|ires)?(?:\s+date)?|valid\s+(?:thru|through|until)|good\s+thru)\.?\s*["']?\s*[:=]?\s*["']?(0[1-9]|1[0-2])(?:\s?[/-]\s?)?((?:20)?[0-9]{2})(?![0-9/.])/gid;

const CARD_WORDS = ['card', 'visa', 'mastercard', 'amex', 'cvv', 'cvc', 'credit', 'debit', 'cardholder', 'pan'] as const;

function cvvLenOk(digits: string, a: PanAnchor | null): boolean {
  return digits.length === 3 || a?.amex === true;
}

export const cvv: Detector = {
  id: 'cvv',
  requires: 'digit',
  category: 'sad',
  severity: 'critical',
  specificity: 80,
  check: 'card code (3 digits, 4 for Amex) only after a PAN in the same record or after a CVV/CVC/CID word',
  defaultStrategy: 'drop',
  detect(text, ctx) {
    const out: DlpSpan[] = [];
    const seen = new Set<number>();
    const add = (start: number, len: number, confidence: number): void => {
      if (seen.has(start)) return;
      seen.add(start);
      out.push({ start, end: start + len, detectorId: 'cvv', confidence });
    };
    for (const a of ctx.panAnchors()) {
      AFTER_PAN_RE.lastIndex = a.end;
      const m = AFTER_PAN_RE.exec(text);
      const code = m?.[3];
      if (m === null || code === undefined || !cvvLenOk(code, a)) continue;
      add(m.index + m[0].length - code.length, code.length, 0.85);
    }
    if (/c[av]v|cvc|cid|csc|code|cvn/i.test(text)) {
      for (const m of text.matchAll(CVV_WORD_RE)) {
        const code = m[1]!;
        add(m.index + m[0].length - code.length, code.length, 0.9);
      }
    }
    return out;
  },
};

export const expiry: Detector = {
  id: 'expiry',
  requires: 'digit',
  category: 'card',
  severity: 'medium',
  specificity: 70,
  check: 'MM/YY, MM/YYYY or MMYY with a valid month, only after a PAN or an expiry word',
  defaultStrategy: 'redact',
  detect(text, ctx: ScanContext) {
    const out: DlpSpan[] = [];
    const seen = new Set<number>();
    const add = (m: RegExpExecArray | RegExpMatchArray, confidence: number): void => {
      // The date runs from the month (group 1) to the end of the match.
      const start = m.indices?.[1]?.[0];
      if (start === undefined || m.index === undefined || seen.has(start)) return;
      seen.add(start);
      out.push({ start, end: m.index + m[0].length, detectorId: 'expiry', confidence });
    };
    for (const a of ctx.panAnchors()) {
      EXP_AFTER_PAN_RE.lastIndex = a.end;
      const m = EXP_AFTER_PAN_RE.exec(text);
      if (m !== null) add(m, 0.85);
    }
    if (/exp|valid|good/i.test(text)) {
      for (const m of text.matchAll(EXP_WORD_RE)) {
        // "expires 12/27 at noon" is a card expiry only when card words are around; a bare "exp 12/27"
        // in a card record is common, a subscription end date in prose too, so card words decide.
        const cardish = ctx.panAnchors().length > 0 || wordNear(text, m.index, m.index + m[0].length, CARD_WORDS, 80);
        add(m, cardish ? 0.9 : 0.45);
      }
    }
    return out;
  },
};
