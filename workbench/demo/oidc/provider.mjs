// The demo profile's OpenID Connect provider: panva's certified oidc-provider, with a login
// page of its own that checks the accounts file (no devInteractions, which admit anyone).
//
//   node provider.mjs CONFIG.json
//
// CONFIG.json (written by workbench/demo/oidc/__init__.py, mode 0600):
//   {"issuer": "http://HOST:PORT", "port": N, "host": "0.0.0.0",
//    "clients": [{"client_id", "client_secret", "redirect_uris": [...],
//                 "token_endpoint_auth_method": "client_secret_post" (the default) | "client_secret_basic"}],
//    "accounts_file": "/path/accounts.json", "cookie_keys": ["..."], "jwks": {...} (optional)}
// Without "jwks" a signing key is generated once and kept in jwks.json beside CONFIG.json.
//
// accounts.json: {"bob": {"password": "...", "claims": {"preferred_username": "bob", ...}}}.
// It is read again at every login and every userinfo call, so a rewrite takes effect at once.

import { createHash, generateKeyPairSync, randomUUID, timingSafeEqual } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { dirname, join } from 'node:path';

import Provider from 'oidc-provider';

const HOUR = 3600;

function log(...words) {
  console.log(new Date().toISOString(), ...words);
}

function loadJwks(configPath, config) {
  if (config.jwks) return config.jwks;
  const path = join(dirname(configPath), 'jwks.json');
  if (existsSync(path)) return JSON.parse(readFileSync(path, 'utf8'));
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
  const jwks = { keys: [jwk] };
  writeFileSync(path, JSON.stringify(jwks), { mode: 0o600, flag: 'wx' });
  log('generated a signing key in', path);
  return jwks;
}

function readAccounts(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}

function sameSecret(given, expected) {
  const a = createHash('sha256').update(String(given)).digest();
  const b = createHash('sha256').update(String(expected)).digest();
  return timingSafeEqual(a, b);
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginPage(uid, { username = '', error = '' } = {}) {
  const message = error ? `<p class="error" role="alert">${escapeHtml(error)}</p>` : '';
  return `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>AI Factory login</title>
<style>body{font-family:sans-serif;max-width:24em;margin:4em auto}label,input,button{display:block;
width:100%;margin:.4em 0}.error{color:#a00;font-weight:bold}</style></head>
<body><h1>AI Factory login (demo identity provider)</h1>${message}
<form method="post" action="/interaction/${escapeHtml(uid)}/login" autocomplete="off">
<label for="username">Username</label>
<input id="username" name="username" required autofocus value="${escapeHtml(username)}">
<label for="password">Password</label>
<input id="password" name="password" type="password" required>
<button type="submit">Log in</button>
</form></body></html>`;
}

function send(res, status, html) {
  res.statusCode = status;
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.end(html);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 16384) throw new Error('form too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

// Consent for a registered client, granted without asking: the grant covers exactly what the
// provider found missing (as oidc-provider's own examples build it).
async function grantConsent(provider, req, res, details) {
  const { prompt, params, session } = details;
  let grant = details.grantId ? await provider.Grant.find(details.grantId) : undefined;
  if (!grant) grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  const consent = details.grantId ? {} : { grantId };
  log('consent granted:', session.accountId, 'to client', params.client_id);
  await provider.interactionFinished(req, res, { consent }, { mergeWithLastSubmission: true });
}

async function interaction(provider, accountsFile, req, res) {
  const url = new URL(req.url, 'http://provider.invalid');
  const [, , uid, action] = url.pathname.split('/');
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) return send(res, 400, '<p>This login page is out of date.</p>');
  const promptName = details.prompt.name;
  if (req.method === 'GET' && !action) {
    if (promptName === 'consent') return grantConsent(provider, req, res, details);
    return send(res, 200, loginPage(uid));
  }
  if (req.method === 'POST' && action === 'login' && promptName === 'login') {
    const form = await readForm(req);
    const username = form.get('username') || '';
    const account = readAccounts(accountsFile)[username];
    if (!account || !sameSecret(form.get('password') || '', account.password)) {
      log('login refused:', JSON.stringify(username));
      return send(res, 200, loginPage(uid, { username, error: 'Wrong username or password' }));
    }
    log('login:', username);
    const result = { login: { accountId: username } };
    return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  }
  return send(res, 405, '<p>Not allowed here.</p>');
}

function main() {
  const configPath = process.argv[2];
  if (!configPath) {
    console.error('usage: node provider.mjs CONFIG.json');
    process.exit(2);
  }
  const config = JSON.parse(readFileSync(configPath, 'utf8'));
  const accountsFile = config.accounts_file;
  const clients = config.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    redirect_uris: c.redirect_uris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: c.token_endpoint_auth_method || 'client_secret_post',
  }));

  const provider = new Provider(config.issuer, {
    clients,
    jwks: loadJwks(configPath, config),
    cookies: { keys: config.cookie_keys },
    scopes: ['openid', 'profile', 'email', 'eduperson_entitlement'],
    claims: {
      openid: ['sub'],
      profile: ['name', 'preferred_username'],
      email: ['email', 'email_verified'],
      eduperson_entitlement: ['eduperson_entitlement'],
    },
    // Read the accounts file afresh each time: a removed entitlement (or account) shows at once.
    async findAccount(ctx, id) {
      if (!Object.hasOwn(readAccounts(accountsFile), id)) return undefined;
      return {
        accountId: id,
        async claims() {
          const account = readAccounts(accountsFile)[id];
          return { ...(account ? account.claims : {}), sub: id };
        },
      };
    },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, i) => `/interaction/${i.uid}` },
    // Confidential clients (a client secret) may leave PKCE out; public ones must use it.
    pkce: { required: (ctx, client) => client.clientAuthMethod === 'none' },
    ttl: {
      AccessToken: HOUR,
      AuthorizationCode: 60,
      IdToken: HOUR,
      Interaction: HOUR,
      Session: HOUR,
      Grant: HOUR,
    },
  });

  const handle = provider.callback();
  const server = http.createServer((req, res) => {
    if (!req.url.startsWith('/interaction/')) return handle(req, res);
    interaction(provider, accountsFile, req, res).catch((err) => {
      log('interaction error:', err.name, err.message);
      if (res.headersSent) return res.end();
      const status = err.name === 'SessionNotFound' ? 400 : 500;
      return send(res, status, '<p>This login has expired or failed. Go back to the '
        + 'workbench and log in again.</p>');
    });
  });
  provider.on('server_error', (ctx, err) => log('server error:', err.message));
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  server.listen(config.port, config.host || '127.0.0.1', () => {
    log(`oidc-provider ${config.issuer} listening on ${config.host || '127.0.0.1'}:${config.port}`);
  });
}

main();
