#!/usr/bin/env bash
# scripts/fuzz.sh — run every fuzz target under fuzz/ with memory and time limits.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#
# Limits (a run that exceeds one is a finding, saved under fuzz/artifacts/TARGET/):
#   -rss_limit_mb=256      the whole fuzzing process, sanitizer included (AddressSanitizer's
#                          quarantine of freed memory is held to 16 MB so that the figure
#                          is the code's, not the sanitizer's)
#   -malloc_limit_mb=32    any single allocation (the endpoint's per-request guide)
#   -timeout=1             one input may take at most 1 s (release guide: 100 ms; the
#                          sanitizer build is several times slower)
# Installs cargo-fuzz from crates.io when missing. The stable toolchain builds it with
# RUSTC_BOOTSTRAP=1 (cargo-fuzz needs -Z flags).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
shift || true
export RUSTC_BOOTSTRAP=1
export ASAN_OPTIONS="${ASAN_OPTIONS:-quarantine_size_mb=16}"
command -v cargo-fuzz >/dev/null || cargo install --locked cargo-fuzz >&2
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
# Build first, so that a build failure is reported as such and not as a finding.
for t in "${targets[@]}"; do
  cargo fuzz build "$t" >&2 || { echo "fuzz.sh: $t does not build" >&2; exit 2; }
done
failed=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  echo "fuzz.sh: $t for ${secs}s" >&2
  if ! cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" \
      -rss_limit_mb=256 -malloc_limit_mb=32 -timeout=1 -print_final_stats=1 2>"/tmp/fuzz-$t.log"; then
    echo "fuzz.sh: $t FOUND A PROBLEM (see /tmp/fuzz-$t.log and fuzz/artifacts/$t/)" >&2
    tail -40 "/tmp/fuzz-$t.log" >&2
    failed=1
  else
    grep -E "stat::number_of_executed_units|stat::peak_rss_mb" "/tmp/fuzz-$t.log" | sed "s/^/fuzz.sh: $t: /" >&2
  fi
done
exit $failed
