/**
 * DLP engine for the mask processor: pure functions, no I/O. Detectors (detectors/), context words,
 * policy section (`dlpPolicySchema`), overlap resolution, strategies, one-string and JSON scanning,
 * provenance records and data security findings.
 */
export { BUILTIN_DETECTORS, BUILTIN_DETECTOR_IDS, MANDATORY_DETECTORS, SAD_DETECTORS, type BuiltinDetectorId } from './detectors/index';
export { dlpPolicySchema, DEFAULT_DLP_POLICY, compileDlpPolicy, type DlpPolicy, type DlpPolicyInput, type CompiledDlpPolicy } from './policy';
export { checkCustomRegex, MAX_PATTERN_LENGTH, MAX_WAYS, type RegexVerdict } from './safe-regex';
export { detect, scanAndApply, type DlpApplied, type DlpFinding, type DlpResult } from './scan';
export { scanJson, type DlpJsonResult, type Json, type JsonChange } from './json';
export { deriveProvenance, canonicalJson, maskHits, type DerivedContent, type OriginalEventRef } from './provenance';
export { observe, closeCase, findingKey, type DataSecurityCase, type FindingSource, type FindingStep } from './findings';
export { keyedHash } from './strategies';
export type { Detector, DlpCategory, DlpKey, DlpSeverity, DlpSpan, DlpStrategy } from './types';
