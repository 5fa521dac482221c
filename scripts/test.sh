#!/usr/bin/env bash
# scripts/test.sh -- Reservoir's single test command (the README's, and CI's via .ci/run).
#
# On Debian 12 as root it first installs the system packages the tests need
# when they are missing (libiscsi's tools and library; a C linker for rustc),
# then runs, from the repository root:
#   cargo fmt --all --check
#   cargo clippy --workspace --all-targets -- -D warnings
#   cargo test --workspace --no-fail-fast  (includes the iscsi-test-cu conformance run,
#                                  the libiscsi tool tests and the durability test)
# Every step runs even if an earlier one failed; the exit status is non-zero
# if any failed. The Rust toolchain comes from rust-toolchain.toml via rustup.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# The conformance test's debugging overrides must never redirect the real run.
unset RESERVOIR_CONFORMANCE_URL RESERVOIR_CONFORMANCE_RO_URL RESERVOIR_CONFORMANCE_SUITES

section() { printf '\n========== %s ==========\n' "$*"; }
failed=()
step() {   # step NAME COMMAND... : run, time, remember failure
    local name=$1 start=$SECONDS
    shift
    section "$name"
    echo "+ $*"
    if "$@"; then
        echo "---------- $name: ok ($((SECONDS - start)) s)"
    else
        echo "---------- $name: FAILED ($((SECONDS - start)) s)"
        failed+=("$name")
    fi
}

section "system packages"
# libiscsi-bin: iscsi-test-cu, iscsi-inq, iscsi-ls, iscsi-readcapacity16.
# libiscsi-dev: libiscsi.so for the tests' own initiator. gcc, libc6-dev: rustc's linker.
# iproute2: `ip netns` for the cluster partition test.
# g++: libfuzzer-sys compiles libFuzzer when the fuzz targets are checked.
packages=(libiscsi-bin libiscsi-dev gcc g++ libc6-dev iproute2)
missing=()
for pkg in "${packages[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]} == 0)); then
    echo "present: ${packages[*]}"
elif [[ $EUID -ne 0 ]]; then
    echo "missing Debian packages: ${missing[*]}" >&2
    echo "run this script as root, or: apt-get install -y ${missing[*]}" >&2
    exit 1
else
    echo "installing: ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
if ! command -v cargo >/dev/null; then
    echo "cargo not found: install rustup (https://rustup.rs); rust-toolchain.toml selects the version" >&2
    exit 1
fi
cargo --version

step "cargo fmt" cargo fmt --all --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings
# The fuzz targets live in their own workspace (cargo-fuzz runs them on
# nightly); checking them here keeps them building as the APIs move.
step "fuzz targets build" cargo check --manifest-path fuzz/Cargo.toml --bins
results=(${CARGO_TARGET_DIR:-target}/conformance-results{,-file}.txt)
rm -f "${results[@]}"
step "cargo test" cargo test --workspace --no-fail-fast

for file in "${results[@]}"; do
    if [[ -f $file ]]; then
        section "conformance ($(basename "$file" .txt))"
        sed -n '1,6p' "$file"
        echo "(per test: $file)"
    fi
done

section "summary"
if ((${#failed[@]})); then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
echo "all steps passed in $SECONDS s"
