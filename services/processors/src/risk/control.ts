/**
 * The control message that makes every gateway enforce a suspension or a restore decided here.
 * The shell emits the evidence event first (durable), then publishes this (ControlPublisher), with
 * the event's own id and time, so the gateways' ControlState and the evidence name the same decision.
 */
import type { ControlMessage } from '../../../common/src/control/messages';
import { payloadOf, type RiskEvent } from './state';

export function controlMessageOf(event: RiskEvent): ControlMessage | null {
  const suspended = payloadOf(event, 'identity.suspended');
  if (suspended !== null) {
    return {
      type: 'identity.suspended',
      issuer: suspended.principal.issuer,
      subject: suspended.principal.subject,
      reason: suspended.reason,
      untilUs: suspended.untilUs,
      eventId: event.metadata.eventId,
      atUs: event.metadata.timeUs,
    };
  }
  const restored = payloadOf(event, 'identity.restored');
  if (restored !== null) {
    return {
      type: 'identity.restored',
      issuer: restored.principal.issuer,
      subject: restored.principal.subject,
      reason: restored.reason,
      eventId: event.metadata.eventId,
      atUs: event.metadata.timeUs,
    };
  }
  return null;
}
