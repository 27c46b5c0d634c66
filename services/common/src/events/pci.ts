import type { EventType } from './catalog';

/**
 * PCI DSS v4.0.1 requirements the event contract refers to, with a short paraphrase.
 * Paraphrased from secondary sources (see docs/events.md); check the PCI SSC text before
 * quoting to a customer.
 */
export const PCI_REQUIREMENTS = {
  '3.3.1': 'Sensitive authentication data is not retained after authorisation.',
  '3.4.1': 'PAN is masked when displayed: at most BIN and last four digits.',
  '3.4.2': 'PAN cannot be copied or relocated through remote-access technologies.',
  '3.5.1': 'PAN is rendered unreadable anywhere it is stored.',
  '3.5.1.1': 'Hashes used to render PAN unreadable are keyed cryptographic hashes.',
  '3.6.1': 'Procedures protect cryptographic keys against disclosure and misuse.',
  '3.7.4': 'Keys are changed at the end of their cryptoperiod.',
  '7.2.1': 'An access control model covers all system components, by role and need.',
  '7.2.2': 'Access is assigned on job function and least privilege.',
  '7.2.3': 'Required privileges are approved by authorised personnel.',
  '7.2.6': 'Access to stored cardholder data is only through programmatic methods, restricted to authorised users.',
  '8.2.1': 'Every user has a unique ID before access to system components or cardholder data.',
  '8.3.1': 'All user access is authenticated with at least one factor.',
  '8.3.4': 'Invalid authentication attempts are limited.',
  '8.4.2': 'Multi-factor authentication for all access into the cardholder data environment.',
  '8.6.3': 'Application and system account passwords are protected and changed periodically.',
  '10.2.1': 'Audit logs are enabled and active for all system components.',
  '10.2.1.1': 'Audit logs capture all individual user access to cardholder data.',
  '10.2.1.2': 'Audit logs capture all actions taken by anyone with administrative access.',
  '10.2.1.3': 'Audit logs capture all access to audit logs.',
  '10.2.1.4': 'Audit logs capture all invalid logical access attempts.',
  '10.2.1.5': 'Audit logs capture all changes to identification and authentication credentials.',
  '10.2.1.6': 'Audit logs capture initialisation, stopping and pausing of audit logs.',
  '10.2.1.7': 'Audit logs capture creation and deletion of system-level objects.',
  '10.2.2': 'Each audit log entry records user, event type, date and time, success or failure, origination, and the affected data, component, resource or service.',
  '10.3.1': 'Read access to audit log files is limited to those with a job-related need.',
  '10.3.4': 'File integrity monitoring or change detection on audit logs.',
  '10.4.1': 'Security events and critical component logs are reviewed at least daily.',
  '10.4.1.1': 'Automated mechanisms perform audit log reviews.',
  '10.4.3': 'Exceptions and anomalies identified in the review are addressed.',
  '10.7.2': 'Failures of critical security control systems are detected, alerted and addressed promptly.',
  '10.7.3': 'Failures of critical security control systems are responded to promptly.',
  '12.10.5': 'The incident response plan includes monitoring and responding to security alerts.',
  '12.10.7': 'Procedures are in place for responding to PAN found where it is not expected.',
  'A1.2.1': "Multi-tenant service providers enable audit logging for each customer's environment.",
} as const;

export type PciRequirementId = keyof typeof PCI_REQUIREMENTS;

/**
 * Requirements every event serves through the envelope itself, so they are not repeated in
 * `metadata.pciRequirements`: the 10.2.2 fields, the per-producer hash chain (10.3.4) and the
 * tenant id (A1.2.1). Evidence for them is a query over all events.
 */
export const ENVELOPE_PCI_REQUIREMENTS: readonly PciRequirementId[] = ['10.2.2', '10.3.4', 'A1.2.1'];

/**
 * Event type → the PCI DSS requirements it is evidence for; copied into
 * `metadata.pciRequirements` by `newEvent`. The one place this mapping lives.
 * A tag means events of that type answer the requirement's evidence query; whether a given
 * event is, say, an invalid access attempt is then in its `outcome.result`.
 */
export const PCI_REQUIREMENTS_BY_TYPE: { readonly [K in EventType]: readonly PciRequirementId[] } = {
  'session.started': ['8.2.1', '10.2.1.1'],
  'session.ended': ['8.2.1', '10.2.1.1'],
  'auth.succeeded': ['8.2.1', '8.3.1', '8.4.2'],
  'auth.failed': ['8.3.4', '10.2.1.4'],
  'gateway.request.received': ['10.2.1.1'],
  'policy.decided': ['7.2.1', '7.2.2', '10.2.1.4'],
  'gateway.request.forwarded': ['10.2.1.1'],
  'gateway.request.blocked': ['7.2.1', '10.2.1.4'],
  'gateway.response.completed': ['3.4.1', '10.2.1.1'],
  'data.masked': ['3.3.1', '3.4.1', '3.5.1', '3.5.1.1', '10.2.1.1'],
  'approval.requested': ['7.2.2', '7.2.3'],
  'approval.decided': ['7.2.2', '7.2.3'],
  'approval.expired': ['7.2.2', '7.2.3'],
  'approval.released': ['7.2.2', '7.2.3'],
  'approval.cancelled': ['7.2.2', '7.2.3'],
  'db.query.executed': ['7.2.6', '10.2.1.1'],
  'risk.detected': ['10.4.1', '10.4.1.1'],
  'identity.suspended': ['10.2.1.5'],
  'identity.restored': ['10.2.1.5'],
  'config.changed': ['7.2.1', '10.2.1.2', '10.2.1.6', '10.2.1.7'],
  'key.rotated': ['3.6.1', '3.7.4', '8.6.3', '10.2.1.5'],
  'audit.started': ['10.2.1', '10.2.1.6'],
  'audit.stopped': ['10.2.1.6', '10.7.2'],
  'evidence.accessed': ['3.4.2', '10.2.1.3', '10.3.1'],
  'integrity.checkpoint': ['10.2.1', '10.3.4', '10.7.2'],
  'finding.opened': ['10.4.1.1', '10.4.3', '10.7.3', '12.10.5', '12.10.7'],
  'finding.updated': ['10.4.3', '12.10.5'],
  'finding.closed': ['10.4.3', '10.7.3', '12.10.5'],
};

/**
 * PCI DSS 10.2.2: what each log entry must record, and the envelope fields that record it.
 * `required` fields must be non-empty in every event (checked by `newEvent` and `encode`);
 * `supporting` fields add precision when present.
 */
export const PCI_10_2_2_FIELDS = [
  { item: 'User identification', required: ['actor.subject', 'actor.issuer'], supporting: ['actor.kind', 'actor.onBehalfOf', 'actor.clientId'] },
  { item: 'Type of event', required: ['metadata.type', 'metadata.code'], supporting: ['metadata.schemaVersion'] },
  { item: 'Date and time', required: ['metadata.timeUs'], supporting: [] },
  { item: 'Success and failure indication', required: ['outcome.result'], supporting: ['outcome.status', 'outcome.reason'] },
  { item: 'Origination of event', required: ['source.address', 'metadata.producer'], supporting: ['source.userAgent'] },
  { item: 'Identity or name of affected data, system component, resource, or service', required: ['target.service', 'target.resource'], supporting: ['target.protocol', 'target.model'] },
] as const;

/** Every required 10.2.2 path, flattened. */
export const PCI_10_2_2_REQUIRED_PATHS: readonly string[] = PCI_10_2_2_FIELDS.flatMap((f) => f.required);

export function pciRequirementsFor(type: EventType): readonly PciRequirementId[] {
  return PCI_REQUIREMENTS_BY_TYPE[type];
}

const REQUIRED_PATH_KEYS: readonly (readonly string[])[] = PCI_10_2_2_REQUIRED_PATHS.map((p) => p.split('.'));

/**
 * The required 10.2.2 paths that are empty in `event`: missing, blank strings, or a non-positive
 * time. Empty means the event could not answer the assessor's "events missing any = 0" query.
 */
export function missingRequiredFields(event: unknown): string[] {
  const missing: string[] = [];
  for (const keys of REQUIRED_PATH_KEYS) {
    let value: unknown = event;
    for (const key of keys) {
      value = typeof value === 'object' && value !== null ? (value as Record<string, unknown>)[key] : undefined;
    }
    const empty =
      value === undefined ||
      value === null ||
      (typeof value === 'string' && value.trim() === '') ||
      (typeof value === 'number' && !(Number.isFinite(value) && value > 0));
    if (empty) missing.push(keys.join('.'));
  }
  return missing;
}
