"""tests/interop/oidc_rp.py — an independent OpenID Connect relying party (authlib, from
scripts/install-test-tools.sh) against Causeway's provider, as a confidential client:

  oidc_rp.py --issuer URL --ca CA --client-id ID --client-secret-file F
             --redirect-uri URI --post-logout-uri URI --user UPN --password-file P

Discovery; the code flow with PKCE S256, state and nonce (the "browser" is a requests
session that fills in Causeway's sign-in form); the token request (client_secret_basic);
ID token validation by authlib (signature against the JWKS, iss, aud, exp, nonce,
at_hash); UserInfo; introspection and revocation (RFC 7662, RFC 7009); RP-initiated
logout back to the registered URI with its state. Prints one JSON object of named checks
on stdout and exits 1 if any failed; the password and secret are never printed.
"""
import argparse
import html
import json
import re
import sys
import warnings
from urllib.parse import parse_qs, urlencode, urljoin, urlparse

warnings.filterwarnings("ignore", module="authlib")
import requests  # noqa: E402
from authlib.common.security import generate_token  # noqa: E402
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402
from authlib.jose import JsonWebKey, jwt  # noqa: E402
from authlib.oidc.core import CodeIDToken  # noqa: E402


def hidden(page, name):
    m = re.search(r'name="%s" value="([^"]*)"' % re.escape(name), page)
    return html.unescape(m.group(1)) if m else None


def follow(browser, url, base):
    """GETs url, following redirects within the provider; returns the last response
    and the first Location that leaves it (the client's redirect URI), if any."""
    for _ in range(10):
        r = browser.get(url, allow_redirects=False)
        if r.status_code in (302, 303):
            loc = urljoin(url, r.headers["location"])
            if not loc.startswith(base):
                return r, loc
            url = loc
            continue
        return r, None
    raise RuntimeError("too many redirects")


def main():
    ap = argparse.ArgumentParser()
    for a in ("issuer", "ca", "client-id", "client-secret-file", "redirect-uri",
              "post-logout-uri", "user", "password-file"):
        ap.add_argument("--" + a, required=True)
    args = ap.parse_args()
    secret = open(args.client_secret_file).read().strip()
    password = open(args.password_file).read().rstrip("\n")
    checks = {}

    http = requests.Session()
    http.trust_env = False
    http.verify = args.ca
    disc = http.get(args.issuer + "/.well-known/openid-configuration").json()
    checks["discovery_issuer"] = disc["issuer"] == args.issuer
    jwks = JsonWebKey.import_key_set(http.get(disc["jwks_uri"]).json())

    rp = OAuth2Session(args.client_id, secret, scope="openid profile email groups offline_access",
                       redirect_uri=args.redirect_uri, code_challenge_method="S256",
                       token_endpoint_auth_method="client_secret_basic")
    rp.trust_env = False
    rp.verify = args.ca
    verifier = generate_token(64)
    nonce = generate_token(20)
    url, state = rp.create_authorization_url(disc["authorization_endpoint"], nonce=nonce,
                                             code_verifier=verifier)

    browser = requests.Session()
    browser.trust_env = False
    browser.verify = args.ca
    page, _ = follow(browser, url, args.issuer)
    checks["sign_in_page"] = page.status_code == 200 and 'id="password"' in page.text
    r = browser.post(args.issuer + "/login", data={
        "flow": hidden(page.text, "flow"), "csrf": hidden(page.text, "csrf"),
        "username": args.user, "password": password}, allow_redirects=False)
    back = r.headers.get("location", "")
    checks["redirected_to_client"] = r.status_code == 303 and back.startswith(args.redirect_uri + "?")
    q = parse_qs(urlparse(back).query)
    checks["state_returned"] = q.get("state") == [state]
    checks["iss_returned"] = q.get("iss") == [args.issuer]

    token = rp.fetch_token(disc["token_endpoint"], authorization_response=back,
                           code_verifier=verifier)
    claims = jwt.decode(token["id_token"], jwks, claims_cls=CodeIDToken,
                        claims_options={"iss": {"essential": True, "value": args.issuer}},
                        claims_params={"nonce": nonce, "client_id": args.client_id,
                                       "access_token": token["access_token"]})
    try:
        claims.validate()
        checks["id_token_valid"] = True
    except Exception as e:  # noqa: BLE001 — reported as a failed check
        print(f"id token: {e}", file=sys.stderr)
        checks["id_token_valid"] = False
    checks["id_token_has_at_hash"] = "at_hash" in claims and "auth_time" in claims

    info = rp.get(disc["userinfo_endpoint"]).json()
    checks["userinfo_sub_matches"] = info.get("sub") == claims["sub"]
    checks["userinfo_username"] = info.get("preferred_username") == args.user

    first_refresh = token["refresh_token"]
    token = rp.refresh_token(disc["token_endpoint"], refresh_token=first_refresh)
    checks["refresh_rotates"] = token.get("refresh_token") not in (None, first_refresh)
    refreshed = jwt.decode(token["id_token"], jwks, claims_cls=CodeIDToken,
                           claims_options={"iss": {"essential": True, "value": args.issuer}},
                           claims_params={"client_id": args.client_id,
                                          "access_token": token["access_token"]})
    refreshed.validate()
    checks["refreshed_id_token_same_user"] = refreshed["sub"] == claims["sub"]
    reuse = http.post(disc["token_endpoint"], auth=(args.client_id, secret),
                      data={"grant_type": "refresh_token", "refresh_token": first_refresh})
    checks["refresh_reuse_refused"] = reuse.status_code == 400 and reuse.json().get("error") == "invalid_grant"
    # The reuse revoked the family: sign in again for the rest.
    url, state = rp.create_authorization_url(disc["authorization_endpoint"], nonce=nonce,
                                             code_verifier=verifier)
    r, back = follow(browser, url, args.issuer)
    token = rp.fetch_token(disc["token_endpoint"], authorization_response=back,
                           code_verifier=verifier)

    intro = rp.introspect_token(disc["introspection_endpoint"], token=token["access_token"]).json()
    checks["introspection_active"] = intro.get("active") is True and intro.get("sub") == claims["sub"]
    rev = rp.revoke_token(disc["revocation_endpoint"], token=token["access_token"],
                          token_type_hint="access_token")
    checks["revocation_ok"] = rev.status_code == 200
    intro = rp.introspect_token(disc["introspection_endpoint"], token=token["access_token"]).json()
    checks["introspection_inactive_after_revocation"] = intro == {"active": False}
    checks["userinfo_refused_after_revocation"] = rp.get(disc["userinfo_endpoint"]).status_code == 401

    logout = disc["end_session_endpoint"] + "?" + urlencode({
        "id_token_hint": token["id_token"], "post_logout_redirect_uri": args.post_logout_uri,
        "state": "bye"})
    page = browser.get(logout, allow_redirects=False)
    r = browser.post(args.issuer + "/logout", data={
        "csrf": hidden(page.text, "csrf"), "next": hidden(page.text, "next")},
        allow_redirects=False)
    checks["logout_returns_to_client"] = r.headers.get("location") == args.post_logout_uri + "?state=bye"
    home = browser.get(args.issuer + "/", allow_redirects=False)
    checks["session_ended"] = home.status_code == 303

    print(json.dumps({"checks": checks}, sort_keys=True))
    sys.exit(0 if all(checks.values()) else 1)


if __name__ == "__main__":
    main()
