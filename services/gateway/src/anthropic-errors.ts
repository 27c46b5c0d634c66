/**
 * Errors the gateway itself answers with, shaped exactly like the Anthropic API's, so SDKs raise
 * their usual error classes (AuthenticationError, PermissionDeniedError, …). The stable Attest code
 * travels in the `x-attest-error` header and at the end of the message; docs/errors.md lists them.
 */

export type AnthropicErrorType =
  | 'invalid_request_error'
  | 'authentication_error'
  | 'permission_error'
  | 'not_found_error'
  | 'request_too_large'
  | 'rate_limit_error'
  | 'api_error'
  | 'overloaded_error';

export interface GatewayError {
  status: number;
  type: AnthropicErrorType;
  /** Stable Attest error code (see docs/errors.md). */
  code: string;
  message: string;
}

export function errorBody(err: GatewayError, requestId: string): string {
  return JSON.stringify({
    type: 'error',
    error: { type: err.type, message: `${err.message} [attest:${err.code}]` },
    request_id: requestId,
  });
}

/** The same error as an SSE `error` event, for failures after a stream has started. */
export function errorEvent(err: Pick<GatewayError, 'type' | 'code' | 'message'>): string {
  const data = JSON.stringify({ type: 'error', error: { type: err.type, message: `${err.message} [attest:${err.code}]` } });
  return `event: error\ndata: ${data}\n\n`;
}

export const gatewayError = (status: number, type: AnthropicErrorType, code: string, message: string): GatewayError => ({
  status,
  type,
  code,
  message,
});
