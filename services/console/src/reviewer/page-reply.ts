import type { FastifyReply } from 'fastify';
import { cspNonce, pageHeaders } from './html';
import { layout, type LayoutOptions } from './pages';

/**
 * Sends one reviewer page with a fresh CSP nonce and the page security headers. `code` (a stable
 * error code) also goes out as `x-attest-error`, so tests and probes need not parse HTML.
 */
export function sendPage(reply: FastifyReply, status: number, page: Omit<LayoutOptions, 'nonce'>, code?: string): FastifyReply {
  const nonce = cspNonce();
  reply.code(status).headers(pageHeaders(nonce));
  if (code !== undefined) reply.header('x-attest-error', code);
  return reply.send(layout({ ...page, nonce }));
}
