import { createServer, type Server } from 'node:http';
import pino from 'pino';
import { afterAll, expect, it } from 'vitest';
import { parseConfigText } from '../services/common/src/config';
import { createTokenVerifier, DevIssuer } from '../services/common/src/identity';
import { buildGateway } from '../services/gateway/src/app';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** An upstream (or a proxy in front of it) that answers with plain text: card numbers are still masked. */

// Test corpus card number (a Luhn-valid test PAN).
const VISA = '4111111111111111';
let upstream: Server | undefined;

afterAll(() => new Promise<void>((r) => (upstream ? upstream.close(() => r()) : r())));

it('masks a card number in a non-JSON upstream body', async () => {
  upstream = createServer((_req, res) => {
    res.writeHead(502, { 'content-type': 'text/html' });
    res.end(`<html>bad gateway for card ${VISA}, back in a few seconds (k8s)</html>`);
  });
  await new Promise<void>((r) => upstream!.listen(0, '127.0.0.1', () => r()));
  const addr = upstream.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  const config = parseConfigText(`upstream: { anthropic: { baseUrl: "http://127.0.0.1:${port}", apiKey: { env: K } } }\nidentity: { devIssuer: { enabled: true } }\ngroups: { g: {} }\n`, 'plain.yaml');
  const dev = await DevIssuer.loadOrCreate(mkdtempSync(join(tmpdir(), 'attest-plain-')));
  const app = await buildGateway({ config, verifier: createTokenVerifier({ issuers: [dev.issuerOptions(['attest-dev'])] }), upstreamApiKey: 'k', logger: pino({ level: 'silent' }) });
  try {
    const token = await dev.mint({ subject: 's', groups: ['g'], audience: 'attest-dev', ttlSec: 60 });
    const res = await app.inject({ method: 'POST', url: '/v1/messages', headers: { 'x-api-key': token, 'content-type': 'application/json' }, payload: { model: 'm', max_tokens: 1, messages: [] } });
    expect(res.statusCode).toBe(502);
    // The upstream credential here ('k') is too short to be a real key: it is not scrubbed, so the
    // body keeps its every 'k' (scrubbing would have replaced each one with [redacted]).
    expect(res.body).toBe('<html>bad gateway for card 411111******1111, back in a few seconds (k8s)</html>');
  } finally {
    await app.close();
  }
});
