import type { AttestConfig, GroupConfig, MaskingAction, RouteName } from '../../common/src/config';

/**
 * Access policy for the Claude routes: pure functions over the config and the caller's groups.
 *
 * A caller in several groups gets the union of what its groups may reach (routes, models, the highest
 * `maxTokens` among the groups that allow the model, streaming if any allows it), but the strictest
 * data-protection action among them (block > mask > allow): belonging to one more group must never
 * weaken card-data masking.
 */

export interface CallerGrant {
  groups: string[];
  routes: Set<RouteName>;
  streaming: boolean;
  masking: { request: MaskingAction; response: MaskingAction };
  /** The groups from config that this caller belongs to, with their settings. */
  entries: Array<[string, GroupConfig]>;
}

export type Decision =
  | { allow: true; rule: string; maxTokens?: number }
  | { allow: false; rule: string; reason: string };

const ACTION_RANK: Record<MaskingAction, number> = { allow: 0, mask: 1, block: 2 };

export function stricter(a: MaskingAction, b: MaskingAction): MaskingAction {
  return ACTION_RANK[a] >= ACTION_RANK[b] ? a : b;
}

export function grantFor(config: AttestConfig, callerGroups: readonly string[]): CallerGrant {
  const entries: Array<[string, GroupConfig]> = [];
  for (const g of callerGroups) {
    const cfg = Object.hasOwn(config.groups, g) ? config.groups[g] : undefined;
    if (cfg) entries.push([g, cfg]);
  }
  const routes = new Set<RouteName>();
  let streaming = false;
  // Each group's effective action is its override or the global default; the caller gets the
  // strictest of its groups' actions.
  let request: MaskingAction = 'allow';
  let response: MaskingAction = 'allow';
  for (const [, cfg] of entries) {
    for (const r of cfg.routes) routes.add(r);
    streaming ||= cfg.streaming;
    request = stricter(request, cfg.masking?.request ?? config.masking.request);
    response = stricter(response, cfg.masking?.response ?? config.masking.response);
  }
  if (entries.length === 0) {
    request = config.masking.request;
    response = config.masking.response;
  }
  return { groups: entries.map(([g]) => g), routes, streaming, masking: { request, response }, entries };
}

export function modelMatches(pattern: string, model: string): boolean {
  if (pattern === '*') return true;
  if (!pattern.includes('*')) return pattern === model;
  const parts = pattern.split('*');
  const first = parts[0] ?? '';
  const last = parts[parts.length - 1] ?? '';
  if (!model.startsWith(first) || !model.endsWith(last) || model.length < first.length + last.length) return false;
  let pos = first.length;
  for (let i = 1; i < parts.length - 1; i++) {
    const idx = model.indexOf(parts[i] ?? '', pos);
    if (idx < 0) return false;
    pos = idx + (parts[i] ?? '').length;
  }
  return pos <= model.length - last.length;
}

export function decideRoute(grant: CallerGrant, route: RouteName): Decision {
  if (grant.entries.length === 0) {
    return { allow: false, rule: 'groups', reason: 'your identity is in no group that Attest grants access to' };
  }
  if (!grant.routes.has(route)) {
    return { allow: false, rule: 'routes', reason: `your groups (${grant.groups.join(', ')}) may not use the ${route} route` };
  }
  return { allow: true, rule: 'routes' };
}

/** Decides a model call: model allowlist, max_tokens ceiling, streaming. */
export function decideModelCall(
  grant: CallerGrant,
  call: { model: string; maxTokens?: number; stream: boolean },
): Decision {
  const allowing = grant.entries.filter(([, g]) => g.models.some((p) => modelMatches(p, call.model)));
  if (allowing.length === 0) {
    return { allow: false, rule: 'models', reason: `model ${call.model} is not allowed for your groups (${grant.groups.join(', ')})` };
  }
  let ceiling: number | undefined = 0;
  for (const [, g] of allowing) {
    if (g.maxTokens === undefined) {
      ceiling = undefined;
      break;
    }
    ceiling = Math.max(ceiling, g.maxTokens);
  }
  if (ceiling !== undefined && call.maxTokens !== undefined && call.maxTokens > ceiling) {
    return { allow: false, rule: 'max_tokens', reason: `max_tokens ${call.maxTokens} is above your limit of ${ceiling}` };
  }
  if (call.stream && !allowing.some(([, g]) => g.streaming)) {
    return { allow: false, rule: 'streaming', reason: 'streaming is not allowed for your groups; call without `stream: true`' };
  }
  return ceiling === undefined ? { allow: true, rule: 'models' } : { allow: true, rule: 'models', maxTokens: ceiling };
}
