// A real authorization server (node oidc-provider) for llamagate's end-to-end tests.
// Adapted from docs/reference/oauth-resource-server.md §A.2.
//
// Environment:
//   OP_HOST, OP_PORT   where to listen (default 127.0.0.1:9400); the issuer is http://HOST:PORT
//   RS_URL             the resource server's URL (llamagate's stack_uri): the RS256 resource and the
//                      audience of every token; RS_URL/es256 gives ES256 JWTs, RS_URL/opaque opaque tokens
//   OP_POLICY          JSON {client_id: {tier, scope}} replacing the default client policies
//   OP_KEYS_IN         stable signing keys (private JWKS file); default: fresh keys, so a restart rotates
//   OP_KEYS_OUT        writes the private JWKS, for forging test tokens
//   OP_KIDS            "rs256-kid,es256-kid": fixed kids for fresh keys (a second issuer reusing the
//                      first one's kid strings)
//   AT_TTL             access token lifetime in seconds (default 300)
import Provider, { errors } from 'oidc-provider';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';

const HOST = process.env.OP_HOST || '127.0.0.1';
const PORT = Number(process.env.OP_PORT || 9400);
const ISSUER = `http://${HOST}:${PORT}`;
const RS_RS256 = (process.env.RS_URL || 'http://127.0.0.1:8321').replace(/\/$/, '');
const RS_ES256 = `${RS_RS256}/es256`;
const RS_OPAQUE = `${RS_RS256}/opaque`;

const KIDS = (process.env.OP_KIDS || '').split(',');
const jwk = (alg, kid) => {
  const { privateKey } = alg === 'RS256'
    ? generateKeyPairSync('rsa', { modulusLength: 2048 })
    : generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: kid || `${alg.toLowerCase()}-${randomUUID().slice(0, 8)}`, alg, use: 'sig' };
};
const keys = process.env.OP_KEYS_IN
  ? JSON.parse(readFileSync(process.env.OP_KEYS_IN, 'utf8')).keys
  : [jwk('RS256', KIDS[0]), jwk('ES256', KIDS[1])];
if (process.env.OP_KEYS_OUT) writeFileSync(process.env.OP_KEYS_OUT, JSON.stringify({ keys }));

// Which scopes (and tier) each client may get. Requested scopes are filtered to this list.
const DEFAULT_POLICY = {
  'smollm-client': { tier: 'free', scope: 'model_smollm2_135m safety_standard' },
  'other-client': { tier: 'free', scope: 'model_llama_3_2_1b safety_standard' },
  'free-client': { tier: 'free', scope: 'model_llama_3_2_1b safety_standard' },
  'premium-client': {
    tier: 'premium',
    scope: 'model_smollm2_135m model_llama_3_2_1b model_llama_3_1_8b premium_access safety_relaxed',
  },
};
const POLICY = process.env.OP_POLICY ? JSON.parse(process.env.OP_POLICY) : DEFAULT_POLICY;

const clients = Object.keys(POLICY).map((clientId) => ({
  client_id: clientId,
  client_secret: `${clientId.replace(/-client$/, '')}-secret`,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  token_endpoint_auth_method: 'client_secret_basic',
}));
clients.push({
  client_id: 'rs-introspector', client_secret: 'rs-secret', grant_types: [], redirect_uris: [], response_types: [],
  token_endpoint_auth_method: 'client_secret_basic',
});

const provider = new Provider(ISSUER, {
  jwks: { keys },
  clients,
  clientAuthMethods: ['client_secret_basic', 'client_secret_post'],
  scopes: ['openid', 'offline_access'],
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    dPoP: { enabled: true },
    introspection: { enabled: true, allowedPolicy: async (ctx, client) => client.clientId === 'rs-introspector' },
    revocation: { enabled: true, allowedPolicy: async (ctx, client, token) => token.clientId === client.clientId },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => RS_RS256,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, ri, client) => {
        const base = { scope: POLICY[client.clientId]?.scope ?? '', accessTokenTTL: Number(process.env.AT_TTL || 300) };
        if (ri === RS_RS256) return { ...base, audience: RS_RS256, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'RS256' } } };
        if (ri === RS_ES256) return { ...base, audience: RS_RS256, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } };
        if (ri === RS_OPAQUE) return { ...base, audience: RS_RS256, accessTokenFormat: 'opaque' };
        throw new errors.InvalidTarget();
      },
    },
  },
  extraTokenClaims: async (ctx, token) => (POLICY[token.clientId] ? { tier: POLICY[token.clientId].tier } : undefined),
  ttl: { ClientCredentials: (ctx, token) => token.resourceServer?.accessTokenTTL || 300 },
});
provider.listen(PORT, HOST, () => console.log(`oidc-provider ready issuer=${ISSUER} resource=${RS_RS256}`));
