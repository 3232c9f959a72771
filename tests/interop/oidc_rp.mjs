// tests/interop/oidc_rp.mjs — an independent OpenID Connect relying party (npm
// openid-client, from scripts/install-test-tools.sh) against Causeway's provider, as a
// confidential client (client_secret_basic):
//
//   NODE_EXTRA_CA_CERTS=ca.pem node oidc_rp.mjs --issuer URL --client-id ID
//       --client-secret-file F --redirect-uri URI --post-logout-uri URI --user UPN
//       --password-file P
//
// Discovery; code + PKCE S256 with state and nonce (the browser is fetch with a cookie
// jar, filling in Causeway's sign-in form); the code grant with openid-client's ID token
// validation (JWKS signature, iss, aud, exp, nonce) and RFC 9207 iss check; UserInfo;
// refresh with rotation (a reused refresh token refused); introspection; revocation;
// RP-initiated logout. Prints one JSON object of named checks; exits 1 if one failed.
// The password and secret are never printed.
import path from "node:path";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const TOOLS = process.env.CAUSEWAY_TOOLS_DIR || "/opt/causeway-test-tools";
const req = createRequire(path.join(TOOLS, "node-oidc", "package.json"));
const client = await import(pathToFileURL(req.resolve("openid-client")).href);

const args = {};
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) {
  const m = /^--(issuer|client-id|client-secret-file|redirect-uri|post-logout-uri|user|password-file)$/.exec(argv[i]);
  if (!m || i + 1 >= argv.length) throw new Error(`unexpected argument ${argv[i]}`);
  args[m[1]] = argv[i + 1];
}
const secret = readFileSync(args["client-secret-file"], "utf8").trim();
const password = readFileSync(args["password-file"], "utf8").replace(/\r?\n$/, "");
const checks = {};

// A browser: a cookie jar over fetch, no redirects followed.
const jar = new Map();
async function browse(url, init = {}) {
  const headers = new Headers(init.headers || {});
  if (jar.size) headers.set("cookie", [...jar].map(([k, v]) => `${k}=${v}`).join("; "));
  const r = await fetch(url, { ...init, headers, redirect: "manual" });
  for (const c of r.headers.getSetCookie()) {
    const [kv] = c.split(";");
    const i = kv.indexOf("=");
    const [k, v] = [kv.slice(0, i), kv.slice(i + 1)];
    if (v === "" || /max-age=0/i.test(c)) jar.delete(k); else jar.set(k, v);
  }
  return r;
}
const hidden = (html, name) => {
  const m = new RegExp(`name="${name}" value="([^"]*)"`).exec(html);
  return m ? m[1].replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&") : null;
};
// Follows the provider's redirects; returns the first one that leaves it.
async function toClient(url) {
  let u = url;
  for (let i = 0; i < 10; i++) {
    const r = await browse(u);
    if (r.status !== 303 && r.status !== 302) return { page: await r.text(), url: u };
    u = new URL(r.headers.get("location"), u).href;
    if (!u.startsWith(args.issuer)) return { back: u };
  }
  throw new Error("too many redirects");
}

try {
  const config = await client.discovery(new URL(args.issuer), args["client-id"], undefined,
    client.ClientSecretBasic(secret));
  checks.discovery = config.serverMetadata().issuer === args.issuer;

  const verifier = client.randomPKCECodeVerifier();
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: args["redirect-uri"], scope: "openid profile email offline_access",
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: "S256",
    state, nonce,
  });
  const { page } = await toClient(authUrl.href);
  checks.sign_in_page = page.includes('id="password"');
  const form = new URLSearchParams({ flow: hidden(page, "flow"), csrf: hidden(page, "csrf"), username: args.user, password });
  const posted = await browse(`${args.issuer}/login`, { method: "POST", body: form,
    headers: { "content-type": "application/x-www-form-urlencoded" } });
  const back = posted.headers.get("location") || "";
  checks.redirected_to_client = posted.status === 303 && back.startsWith(args["redirect-uri"] + "?");

  const tokens = await client.authorizationCodeGrant(config, new URL(back), {
    pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
  });
  const claims = tokens.claims();
  checks.id_token_validated = claims.iss === args.issuer && claims.aud === args["client-id"] && claims.nonce === nonce;
  const info = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
  checks.userinfo = info.preferred_username === args.user && info.email === args.user;

  const refreshed = await client.refreshTokenGrant(config, tokens.refresh_token);
  checks.refresh_rotates = !!refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token;
  checks.refreshed_same_user = refreshed.claims().sub === claims.sub;
  try {
    await client.refreshTokenGrant(config, tokens.refresh_token);
    checks.refresh_reuse_refused = false;
  } catch (e) {
    checks.refresh_reuse_refused = e.error === "invalid_grant";
  }

  // The reuse revoked the family: a second sign-in (the SSO session answers at once).
  const state2 = client.randomState();
  const auth2 = client.buildAuthorizationUrl(config, {
    redirect_uri: args["redirect-uri"], scope: "openid profile", state: state2,
    code_challenge: await client.calculatePKCECodeChallenge(verifier), code_challenge_method: "S256",
  });
  const { back: back2 } = await toClient(auth2.href);
  checks.sso_without_page = !!back2;
  const t2 = await client.authorizationCodeGrant(config, new URL(back2), { pkceCodeVerifier: verifier, expectedState: state2 });
  const intro = await client.tokenIntrospection(config, t2.access_token);
  checks.introspection_active = intro.active === true && intro.sub === claims.sub;
  await client.tokenRevocation(config, t2.access_token);
  checks.introspection_inactive_after_revocation = (await client.tokenIntrospection(config, t2.access_token)).active === false;

  const end = client.buildEndSessionUrl(config, { id_token_hint: t2.id_token, post_logout_redirect_uri: args["post-logout-uri"], state: "bye" });
  const confirm = await (await browse(end.href)).text();
  const out = await browse(`${args.issuer}/logout`, { method: "POST",
    body: new URLSearchParams({ csrf: hidden(confirm, "csrf"), next: hidden(confirm, "next") }),
    headers: { "content-type": "application/x-www-form-urlencoded" } });
  checks.logout_returns_to_client = out.headers.get("location") === `${args["post-logout-uri"]}?state=bye`;
} catch (e) {
  console.error(`oidc_rp.mjs: ${e.name}: ${e.message}${e.error ? ` (${e.error}: ${e.error_description})` : ""}`);
  checks.completed = false;
}
console.log(JSON.stringify({ checks }));
process.exitCode = Object.values(checks).every(Boolean) ? 0 : 1;
