import { describe, expect, it } from 'vitest';
import { parseConfigText } from '../../common/src/config';
import { decideModelCall, decideRoute, grantFor, modelMatches } from './policy';

const config = parseConfigText(
  `
upstream: { anthropic: { apiKey: { env: K } } }
identity: { devIssuer: { enabled: true } }
masking: { request: mask, response: mask }
groups:
  developers: { models: ["claude-sonnet-*", "claude-haiku-*"], maxTokens: 4096 }
  analysts: { routes: [messages], models: ["claude-haiku-*"], maxTokens: 1024, streaming: false, masking: { request: block } }
  auditors: { routes: [models], models: [] }
  lenient: { models: ["claude-opus-4"], masking: { request: allow, response: allow } }
`,
  'test.yaml',
);

describe('policy', () => {
  it('given no known group, when deciding a route, then it is refused naming the reason', () => {
    const d = decideRoute(grantFor(config, ['strangers']), 'messages');
    expect(d).toMatchObject({ allow: false, rule: 'groups' });
  });

  it('given a group without the route, then the route is refused', () => {
    expect(decideRoute(grantFor(config, ['auditors']), 'messages')).toMatchObject({ allow: false, rule: 'routes' });
    expect(decideRoute(grantFor(config, ['auditors']), 'models')).toMatchObject({ allow: true });
  });

  it('checks the model allowlist with wildcards', () => {
    const g = grantFor(config, ['developers']);
    expect(decideModelCall(g, { model: 'claude-sonnet-5-5', stream: false })).toMatchObject({ allow: true, maxTokens: 4096 });
    expect(decideModelCall(g, { model: 'claude-opus-4', stream: false })).toMatchObject({ allow: false, rule: 'models' });
  });

  it('refuses max_tokens above the ceiling instead of lowering it', () => {
    const g = grantFor(config, ['analysts']);
    expect(decideModelCall(g, { model: 'claude-haiku-5', maxTokens: 2000, stream: false })).toMatchObject({ allow: false, rule: 'max_tokens' });
    expect(decideModelCall(g, { model: 'claude-haiku-5', maxTokens: 1024, stream: false })).toMatchObject({ allow: true });
  });

  it('refuses streaming where no allowing group permits it', () => {
    const g = grantFor(config, ['analysts']);
    expect(decideModelCall(g, { model: 'claude-haiku-5', stream: true })).toMatchObject({ allow: false, rule: 'streaming' });
  });

  it('unions access across groups: the highest ceiling among groups that allow the model', () => {
    const g = grantFor(config, ['analysts', 'developers']);
    expect(decideModelCall(g, { model: 'claude-haiku-5', maxTokens: 4000, stream: true })).toMatchObject({ allow: true, maxTokens: 4096 });
  });

  it('takes the strictest masking action across groups, so joining a group never weakens masking', () => {
    expect(grantFor(config, ['developers']).masking).toEqual({ request: 'mask', response: 'mask' });
    expect(grantFor(config, ['lenient']).masking).toEqual({ request: 'allow', response: 'allow' });
    expect(grantFor(config, ['lenient', 'analysts']).masking).toEqual({ request: 'block', response: 'mask' });
  });

  it('ignores groups named like Object.prototype members', () => {
    expect(grantFor(config, ['constructor', '__proto__', 'toString']).entries).toEqual([]);
  });

  it('matches model patterns exactly', () => {
    expect(modelMatches('claude-*', 'claude-x')).toBe(true);
    expect(modelMatches('claude-*-latest', 'claude-sonnet-latest')).toBe(true);
    expect(modelMatches('claude-*-latest', 'claude-sonnet-4')).toBe(false);
    expect(modelMatches('claude-opus-4', 'claude-opus-4-1')).toBe(false);
    expect(modelMatches('a*a', 'a')).toBe(false);
  });
});
