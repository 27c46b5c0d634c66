import type { JSONWebKeySet } from 'jose';
import { FileKeyStore } from '../integrity';
import type { TrustSource } from './channel';

/**
 * Embedded mode: every producer of one installation signs with the keyring in `<dataDir>/keys/signing`,
 * so a subscriber trusts exactly the public keys found there (current and retired). Read fresh on
 * each call: the subscriber calls again only when an unknown kid arrives.
 */
export function trustKeyDirectory(dir: string): TrustSource {
  const store = new FileKeyStore(dir);
  return async (): Promise<JSONWebKeySet> => ({
    keys: (await store.list()).map((k) => ({ ...k.publicJwk, kid: k.kid, alg: 'EdDSA', use: 'sig' })),
  });
}
