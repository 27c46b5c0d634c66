import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfigFile, parseConfigText } from './index';

const minimal = `
upstream: { anthropic: { apiKey: { env: ANTHROPIC_API_KEY } } }
identity: { devIssuer: { enabled: true } }
groups: { developers: {} }
`;

function problemsOf(text: string, env: NodeJS.ProcessEnv = {}) {
  try {
    parseConfigText(text, 'x.yaml', env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems;
  }
  throw new Error('expected the config to be refused');
}

describe('config', () => {
  it('fills documented defaults for a minimal file', () => {
    const c = parseConfigText(minimal, 'x.yaml', {});
    expect(c.server).toEqual({ host: '127.0.0.1', port: 8080, trustProxy: false });
    expect(c.masking).toEqual({ format: 'bin6-last4', request: 'mask', response: 'mask' });
    expect(c.groups.developers).toMatchObject({ routes: ['messages', 'count_tokens', 'models'], models: ['*'], streaming: true });
    expect(c.limits.maxBodyBytes).toBe(32 * 1024 * 1024);
  });

  it('loads the committed example config', () => {
    const { config } = loadConfigFile(resolve('examples/attest.yaml'), {});
    expect(config.identity.devIssuer.enabled).toBe(true);
    expect(Object.keys(config.groups)).toContain('developers');
    // dataDir is resolved relative to the config file, not the working directory.
    expect(config.dataDir).toBe(resolve('data'));
  });

  it('lists every problem at once, each with its path, line and a fix', () => {
    const problems = problemsOf(`
server:
  port: 70000
  hots: x
upstream:
  anthropic:
    apiKey: { env: A, file: /b }
identity:
  issuers:
    - issuer: not-a-url
      audiences: []
masking:
  request: redact
groups:
  devs: { maxTokens: -1 }
`);
    const byPath = Object.fromEntries(problems.map((p) => [p.path, p]));
    expect(Object.keys(byPath).sort()).toEqual(
      ['groups.devs.maxTokens', 'identity.issuers.0.audiences', 'identity.issuers.0.issuer', 'masking.request', 'server', 'server.port', 'upstream.anthropic.apiKey'].sort(),
    );
    expect(byPath.server).toMatchObject({ line: 4, message: 'unknown key(s): hots' });
    expect(byPath['masking.request']).toMatchObject({ line: 13, message: 'must be one of: mask, block, allow' });
    for (const p of problems) expect(p.fix.length).toBeGreaterThan(5);
  });

  it('refuses a config where nobody could authenticate or be granted anything', () => {
    const problems = problemsOf(`upstream: { anthropic: { apiKey: { env: K } } }`);
    expect(problems.map((p) => p.path).sort()).toEqual(['groups', 'identity.issuers']);
  });

  it('refuses an HMAC algorithm for an issuer', () => {
    const problems = problemsOf(minimal + `\n` + `identity: { issuers: [{ issuer: "https://idp.example", audiences: [a], algorithms: [HS256] }] }`);
    expect(problems.some((p) => p.message.includes('YAML') || p.path.includes('algorithms'))).toBe(true);
  });

  it('interpolates environment variables into values, typed, with defaults', () => {
    const text = minimal + `server:\n  port: \${PORT:-9000}\n  host: "\${HOST}"\n`;
    expect(parseConfigText(text, 'x.yaml', { HOST: '0.0.0.0' }).server).toMatchObject({ port: 9000, host: '0.0.0.0' });
    expect(parseConfigText(text, 'x.yaml', { HOST: 'h', PORT: '7001' }).server.port).toBe(7001);
    const problems = problemsOf(text, {});
    expect(problems).toEqual([expect.objectContaining({ path: 'server.host', message: 'environment variable HOST is not set' })]);
  });

  it('does not let an environment value inject YAML structure', () => {
    const c = parseConfigText(minimal + 'dataDir: "${D}"\n', 'x.yaml', { D: 'x\nlogging: { level: silent }' });
    expect(c.dataDir).toBe('x\nlogging: { level: silent }');
    expect(c.logging.level).toBe('info');
  });

  it('reports YAML syntax errors with their line', () => {
    const problems = problemsOf('server:\n  port: [1,\n');
    expect(problems[0]).toMatchObject({ message: expect.stringContaining('YAML syntax') });
    expect(problems[0]!.line).toBeGreaterThan(0);
  });

  it('reports duplicate keys', () => {
    expect(problemsOf(minimal + 'dataDir: a\ndataDir: b\n')[0]!.message).toContain('YAML syntax');
  });

  it('names a missing file and how to fix it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'attest-cfg-'));
    expect(() => loadConfigFile(join(dir, 'nope.yaml'))).toThrow(/file not found/);
    const f = join(dir, 'ok.yaml');
    writeFileSync(f, minimal + 'dataDir: ./d\n');
    expect(loadConfigFile(f, {}).config.dataDir).toBe(join(dir, 'd'));
  });
});
