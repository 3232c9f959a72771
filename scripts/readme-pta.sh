#!/usr/bin/env bash
# Runs the README's "Pass-through authentication in five steps" block as written against the
# lab's Samba DC, and fails if any step fails or the last sign-in does not go through an agent.
# Only names are substituted: idp.example.com -> a loopback address of its own, the example
# domain, DC and CA -> the lab's, /etc/causeway and /var/lib -> a scratch directory. The two
# long-running commands (serve, agent run) are started in the background and waited for.
#
#   scripts/readme-pta.sh            # the lab's facts from scripts/lab.sh (started if needed)
#   CAUSEWAY_BIN=path/to/causeway    # the binary to test [default: target/debug/causeway]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=${CAUSEWAY_BIN:-$root/target/debug/causeway}
if [ ! -x "$bin" ]; then
    echo "readme-pta: no causeway binary at $bin (cargo build, or set CAUSEWAY_BIN)" >&2
    exit 2
fi
if [ -z "${AD_LDAPS_URL:-}" ]; then
    while IFS='=' read -r k v; do
        case $k in AD_*) export "$k=$v" ;; esac
    done < <("$root/scripts/lab.sh" start)
fi
for v in AD_LDAPS_URL AD_CA_CERT AD_DNS_DOMAIN AD_ALICE_UPN AD_ALICE_PASSWORD; do
    if [ -z "${!v:-}" ]; then
        echo "readme-pta: the lab's $v is not set" >&2
        exit 2
    fi
done

# The block: from the section's first ```sh fence to the closing fence.
block=$(awk '
    /^## Pass-through authentication in five steps/ { in_section = 1; next }
    in_section && /^## / { exit }
    in_section && /^```sh$/ { in_block = 1; next }
    in_block && /^```$/ { exit }
    in_block { print }
' "$root/README.md")
if [ -z "$block" ]; then
    echo "readme-pta: no shell block under the README's PTA section" >&2
    exit 2
fi

pids=()
work=""
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    pids=()
    if [ -n "$work" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

# One attempt on loopback address $1; exit status 75 when that address:port is taken.
attempt() {
    local addr=$1
    work=$(mktemp -d)
    mkdir -p "$work/bin" "$work/var/lib"
    ln -s "$bin" "$work/bin/causeway"
    local script
    script=$(printf '%s\n' "$block" | sed \
        -e "s#/etc/causeway/ad-ca.pem#$AD_CA_CERT#g" \
        -e "s#/etc/causeway#$work/etc/causeway#g" \
        -e "s#/var/lib/#$work/var/lib/#g" \
        -e "s#ldaps://dc1.corp.example.com:636#$AD_LDAPS_URL#g" \
        -e "s#alice@corp.example.com#$AD_ALICE_UPN#g" \
        -e "s#corp.example.com#$AD_DNS_DOMAIN#g" \
        -e "s#idp.example.com#$addr#g" \
        -e "s#0.0.0.0:8443#$addr:8443#g" \
        -e "s#127.0.0.1:9464#$addr:9464#g" \
        -e 's#^\(causeway serve .*\)$#\1 >serve.log 2>\&1 \& started $! serve.log; wait_for healthz#' \
        -e 's#^\(causeway agent run .*\)$#\1 >agent.log 2>\&1 \& started $! agent.log; wait_for agent#')
    cat >"$work/run.sh" <<PRELUDE
set -euo pipefail
export PATH="$work/bin:\$PATH"
export PW="\$AD_ALICE_PASSWORD"
started() { echo "\$1" >>"$work/pids"; last_pid=\$1; last_log=\$2; }
health() { curl -fsS --max-time 5 --cacert causeway-data/ca/ca.pem "https://$addr:8443/healthz" 2>/dev/null; }
wait_for() {
    for _ in \$(seq 1 300); do
        if ! kill -0 "\$last_pid" 2>/dev/null; then
            cat "\$last_log" >&2
            if grep -q "cannot listen" "\$last_log"; then exit 75; fi
            exit 1
        fi
        case \$1 in
            healthz) if health >/dev/null; then return; fi ;;
            agent) if health | grep -q '"agents_connected":1'; then return; fi ;;
        esac
        sleep 0.2
    done
    echo "readme-pta: \$1 not ready after 60 s" >&2
    cat "\$last_log" >&2
    exit 1
}
PRELUDE
    printf '%s\n' "$script" >>"$work/run.sh"
    local rc=0
    (cd "$work" && bash "$work/run.sh") >"$work/out.txt" 2>&1 || rc=$?
    if [ -f "$work/pids" ]; then mapfile -t pids <"$work/pids"; fi
    if [ "$rc" -ne 0 ]; then
        cat "$work/out.txt"
        if [ "$rc" -ne 75 ]; then
            for f in serve.log agent.log; do
                if [ -f "$work/$f" ]; then echo "--- $f"; tail -n 40 "$work/$f"; fi
            done
        fi
        return "$rc"
    fi
    cat "$work/out.txt"
    # The sign-in went through an agent, as the README promises.
    grep -q '^outcome: success$' "$work/out.txt"
    grep -q '^path: pass-through$' "$work/out.txt"
}

for _ in 1 2 3 4 5; do
    addr="127.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1)).$((RANDOM % 250 + 1))"
    rc=0
    attempt "$addr" || rc=$?
    if [ "$rc" -ne 75 ]; then
        if [ "$rc" -eq 0 ]; then echo "readme-pta: the README's five PTA steps work as written"; fi
        exit "$rc"
    fi
    cleanup
    echo "readme-pta: $addr:8443 is taken; another address" >&2
done
exit 1
