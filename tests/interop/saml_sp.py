#!/usr/bin/env python3
"""A real SAML 2.0 service provider (pysaml2) driven from the command line.

The interop tests run it with the tools venv's interpreter
(${CAUSEWAY_TOOLS_DIR:-/opt/causeway-test-tools}/venv/bin/python, set up by
scripts/install-test-tools.sh) against Causeway's IdP. It plays the browser itself with
`requests`: it follows the IdP's redirects, fills in the login form, and feeds the
SAMLResponse of the IdP's auto-post page to pysaml2 with full validation (signed
Response and signed Assertion required, Destination / Recipient / Audience / time
conditions / InResponseTo checked by pysaml2). Nothing listens at --base-url: this
script stops following as soon as the IdP sends the browser there.

Subcommands (each prints one JSON object on stdout; an error exits non-zero with a
message on stderr):

  keygen   --key K --cert C [--cn NAME]
  metadata --entity-id ID --base-url URL --key K --cert C [--sign-requests] [--encrypt]
  login    --idp-metadata F --entity-id ID --base-url URL --key K --cert C --ca CA
           --user U --password-file P [--binding redirect|post] [--sign-requests]
           [--nameid-format persistent|transient|email|unspecified] [--then-logout]
           [--expect-error] [--encrypt] [--want-signed both|response|assertion]
           [--save-response FILE]
           (--encrypt: the metadata carries the key as an encryption key too, and the
           SP requires an encrypted assertion, decrypted by pysaml2 through xmlsec1;
           --want-signed: which signatures pysaml2 requires; --save-response: the
           SAMLResponse as received, for checks by other tools)
  idp-init    (same options; GET IDP/saml/idp-init?sp=ID, unsolicited response allowed)
  sso-twice   (same options; a second AuthnRequest in the same session must not show
               the login page)
  slo-chain   (same options and --second-entity-id ID2 --second-base-url URL2; signs in
               to both SPs, logs out from the first: the IdP must send the second a
               LogoutRequest on the way, then answer the first)
  passive     (same options; IsPassive without a session must come back as a signed
               NoPassive Response with no page shown; after a sign-in, IsPassive must
               get an assertion and ForceAuthn the login page)

The IdP's base URL is the origin of its SingleSignOnService Location in the metadata
(--idp-base overrides it). The password is read from the file and never printed.
"""

import argparse
import base64
import html.parser
import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.parse
import warnings

# pysaml2 touches cryptography's deprecated CFB mode at import time; keep stderr for errors.
warnings.filterwarnings("ignore", message=".*CFB.*")

try:
    import requests
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, samlp
    from saml2.client import Saml2Client
    from saml2.config import SPConfig
    from saml2.metadata import entity_descriptor
    from saml2.saml import (NAMEID_FORMAT_EMAILADDRESS, NAMEID_FORMAT_PERSISTENT,
                            NAMEID_FORMAT_TRANSIENT, NAMEID_FORMAT_UNSPECIFIED)
    from saml2.response import StatusNoPassive
    from saml2.sigver import verify_redirect_signature
    from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256
except ImportError as e:  # pragma: no cover - environment problem
    sys.exit(f"saml_sp: cannot import pysaml2/requests ({e}); run it with the tools venv's python "
             "(scripts/install-test-tools.sh)")

NAMEID_FORMATS = {
    "persistent": NAMEID_FORMAT_PERSISTENT,
    "transient": NAMEID_FORMAT_TRANSIENT,
    "email": NAMEID_FORMAT_EMAILADDRESS,
    "unspecified": NAMEID_FORMAT_UNSPECIFIED,
}
MAX_HOPS = 10
TIMEOUT = 30


class Fail(Exception):
    """An expected failure: message for stderr, non-zero exit."""


# ---------------------------------------------------------------------------- HTML


class Page(html.parser.HTMLParser):
    """Forms (action, method, inputs, buttons), the text of [role=alert] elements,
    <html lang>, and the page title. Attribute values come back entity-decoded."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
            "param", "source", "track", "wbr"}

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.forms = []
        self.alerts = []
        self.lang = None
        self.title = ""
        self._form = None
        self._alert_depth = []  # stack depth at which each open alert started
        self._alert_text = []
        self._depth = 0
        self._in_title = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        a = {k: (v if v is not None else "") for k, v in attrs}
        if tag == "html" and "lang" in a:
            self.lang = a["lang"]
        elif tag == "title":
            self._in_title = True
        elif tag == "form":
            self._form = {"action": a.get("action"), "method": a.get("method", "get").lower(),
                          "inputs": [], "buttons": []}
            self.forms.append(self._form)
        elif tag in ("input", "textarea", "select") and self._form is not None:
            self._form["inputs"].append({"name": a.get("name"), "type": a.get("type", "text").lower(),
                                         "value": a.get("value", "")})
            if a.get("type", "").lower() in ("submit", "image"):
                self._form["buttons"].append({"name": a.get("name"), "value": a.get("value", "")})
        elif tag == "button" and self._form is not None:
            if a.get("type", "submit").lower() == "submit":
                self._form["buttons"].append({"name": a.get("name"), "value": a.get("value", "")})
        if tag in self.VOID:
            return
        self._depth += 1
        if a.get("role") == "alert":
            self._alert_depth.append(self._depth)
            self._alert_text.append([])

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.handle_endtag(tag)

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if tag == "title":
            self._in_title = False
        if tag == "form":
            self._form = None
        if self._alert_depth and self._alert_depth[-1] == self._depth:
            self._alert_depth.pop()
            text = " ".join("".join(self._alert_text.pop()).split())
            if text:
                self.alerts.append(text)
        self._depth = max(0, self._depth - 1)

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        for parts in self._alert_text:
            parts.append(data)

    def close(self):
        super().close()
        while self._alert_text:  # unclosed alert elements
            self._alert_depth.pop()
            text = " ".join("".join(self._alert_text.pop()).split())
            if text:
                self.alerts.append(text)

    def form_with(self, name=None, input_type=None):
        for f in self.forms:
            for i in f["inputs"]:
                if (name is None or i["name"] == name) and (input_type is None or i["type"] == input_type):
                    return f
        return None


def form_fields(form, hidden_only=True):
    return {i["name"]: i["value"] for i in form["inputs"]
            if i["name"] and (i["type"] == "hidden" or not hidden_only)}


# ---------------------------------------------------------------------------- pysaml2


def sp_config(args, allow_unsolicited=False, with_metadata=True):
    base = args.base_url.rstrip("/")
    nameid = NAMEID_FORMATS[getattr(args, "nameid_format", None) or "persistent"]
    want_signed = getattr(args, "want_signed", None) or "both"
    xmlsec = shutil.which("xmlsec1")
    if not xmlsec:
        raise Fail("xmlsec1 is not on PATH (apt-get install xmlsec1; scripts/install-test-tools.sh)")
    conf = {
        "entityid": args.entity_id,
        "xmlsec_binary": xmlsec,
        "key_file": args.key,
        "cert_file": args.cert,
        "signing_algorithm": SIG_RSA_SHA256,
        "digest_algorithm": DIGEST_SHA256,
        "accepted_time_diff": 30,
        "allow_unknown_attributes": True,
        "service": {
            "sp": {
                "name": "Causeway interop SP (pysaml2)",
                "endpoints": {
                    "assertion_consumer_service": [(base + "/acs", BINDING_HTTP_POST)],
                    "single_logout_service": [(base + "/slo", BINDING_HTTP_REDIRECT)],
                },
                "name_id_format": [nameid],
                "want_response_signed": want_signed in ("both", "response"),
                "want_assertions_signed": want_signed in ("both", "assertion"),
                "want_assertions_or_response_signed": True,
                "authn_requests_signed": bool(getattr(args, "sign_requests", False)),
                # Front-channel LogoutRequests MUST be signed (SAML profiles 4.4.3.1).
                "logout_requests_signed": True,
                "allow_unsolicited": allow_unsolicited,
            }
        },
    }
    if getattr(args, "encrypt", False):
        conf["encryption_keypairs"] = [{"key_file": args.key, "cert_file": args.cert}]
    if with_metadata:
        conf["metadata"] = {"local": [args.idp_metadata]}
    c = SPConfig()
    c.load(conf)
    return c


class Flow:
    """One SP + one browser (requests.Session) talking to one IdP."""

    def __init__(self, args, allow_unsolicited=False):
        self.args = args
        for f in (args.idp_metadata, args.key, args.cert, args.ca, args.password_file):
            if not os.path.isfile(f):
                raise Fail(f"no such file: {f}")
        self.client = Saml2Client(config=sp_config(args, allow_unsolicited=allow_unsolicited))
        idps = list(self.client.metadata.identity_providers())
        if args.idp_entity_id:
            if args.idp_entity_id not in idps:
                raise Fail(f"{args.idp_entity_id} is not an IdP in {args.idp_metadata} ({idps})")
            self.idp = args.idp_entity_id
        elif len(idps) == 1:
            self.idp = idps[0]
        else:
            raise Fail(f"{args.idp_metadata} names {len(idps)} IdPs {idps}; pick one with --idp-entity-id")
        sso = self.client.metadata.single_sign_on_service(self.idp, BINDING_HTTP_REDIRECT) \
            or self.client.metadata.single_sign_on_service(self.idp, BINDING_HTTP_POST)
        if not sso:
            raise Fail(f"no SingleSignOnService for {self.idp} in {args.idp_metadata}")
        self.sso_location = sso[0]["location"]
        u = urllib.parse.urlsplit(self.sso_location)
        self.idp_base = (args.idp_base or f"{u.scheme}://{u.netloc}").rstrip("/")
        self.sp_base = args.base_url.rstrip("/")
        self.acs = self.sp_base + "/acs"
        self.slo = self.sp_base + "/slo"
        self.http = requests.Session()
        # No REQUESTS_CA_BUNDLE / proxy / netrc from the environment: the env's CA bundle
        # would otherwise take precedence over session.verify.
        self.http.trust_env = False
        self.http.verify = args.ca
        self.http.headers["User-Agent"] = "causeway-interop-saml-sp/1"
        with open(args.password_file, encoding="utf-8") as f:
            self._password = f.read().rstrip("\r\n")
        self.trace = []  # (method, url without query, status) of every hop

    # -- HTTP --------------------------------------------------------------------

    def _request(self, method, url, data=None):
        r = self.http.request(method, url, data=data, allow_redirects=False, timeout=TIMEOUT,
                              verify=self.args.ca)
        self.trace.append(f"{method} {url.split('?')[0]} -> {r.status_code}")
        return r

    def follow(self, method, url, data=None, stop_at=None):
        """Follows redirects until a page, or until the IdP sends the browser to this SP
        (or to any base URL in stop_at). Returns ("sp", url) or ("page", response)."""
        for _ in range(MAX_HOPS):
            if any(url.startswith(b + "/") or url == b for b in (stop_at or [self.sp_base])):
                return "sp", url
            r = self._request(method, url, data)
            if r.status_code in (301, 302, 303, 307, 308):
                loc = r.headers.get("Location")
                if not loc:
                    raise Fail(f"{r.status_code} without Location from {url}")
                url = urllib.parse.urljoin(r.url, loc)
                if r.status_code in (301, 302, 303):
                    method, data = "GET", None
                continue
            return "page", r
        raise Fail(f"more than {MAX_HOPS} redirects; trace: {self.trace}")

    def classify(self, r):
        """A 200 page from the IdP: ("saml", form, page), ("login", form, page) or ("other", None, page)."""
        page = Page(r.text)
        saml_form = page.form_with(name="SAMLResponse")
        if saml_form is not None:
            return "saml", saml_form, page
        login_form = page.form_with(input_type="password")
        if login_form is not None:
            return "login", login_form, page
        return "other", None, page

    def unexpected(self, what, r, page):
        alert = "; ".join(page.alerts) if page.alerts else None
        snippet = " ".join(r.text.split())[:600]
        return Fail(f"{what}: HTTP {r.status_code} at {r.url.split('?')[0]}"
                    + (f", alert: {alert!r}" if alert else "")
                    + f"; page starts: {snippet!r}; trace: {self.trace}")

    # -- steps -------------------------------------------------------------------

    def start_authn(self, binding, **extra):
        """Sends an AuthnRequest (extra: is_passive="true", force_authn="true").
        Returns (request id, relay state, first IdP answer)."""
        relay = "rs-" + secrets.token_urlsafe(12)
        b = BINDING_HTTP_POST if binding == "post" else BINDING_HTTP_REDIRECT
        req_id, info = self.client.prepare_for_authenticate(
            **extra,
            entityid=self.idp,
            relay_state=relay,
            binding=b,
            nameid_format=NAMEID_FORMATS[self.args.nameid_format],
            sign=bool(self.args.sign_requests),
            sigalg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256,
            response_binding=BINDING_HTTP_POST,
        )
        if b == BINDING_HTTP_REDIRECT:
            loc = dict(info["headers"])["Location"]
            return req_id, relay, self.follow("GET", loc)
        form = Page(info["data"]).form_with(name="SAMLRequest")
        return req_id, relay, self.follow("POST", info["url"], form_fields(form))

    def sign_in(self, answer):
        """From the IdP's first answer to its auto-post page. Returns
        (login_page_shown, acs_url, fields) or raises; with --expect-error returns
        ("error", alert) when the IdP shows an error instead."""
        login_shown = False
        for _ in range(3):  # the login page, perhaps once more after a CSRF/flow refresh
            kind, r = answer
            if kind == "sp":
                raise Fail(f"the IdP sent the browser to {r.split('?')[0]} without a SAMLResponse form; trace: {self.trace}")
            what, form, page = self.classify(r)
            if what == "saml":
                action = urllib.parse.urljoin(r.url, form["action"] or r.url)
                if form["method"] != "post":
                    raise Fail(f"the SAMLResponse form's method is {form['method']!r}, not post")
                return login_shown, action, form_fields(form, hidden_only=False), page
            if what == "other" or r.status_code != 200:
                if self.args.expect_error:
                    return "error", page, r
                raise self.unexpected("expected the login page or the SAMLResponse auto-post page", r, page)
            if login_shown:  # the login page came back after posting credentials
                if self.args.expect_error:
                    return "error", page, r
                raise self.unexpected("sign-in failed, the login page came back", r, page)
            login_shown = True
            names = {i["name"] for i in form["inputs"]}
            for needed in ("username", "password"):
                if needed not in names:
                    raise self.unexpected(f"the login form has no input named {needed!r}", r, page)
            if form["method"] != "post":
                raise self.unexpected(f"the login form's method is {form['method']!r}, not post", r, page)
            fields = form_fields(form)  # every hidden input (flow, csrf, ...) as the page gives it
            fields["username"] = self.args.user
            fields["password"] = self._password
            for b in form["buttons"]:
                if b["name"]:
                    fields[b["name"]] = b["value"]
                break
            action = urllib.parse.urljoin(r.url, form["action"] or r.url)
            answer = self.follow("POST", action, fields)
        raise Fail(f"sign-in did not finish; trace: {self.trace}")

    def sign_in_and_consume(self, binding, what="the sign-in"):
        """SP-initiated sign-in through to a validated assertion. Returns
        (login page shown, what consume() returns)."""
        req_id, relay, answer = self.start_authn(binding)
        res = self.sign_in(answer)
        if res[0] == "error":
            raise self.unexpected(f"{what} failed", res[2], res[1])
        login_shown, action, fields, _ = res
        return login_shown, self.consume(action, fields, req_id, relay)

    def consume(self, action, fields, req_id, relay, unsolicited=False):
        if action != self.acs:
            raise Fail(f"the IdP posts the SAMLResponse to {action}, not to this SP's ACS {self.acs}")
        outstanding = {} if unsolicited else {req_id: "/"}
        received = base64.b64decode(fields["SAMLResponse"])
        if getattr(self.args, "save_response", None):
            with open(self.args.save_response, "wb") as f:
                f.write(received)
        # Read before pysaml2 decrypts it in place: was the assertion encrypted as sent?
        encrypted = samlp.response_from_string(received.decode()).encrypted_assertion != []
        resp = self.client.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, outstanding)
        if resp is None:
            raise Fail("pysaml2 could not decode the SAMLResponse")
        if getattr(self.args, "encrypt", False) and not encrypted:
            raise Fail("--encrypt: the assertion came in clear text")
        info = resp.session_info()
        if resp.response.encrypted_assertion:  # pysaml2 records only plaintext assertions
            self.client.users.add_information_about_person(info)
        attrs = {}
        for k, v in (resp.get_identity() or {}).items():
            attrs[k] = [str(x) for x in v]
        raw = []
        for stmt in resp.assertion.attribute_statement:
            for a in stmt.attribute:
                raw.append({"name": a.name, "name_format": a.name_format, "friendly_name": a.friendly_name,
                            "values": [v.text for v in a.attribute_value]})
        in_resp_to = resp.in_response_to
        out = {
            "issuer": resp.issuer(),
            "name_id": resp.name_id.text if resp.name_id is not None else None,
            "name_id_format": resp.name_id.format if resp.name_id is not None else None,
            "name_id_sp_name_qualifier": getattr(resp.name_id, "sp_name_qualifier", None),
            "attributes": attrs,
            "attributes_raw": raw,
            "session_index": info.get("session_index"),
            "authn_context": [str(c[0]) for c in resp.authn_info()],
            "acs_url": action,
            "relay_state": fields.get("RelayState"),
            "relay_state_ok": (fields.get("RelayState") == relay) if relay is not None else None,
            "request_id": req_id,
            "in_response_to": in_resp_to,
            "in_response_to_ok": (in_resp_to is None or in_resp_to == "") if unsolicited else (in_resp_to == req_id),
            "signatures": f"signatures required ({getattr(self.args, 'want_signed', None) or 'both'}) and verified by pysaml2",
            "encrypted": encrypted,
        }
        self.last = resp
        return out

    def logout(self, peers=()):
        """SP-initiated SLO over HTTP-Redirect; parses the LogoutResponse. Peers are
        other SPs of the same browser session: when the IdP sends the browser to one of
        them with a LogoutRequest on the way, that SP answers it (pysaml2 verifies the
        request's signature) and the browser goes on."""
        resp = self.last
        name_id = resp.name_id
        results = self.client.do_logout(name_id, [self.idp], reason="", expire=None, sign=True,
                                        expected_binding=BINDING_HTTP_REDIRECT,
                                        sign_alg=SIG_RSA_SHA256, digest_alg=DIGEST_SHA256)
        binding, info = results[self.idp]
        if binding != BINDING_HTTP_REDIRECT:
            raise Fail(f"pysaml2 chose {binding} for SLO, not HTTP-Redirect")
        loc = dict(info["headers"])["Location"]
        stops = [self.sp_base] + [p.sp_base for p in peers]
        kind, r = self.follow("GET", loc, stop_at=stops)
        out = {"logout_binding_in": None, "peers_told": []}
        while kind == "sp":
            peer = next((p for p in peers if r.startswith(p.slo)), None)
            if peer is None:
                break
            out["peers_told"].append(peer.args.entity_id)
            kind, r = peer.answer_logout_request(r, stops)
        if kind == "sp":
            if not r.startswith(self.slo):
                raise Fail(f"after logout the IdP sent the browser to {r}, not to this SP's SLO URL {self.slo}")
            raw_query = urllib.parse.urlsplit(r).query
            q = dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True))
            if "SAMLResponse" not in q:
                raise Fail(f"the redirect to {self.slo} carries no SAMLResponse")
            lr = self.client.parse_logout_request_response(q["SAMLResponse"], BINDING_HTTP_REDIRECT)
            out["logout_binding_in"] = "redirect"
            out["logout_signature"] = self.redirect_signature(q, raw_query)
        else:
            what, form, page = self.classify(r) if r.status_code == 200 else ("other", None, Page(r.text))
            if what != "saml":
                raise self.unexpected("expected a LogoutResponse (redirect or auto-post form) after logout", r, page)
            action = urllib.parse.urljoin(r.url, form["action"] or r.url)
            if action != self.slo:
                raise Fail(f"the LogoutResponse form posts to {action}, not to this SP's SLO URL {self.slo}")
            fields = form_fields(form, hidden_only=False)
            lr = self.client.parse_logout_request_response(fields["SAMLResponse"], BINDING_HTTP_POST)
            out["logout_binding_in"] = "post"
            xml = base64.b64decode(fields["SAMLResponse"]).decode("utf-8")
            try:
                ok = self.client.sec.correctly_signed_logout_response(xml, must=True)
                out["logout_signature"] = "valid" if ok else "invalid"
            except Exception as e:  # unsigned or bad signature
                out["logout_signature"] = f"invalid or missing: {type(e).__name__}: {e}"
        if lr is None:
            raise Fail("pysaml2 could not decode the LogoutResponse")
        status = lr.response.status.status_code.value
        second = lr.response.status.status_code.status_code
        out.update({
            "logout_status": status,
            "logout_second_status": second.value if second is not None else None,
            "logout_ok": status == samlp.STATUS_SUCCESS,
            "logout_issuer": lr.issuer(),
            "logout_in_response_to_ok": lr.in_response_to in self.client.state,
        })
        if out["logout_in_response_to_ok"]:
            self.client.handle_logout_response(lr)
        out["sp_session_cleared"] = not self.client.is_logged_in(name_id)
        return out

    def answer_logout_request(self, url, stops):
        """The IdP sent the browser here with a LogoutRequest (HTTP-Redirect): pysaml2
        checks it, including the query signature, logs the user out locally and answers
        with a signed LogoutResponse, which the browser takes back to the IdP."""
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True))
        if "SAMLRequest" not in q:
            raise Fail(f"the IdP sent the browser to {url.split('?')[0]} without a SAMLRequest")
        if "Signature" not in q:
            raise Fail("the IdP's LogoutRequest is not signed")
        name_id = self.last.name_id
        http_args = self.client.handle_logout_request(
            q["SAMLRequest"], name_id, BINDING_HTTP_REDIRECT, sign=True, sign_alg=SIG_RSA_SHA256,
            digest_alg=DIGEST_SHA256, relay_state=q.get("RelayState"), sigalg=q.get("SigAlg"),
            signature=q.get("Signature"))
        self.logged_out_by_idp = not self.client.is_logged_in(name_id)
        loc = dict(http_args["headers"])["Location"]
        return self.follow("GET", loc, stop_at=stops)

    def redirect_signature(self, q, raw_query):
        """The signature of an HTTP-Redirect LogoutResponse: pysaml2's check (which
        re-encodes the values) and the check over the query string exactly as sent."""
        if "Signature" not in q:
            return "missing"
        certs = self.client.metadata.certs(self.idp, "idpsso", "signing")
        by_pysaml2 = any(verify_redirect_signature(q, self.client.sec.sec_backend, c) for _, c in certs)
        raw = {}
        for part in raw_query.split("&"):
            k, _, v = part.partition("=")
            raw[k] = part
        signed = "&".join(raw[k] for k in ("SAMLResponse", "RelayState", "SigAlg") if k in raw).encode()
        by_raw = any(_verify_raw(q["SigAlg"], c, signed, base64.b64decode(q["Signature"])) for _, c in certs)
        if by_pysaml2 and by_raw:
            return "valid"
        return f"pysaml2={'valid' if by_pysaml2 else 'invalid'} raw-query={'valid' if by_raw else 'invalid'}"

    def login_page_shown_now(self):
        """Starts a fresh AuthnRequest; True when the IdP asks for credentials."""
        _, _, answer = self.start_authn("redirect")
        kind, r = answer
        if kind == "sp":
            return False
        what, _, _ = self.classify(r)
        return what == "login"


def _verify_raw(sigalg, cert_b64, data, sig):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    algs = {
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": hashes.SHA256(),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": hashes.SHA384(),
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": hashes.SHA512(),
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1": hashes.SHA1(),
        "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": hashes.SHA256(),
    }
    if sigalg not in algs:
        return False
    key = x509.load_der_x509_certificate(base64.b64decode(cert_b64)).public_key()
    try:
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(sig, data, padding.PKCS1v15(), algs[sigalg])
        elif isinstance(key, ec.EllipticCurvePublicKey):
            from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
            n = len(sig) // 2  # XML DSig ECDSA signatures are r||s
            der = encode_dss_signature(int.from_bytes(sig[:n], "big"), int.from_bytes(sig[n:], "big"))
            key.verify(der, data, ec.ECDSA(algs[sigalg]))
        else:
            return False
        return True
    except Exception:
        return False


# ---------------------------------------------------------------------------- subcommands


def cmd_keygen(args):
    if os.path.exists(args.key) and os.path.exists(args.cert):
        return {"key": args.key, "cert": args.cert, "generated": False}
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", "3650",
                    "-subj", f"/CN={args.cn}", "-keyout", args.key, "-out", args.cert],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.chmod(args.key, 0o600)
    return {"key": args.key, "cert": args.cert, "generated": True}


def cmd_metadata(args):
    for f in (args.key, args.cert):
        if not os.path.isfile(f):
            raise Fail(f"no such file: {f} (make one with: saml_sp.py keygen --key K --cert C)")
    ed = entity_descriptor(sp_config(args, with_metadata=False))
    # pysaml2 adds an algsupport <Extensions> listing everything xmlsec1 can do (md5, dsa,
    # rsa-sha1, ...); this SP uses rsa-sha256 / sha256 only, so leave that list out.
    ed.extensions = None
    sys.stdout.write(str(ed) + "\n")
    return None


def _finish(flow, args, result):
    if args.then_logout:
        result.update(flow.logout())
        result["session_ended"] = flow.login_page_shown_now()
    result["trace"] = flow.trace
    return result


def _expect_error_result(res, flow):
    _, page, r = res
    if not page.alerts:
        raise flow.unexpected("--expect-error: the IdP's page has no [role=alert] element", r, page)
    return {"error_alert": page.alerts[0], "alerts": page.alerts, "status": r.status_code,
            "url": r.url.split("?")[0], "login_form_shown": page.form_with(input_type="password") is not None,
            "trace": flow.trace}


def cmd_login(args):
    flow = Flow(args)
    req_id, relay, answer = flow.start_authn(args.binding)
    res = flow.sign_in(answer)
    if res[0] == "error":
        return _expect_error_result(res, flow)
    if args.expect_error:
        raise Fail("--expect-error: the IdP answered with a SAMLResponse form instead of an error")
    login_shown, action, fields, _ = res
    out = flow.consume(action, fields, req_id, relay)
    out["login_page_shown"] = login_shown
    return _finish(flow, args, out)


def cmd_idp_init(args):
    flow = Flow(args, allow_unsolicited=True)
    url = f"{flow.idp_base}/saml/idp-init?sp={urllib.parse.quote(args.entity_id, safe='')}"
    res = flow.sign_in(flow.follow("GET", url))
    if res[0] == "error":
        return _expect_error_result(res, flow)
    if args.expect_error:
        raise Fail("--expect-error: the IdP answered with a SAMLResponse form instead of an error")
    login_shown, action, fields, _ = res
    out = flow.consume(action, fields, None, None, unsolicited=True)
    out["login_page_shown"] = login_shown
    return _finish(flow, args, out)


def cmd_sso_twice(args):
    flow = Flow(args)
    login1, first = flow.sign_in_and_consume(args.binding, "the first sign-in")
    req2, relay2, answer = flow.start_authn(args.binding)
    kind, r = answer
    if kind == "sp":
        raise Fail(f"the second AuthnRequest sent the browser straight to {r.split('?')[0]}")
    what, form, page = flow.classify(r)
    second_login_shown = what == "login"
    out = {"first": first, "first_login_page_shown": login1,
           "second_login_page_shown": second_login_shown}
    if what == "saml":
        acs = urllib.parse.urljoin(r.url, form["action"] or r.url)
        out["second"] = flow.consume(acs, form_fields(form, hidden_only=False), req2, relay2)
        out["second_validated"] = True
        out["same_session_index"] = out["second"]["session_index"] == first["session_index"]
        out["same_name_id"] = out["second"]["name_id"] == first["name_id"]
    elif what == "login":
        out["second_validated"] = False
    else:
        raise flow.unexpected("the second AuthnRequest got neither a login page nor a SAMLResponse", r, page)
    return _finish(flow, args, out)


def cmd_passive(args):
    flow = Flow(args)
    out = {}

    def answer_form(extra, what_for, must):
        """Sends an AuthnRequest with extra attributes; its answer must be a SAMLResponse
        form (no page). Returns (request id, relay state, form, response)."""
        req_id, relay, (kind, r) = flow.start_authn(args.binding, **extra)
        if kind == "sp":
            raise Fail(f"{what_for}: the IdP sent the browser to {r.split('?')[0]} without a form")
        what, form, page = flow.classify(r)
        if what != "saml":
            raise flow.unexpected(f"{what_for} must be answered with {must}, not a page", r, page)
        return req_id, relay, form, r

    def no_passive(extra, what_for):
        """The answer must be a signed NoPassive Response, as pysaml2 reads it."""
        req_id, relay, form, _ = answer_form(extra, what_for, "a NoPassive SAMLResponse")
        fields = form_fields(form, hidden_only=False)
        try:
            flow.client.parse_authn_request_response(fields["SAMLResponse"], BINDING_HTTP_POST, {req_id: "/"})
        except StatusNoPassive:
            return "NoPassive", fields.get("RelayState") == relay
        raise Fail(f"pysaml2 took the answer to {what_for} as a sign-in")

    # No session: the IdP must not show anything, and must say NoPassive.
    out["without_session"], out["without_session_relay_state_ok"] = no_passive(
        {"is_passive": "true"}, "IsPassive without a session")
    # Sign in; then IsPassive rides the session, IsPassive with ForceAuthn cannot be met,
    # and ForceAuthn alone asks again.
    _, first = flow.sign_in_and_consume(args.binding)
    req_id, relay, form, r = answer_form({"is_passive": "true"}, "IsPassive with a session", "an assertion")
    second = flow.consume(urllib.parse.urljoin(r.url, form["action"] or r.url),
                          form_fields(form, hidden_only=False), req_id, relay)
    out["with_session_name_id_ok"] = second["name_id"] == first["name_id"]
    out["passive_and_force_authn"], _ = no_passive(
        {"is_passive": "true", "force_authn": "true"}, "IsPassive with ForceAuthn")
    _, _, (kind, r) = flow.start_authn(args.binding, force_authn="true")
    out["force_authn_login_page_shown"] = kind == "page" and flow.classify(r)[0] == "login"
    out["trace"] = flow.trace
    return out


def cmd_slo_chain(args):
    """Signs in to this SP and to a second one in the same browser, then logs out from
    the first: the IdP must log the second out on the way, then answer the first."""
    first = Flow(args)
    second_args = argparse.Namespace(**vars(args))
    second_args.entity_id = args.second_entity_id
    second_args.base_url = args.second_base_url
    second = Flow(second_args)
    second.http = first.http  # one browser
    first.sign_in_and_consume(args.binding, "the first sign-in")
    second_login_shown, _ = second.sign_in_and_consume(args.binding, "the second sign-in")
    out = first.logout(peers=[second])
    out["second_login_page_shown"] = second_login_shown
    out["second_sp_session_cleared"] = getattr(second, "logged_out_by_idp", False)
    out["session_ended"] = first.login_page_shown_now()
    out["trace"] = first.trace + second.trace
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="saml_sp.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)

    k = sub.add_parser("keygen", help="make an RSA key and self-signed certificate unless both exist")
    k.add_argument("--key", required=True)
    k.add_argument("--cert", required=True)
    k.add_argument("--cn", default="causeway-interop-sp")

    def sp_args(sp):
        sp.add_argument("--entity-id", required=True)
        sp.add_argument("--base-url", required=True, help="this SP's base URL: ACS is BASE/acs, SLO BASE/slo")
        sp.add_argument("--key", required=True)
        sp.add_argument("--cert", required=True)
        sp.add_argument("--sign-requests", action="store_true")
        sp.add_argument("--nameid-format", choices=sorted(NAMEID_FORMATS), default="persistent")
        sp.add_argument("--encrypt", action="store_true",
                        help="publish the key for encryption too and require an encrypted assertion")
        sp.add_argument("--want-signed", choices=["both", "response", "assertion"], default="both")
        sp.add_argument("--save-response", help="write the SAMLResponse as received to this file")

    m = sub.add_parser("metadata", help="print this SP's metadata XML")
    sp_args(m)

    for name, helptext in (("login", "SP-initiated sign-in"), ("idp-init", "IdP-initiated sign-in"),
                           ("sso-twice", "sign in, then a second AuthnRequest must not prompt"),
                           ("passive", "IsPassive without and with a session, then ForceAuthn"),
                           ("slo-chain", "sign in to two SPs, log out from the first: both end")):
        s = sub.add_parser(name, help=helptext)
        sp_args(s)
        s.add_argument("--idp-metadata", required=True)
        s.add_argument("--idp-entity-id", help="when the metadata names several IdPs")
        s.add_argument("--idp-base", help="IdP base URL (default: origin of its SSO Location)")
        s.add_argument("--ca", required=True, help="CA file to verify the IdP's TLS certificate")
        s.add_argument("--user", required=True)
        s.add_argument("--password-file", required=True)
        s.add_argument("--binding", choices=["redirect", "post"], default="redirect")
        s.add_argument("--then-logout", action="store_true")
        s.add_argument("--second-entity-id", help="slo-chain: the second SP's entity id")
        s.add_argument("--second-base-url", help="slo-chain: the second SP's base URL")
        s.add_argument("--expect-error", action="store_true",
                       help="the sign-in must fail: print the [role=alert] text and exit 0")

    args = p.parse_args(argv)
    handlers = {"keygen": cmd_keygen, "metadata": cmd_metadata, "login": cmd_login,
                "idp-init": cmd_idp_init, "sso-twice": cmd_sso_twice, "passive": cmd_passive,
                "slo-chain": cmd_slo_chain}
    try:
        out = handlers[args.cmd](args)
    except Fail as e:
        print(f"saml_sp {args.cmd}: {e}", file=sys.stderr)
        return 1
    except requests.RequestException as e:
        print(f"saml_sp {args.cmd}: HTTP error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as e:
        print(f"saml_sp {args.cmd}: {e.cmd[0]} failed: {e.stderr.decode(errors='replace').strip()}", file=sys.stderr)
        return 1
    except Exception as e:  # pysaml2 validation errors land here
        print(f"saml_sp {args.cmd}: {type(e).__module__}.{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if out is not None:
        print(json.dumps(out, indent=2, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
