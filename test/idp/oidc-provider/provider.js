// A tiny panva oidc-provider for test/idp: RFC 9068 JWT access tokens (resource
// indicators), back-channel logout and RP-initiated logout, the dev interactions for
// login and consent. It listens on 127.0.0.1 at a free port and prints one JSON line,
// {"msg":"oidc-provider listening","issuer":...}, once it serves.
//
// Environment: IDP_CLIENTS, a JSON array of client metadata (the test registers its
// relying parties here, with their backchannel_logout_uri); IDP_RESOURCE, the API the
// access tokens are for (their aud).
import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider from 'oidc-provider';

const clients = JSON.parse(process.env.IDP_CLIENTS || '[]');
const resource = process.env.IDP_RESOURCE || 'https://api.example';

// A signing key of this run only: nothing to keep between runs.
const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' };

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [signingKey] },
    cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
    findAccount: (ctx, id) => ({ accountId: id, claims: () => ({ sub: id }) }),
    features: {
      devInteractions: { enabled: true },
      backchannelLogout: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'api',
          audience: resource,
          accessTokenTTL: 600,
          accessTokenFormat: 'jwt',
        }),
      },
    },
    scopes: ['openid', 'api'],
    // oidc-provider refuses outgoing requests to special-use addresses (SSRF
    // protection), loopback included; revoked ingest runs on 127.0.0.1 here, so the
    // back-channel logout goes out through a plain fetch, to loopback only.
    fetch: (url, options) => {
      if (new URL(url).hostname !== '127.0.0.1') throw new Error(`refusing ${url}: this test IdP posts to loopback only`);
      const { dispatcher, ...rest } = options;
      return fetch(url, rest);
    },
  });
  // Every back-channel logout the provider sends, and how it went, for the test's log.
  provider.on('backchannel.success', (ctx, client) => log({ msg: 'backchannel logout sent', client: client.clientId }));
  provider.on('backchannel.error', (ctx, err, client) => log({ msg: 'backchannel logout failed', client: client.clientId, err: err.message }));
  provider.on('server_error', (ctx, err) => log({ msg: 'server error', err: err.message }));
  server.on('request', provider.callback());
  log({ msg: 'oidc-provider listening', issuer });
});

function log(rec) {
  process.stdout.write(`${JSON.stringify(rec)}\n`);
}

for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => server.close(() => process.exit(0)));
}
