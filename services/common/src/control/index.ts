export { APPROVAL_OUTCOMES, controlKey, controlMessageSchema, identityKey, type ApprovalOutcome, type ControlMessage, type ControlMessageType } from './messages';
export { ControlError, ControlPublisher, ControlSubscriber, type ControlErrorCode, type SubscriberOptions, type TrustSource } from './channel';
export { ControlState, type ApprovalResolution, type Suspension } from './state';
export { trustKeyDirectory } from './trust';
export { restoreIdentity, suspendIdentity, type IdentityRef, type RestoreInput, type SuspendInput, type SuspensionDeps } from './suspension';
