// oidc-provider ships no TypeScript types; this declares only what the test IdP harness uses.
declare module 'oidc-provider' {
  import type { IncomingMessage, ServerResponse } from 'node:http';

  export interface OidcClientMetadata {
    client_id: string;
    client_secret?: string;
    grant_types?: string[];
    response_types?: string[];
    redirect_uris?: string[];
    token_endpoint_auth_method?: string;
    [key: string]: unknown;
  }

  /** The token object handed to extraTokenClaims (only the fields the harness reads). */
  export interface OidcTokenLike {
    kind: string;
    clientId?: string;
    accountId?: string;
  }

  export interface OidcResourceServerInfo {
    scope: string;
    audience?: string;
    accessTokenTTL?: number;
    accessTokenFormat?: 'jwt' | 'opaque';
    jwt?: { sign?: { alg?: string; kid?: string } };
  }

  export interface OidcConfiguration {
    jwks?: { keys: Array<Record<string, unknown>> };
    clients?: OidcClientMetadata[];
    features?: Record<string, unknown>;
    extraTokenClaims?: (ctx: unknown, token: OidcTokenLike) => Promise<Record<string, unknown> | undefined>;
    ttl?: Record<string, number | ((...args: unknown[]) => number)>;
    clientDefaults?: Record<string, unknown>;
    enabledJWA?: Record<string, string[]>;
    [key: string]: unknown;
  }

  export default class Provider {
    constructor(issuer: string, configuration?: OidcConfiguration);
    readonly issuer: string;
    callback(): (req: IncomingMessage, res: ServerResponse) => void;
    on(event: string, listener: (...args: unknown[]) => void): this;
  }

  export const errors: {
    InvalidTarget: new (description?: string) => Error;
  };
}

declare module 'oidc-provider/lib/adapters/memory_adapter.js' {
  /** A factory for the provider's in-memory adapter bound to a fresh store. */
  export function createMemoryAdapter(clockTolerance?: number): (model: string) => unknown;
}
