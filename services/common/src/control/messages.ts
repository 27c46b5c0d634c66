import { z } from 'zod';

/**
 * Control messages: what processors and the console tell every gateway, on the control topic
 * (Kafka) or the control log (embedded). They carry decisions that gate traffic, so each one is a
 * compact JWS signed by the producer that decided it (see channel.ts); the evidence of the same
 * decision is the matching event on the evidence log, named by `eventId`.
 *
 * The topic is keyed so that compaction keeps what a restarting gateway needs: the latest message
 * per identity (suspensions) and per approval (outcomes).
 */

const MAX_ID = 256;
const id = z.string().min(1).max(MAX_ID);

const identityRef = { issuer: id, subject: id };

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
    outcome: z.enum(['approved', 'rejected', 'expired', 'cancelled']),
    /** SHA-256 (hex) of the canonical request that was approved: a release must match it. */
    requestDigest: z.string().regex(/^[0-9a-f]{64}$/),
    reason: z.string().max(1024).nullable(),
    /** Subjects who decided (approvers, or the one who rejected). */
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

/** Partition/compaction key: one per identity, one per approval. */
export function controlKey(msg: ControlMessage): string {
  return msg.type === 'approval.resolved' ? `approval:${msg.approvalId}` : `identity:${msg.issuer}\u0000${msg.subject}`;
}

export function identityKey(issuer: string, subject: string): string {
  return `${issuer}\u0000${subject}`;
}
