#!/usr/bin/env bash
# scripts/install-deps.sh — install the Debian packages Causeway's build and tests need.
#
# Idempotent and quick when everything is present (one dpkg-query). Needs root (or sudo)
# only when something is missing. The AD lab's own packages (samba, slapd, ...) are
# installed by scripts/lab.sh, which knows how to keep Debian from starting system daemons.
#
#   pkg-config, libssl-dev          openssl-sys (TLS tooling, samael)
#   libxml2-dev, libxmlsec1-dev,    samael's xmlsec signing (SAML / WS-Fed)
#   libxmlsec1-openssl
#   libclang-dev                    bindgen in samael's build script
#   xmlsec1                         independent verification of our XML signatures in tests
#   libxml2-utils                   xmllint: metadata validated against the OASIS schemas
#   tinyproxy-bin                   a real HTTP CONNECT proxy for the agent's proxy test (binary only, no service)
set -euo pipefail

PKGS=(pkg-config libssl-dev curl xmlsec1 libxml2-utils tinyproxy-bin)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=()
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: missing ${missing[*]}; run as root or install them" >&2; exit 1; }
  SUDO=(sudo)
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 \
  || { "${SUDO[@]}" apt-get update -q >&2 && "${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2; }
