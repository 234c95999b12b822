#!/usr/bin/env bash
# The release (`make release`): in dist/,
#   ib-oauth-gateway-VERSION-TARGET.tar.gz   the production binary (no mock platform, `dist` profile: debug
#                                            information stripped, ibgw_build_info{git_sha} set from git) with
#                                            LICENSE, README.md, CHANGELOG.md, conf/ and deploy/
#   ib-oauth-gateway-VERSION.cdx.json        the CycloneDX SBOM of that build's dependencies (cargo cyclonedx)
#   SHA256SUMS                               both files' SHA-256 (`sha256sum -c SHA256SUMS` checks them)
# after `cargo deny check licenses bans sources` (deny.toml) has passed. cargo-deny and cargo-cyclonedx are
# installed from crates.io (`cargo install --locked`) when missing: minutes on a small machine, once.
#
# Advisories (`cargo deny check advisories`) need the RustSec database from the network; run that in a CI that
# can fetch it. VERSION is Cargo.toml's; a tree with uncommitted changes gets a "-dirty" git_sha.
#
# Usage: ./scripts/release.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh

CARGO_DENY_VERSION=0.20.2
CARGO_CYCLONEDX_VERSION=0.5.9

ensure_build_deps
ensure_cargo_tool cargo-deny "$CARGO_DENY_VERSION"
ensure_cargo_tool cargo-cyclonedx "$CARGO_CYCLONEDX_VERSION"

version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | head -n 1)
target=$(rustc -vV | sed -n 's/^host: //p')
sha=$(git rev-parse --short=12 HEAD)
if ! git diff --quiet HEAD --; then
    sha="$sha-dirty"
fi
if ! grep -q "^## \[$version\]" CHANGELOG.md; then
    printf 'error: CHANGELOG.md has no "## [%s]" section: say what this release changes first\n' "$version" >&2
    exit 1
fi
name="ib-oauth-gateway-$version-$target"
out=dist
bin="${CARGO_TARGET_DIR:-target}/dist/ib-oauth-gateway"

printf '==> cargo deny check licenses bans sources\n'
cargo deny --all-features check licenses bans sources

printf '==> build %s (git_sha %s)\n' "$name" "$sha"
IBGW_GIT_SHA="$sha" cargo build --profile dist --locked --no-default-features
if readelf -S "$bin" | grep -q '\.debug_info'; then
    printf 'error: %s still has debug information\n' "$bin" >&2
    exit 1
fi
if "$bin" mock-platform --help >/dev/null 2>&1; then
    printf 'error: %s has the mock-platform command\n' "$bin" >&2
    exit 1
fi

rm -rf "$out"
mkdir -p "$out/$name"
install -m 0755 "$bin" "$out/$name/ib-oauth-gateway"
cp -r LICENSE README.md CHANGELOG.md conf deploy "$out/$name/"
# Reproducible archive: sorted names, no owner, the commit's time.
mtime=$(git log -1 --format=%cI)
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="$mtime" -C "$out" -czf "$out/$name.tar.gz" "$name"
rm -rf "${out:?}/$name"

printf '==> SBOM\n'
cargo cyclonedx --format json --no-default-features --target "$target" \
    --override-filename "ib-oauth-gateway-$version.cdx"
mv "ib-oauth-gateway-$version.cdx.json" "$out/"

(cd "$out" && sha256sum "$name.tar.gz" "ib-oauth-gateway-$version.cdx.json" >SHA256SUMS)
printf '==> %s\n' "$out"
ls -l "$out"
cat "$out/SHA256SUMS"
