import { z } from 'zod';

/**
 * Control messages: what processors and the console tell every gateway, on the control topic
 * (Kafka) or the control log (embedded). They carry decisions that gate traffic, so each one is a
 * compact JWS signed by the producer that decided it (see channel.ts); the evidence of the same
 * decision is the matching event on the evidence log, named by `eventId`.
 *
 * The topic is keyed so that compaction keeps what a restarting gateway needs: the latest message
 * per identity (suspensions) and per approval (outcomes), and, under a key of its own, the marker
 * that an approval has released its request (so no later outcome message can compact it away).
 *
 * Compatibility: messages are strict (unknown fields or values are refused), so a new value is
 * readable only by subscribers that know it; older ones drop such a message and log
 * `control_invalid_message` (fail closed). Upgrade gateways and consoles before processors.
 */

const MAX_ID = 256;
const id = z.string().min(1).max(MAX_ID);

const identityRef = { issuer: id, subject: id };

export const APPROVAL_OUTCOMES = ['approved', 'rejected', 'expired', 'cancelled', 'released'] as const;
export type ApprovalOutcome = (typeof APPROVAL_OUTCOMES)[number];

export const controlMessageSchema = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('identity.suspended'),
    ...identityRef,
    reason: z.string().min(1).max(512),
    /** Microseconds since the epoch; null until an admin restores the identity. */
    untilUs: z.number().int().nonnegative().nullable(),
    eventId: id,
    atUs: z.number().int().nonnegative(),
  }),
  z.strictObject({
    type: z.literal('identity.restored'),
    ...identityRef,
    reason: z.string().min(1).max(512),
    eventId: id,
    atUs: z.number().int().nonnegative(),
  }),
  z.strictObject({
    type: z.literal('approval.resolved'),
    approvalId: id,
    /**
     * approved, rejected, expired or cancelled: decided by a processor or the console. 'released':
     * the approval has released its one request (a gateway recorded approval.released); no gateway
     * may release another with it.
     */
    outcome: z.enum(APPROVAL_OUTCOMES),
    /** SHA-256 (hex) of the canonical request that was approved: a release must match it. */
    requestDigest: z.string().regex(/^[0-9a-f]{64}$/),
    reason: z.string().max(1024).nullable(),
    /** Subjects who decided (approvers, or the one who rejected); empty for expired, cancelled, released. */
    by: z.array(id).max(64),
    /** Whose request it is: an ask-and-retry retry is released only for the same caller. */
    requester: z.strictObject(identityRef),
    mode: z.enum(['hold', 'ask_and_retry']),
    eventId: id,
    atUs: z.number().int().nonnegative(),
  }),
]);

export type ControlMessage = z.infer<typeof controlMessageSchema>;
export type ControlMessageType = ControlMessage['type'];

/**
 * Partition/compaction key: one per identity, one per approval, and one per released approval. The
 * release marker has a key of its own: under the approval's key, an outcome re-published after it
 * (a retried publish of 'approved') would be the latest record and compaction would drop the marker.
 */
export function controlKey(msg: ControlMessage): string {
  if (msg.type !== 'approval.resolved') return `identity:${msg.issuer}\u0000${msg.subject}`;
  return msg.outcome === 'released' ? `approval-released:${msg.approvalId}` : `approval:${msg.approvalId}`;
}

export function identityKey(issuer: string, subject: string): string {
  return `${issuer}\u0000${subject}`;
}
