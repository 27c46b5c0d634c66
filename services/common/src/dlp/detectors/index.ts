/** The built-in detectors, in the order they run (order does not change results: overlaps are resolved after). */
import type { Detector } from '../types';
import { cvv, expiry, pan, trackData } from './card';
import { email, phone } from './contact';
import { iban } from './iban';
import { anthropicKey, awsAccessKeyId, awsSecretKey, connectionPassword, jwt, openaiKey, privateKey } from './secrets';
import { usSsn } from './ssn';

export const BUILTIN_DETECTOR_IDS = [
  'pan',
  'track_data',
  'cvv',
  'expiry',
  'iban',
  'us_ssn',
  'email',
  'phone',
  'secret.anthropic_key',
  'secret.openai_key',
  'secret.aws_access_key_id',
  'secret.aws_secret_key',
  'secret.jwt',
  'secret.private_key',
  'secret.connection_password',
] as const;
export type BuiltinDetectorId = (typeof BUILTIN_DETECTOR_IDS)[number];

export const BUILTIN_DETECTORS: Readonly<Record<BuiltinDetectorId, Detector>> = {
  pan,
  track_data: trackData,
  cvv,
  expiry,
  iban,
  us_ssn: usSsn,
  email,
  phone,
  'secret.anthropic_key': anthropicKey,
  'secret.openai_key': openaiKey,
  'secret.aws_access_key_id': awsAccessKeyId,
  'secret.aws_secret_key': awsSecretKey,
  'secret.jwt': jwt,
  'secret.private_key': privateKey,
  'secret.connection_password': connectionPassword,
};

/** Sensitive authentication data (PCI DSS 3.3.1): never retained, so only 'drop' is allowed. */
export const SAD_DETECTORS: readonly BuiltinDetectorId[] = ['track_data', 'cvv'];
/** Detectors a policy may not switch off: invariant 2 (no card data at rest) depends on them. */
export const MANDATORY_DETECTORS: readonly BuiltinDetectorId[] = ['pan', 'track_data', 'cvv'];

export { customDetector, CUSTOM_PREFIX, type CustomPatternSpec } from './custom';
