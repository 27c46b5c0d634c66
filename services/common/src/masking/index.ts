/**
 * PAN masking engine: pure functions and a streaming masker, no I/O. See scanner.ts for the detection
 * rules (separators, gap bound, long runs) and iin.ts for the issuer table.
 */
export { luhnValid, IIN_RULES, type IinRule } from './iin';
export {
  findPans,
  maskPans,
  maskedForm,
  StreamingPanMasker,
  type PanMaskFormat,
} from './mask';
export {
  MAX_GAP_UNITS,
  MAX_PAN_DIGITS,
  MIN_PAN_DIGITS,
  type PanHit,
  type PanScanOptions,
} from './scanner';
