#!/usr/bin/env bash
# Builds the release tarball dist/midcert-<version>-linux-<arch>.tar.gz (docs/packaging.md):
#
#   midcert-<version>-linux-<arch>/
#     bin/midcert-agent, bin/midcert          single executables (no Node.js needed)
#     systemd/midcert-agent.service           hardened unit, and an example drop-in for the MID path
#     polkit/50-midcert-agent.rules           lets the agent restart the MID unit
#     etc/agent.example.yaml                  -> /etc/midcert/agent.yaml
#     ansible/midcert-fleet-<v>.tar.gz        the Ansible collection (ansible-galaxy collection build)
#     docs/*.md, README.md
#     SHA256SUMS
#
# Usage: packaging/release.sh [--no-build] [--bin-dir DIR] [--out-dir DIR]
#   --no-build     use the binaries already in --bin-dir (default: build them with build-sea.mjs)
#   --bin-dir DIR  where the binaries are or are built (default dist)
#   --out-dir DIR  where the tarball goes (default dist)
# A part whose source does not exist yet (controller/cli/main.ts, the Ansible collection) is left
# out with a clear message; once its source exists it is required. SOURCE_DATE_EPOCH (default:
# the last commit's time) fixes file times in the tarball.
set -euo pipefail

root=$(CDPATH='' cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
build=1
bin_dir="$root/dist"
out_dir="$root/dist"

while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0; shift ;;
    --bin-dir) bin_dir=${2:?--bin-dir needs a directory}; shift 2 ;;
    --out-dir) out_dir=${2:?--out-dir needs a directory}; shift 2 ;;
    -h|--help) sed -n '2,21p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "release.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

say() { printf 'release: %s\n' "$*" >&2; }
die() { printf 'release: error: %s\n' "$*" >&2; exit 1; }

version=$(node -p 'require(process.argv[1]).version' "$root/package.json")
case "$(uname -m)" in
  x86_64|amd64) arch=x64 ;;
  aarch64|arm64) arch=arm64 ;;
  *) arch=$(uname -m) ;;
esac
name="midcert-${version}-linux-${arch}"
mkdir -p "$bin_dir" "$out_dir"
bin_dir=$(cd -- "$bin_dir" && pwd)
out_dir=$(cd -- "$out_dir" && pwd)

if [ "$build" -eq 1 ]; then
  say "building the single executables into $bin_dir"
  node "$root/packaging/build-sea.mjs" --out-dir "$bin_dir"
fi

stage_parent=$(mktemp -d)
trap 'rm -rf -- "$stage_parent"' EXIT
stage="$stage_parent/$name"
mkdir -p "$stage/bin" "$stage/systemd/midcert-agent.service.d" "$stage/polkit" "$stage/etc" "$stage/docs"

# Binaries: each must exist when its source does, and report this version.
add_binary() {
  local bin=$1 entry=$2
  if [ ! -f "$root/$entry" ]; then
    say "SKIPPED $bin: $entry does not exist yet (the tarball will not contain it)"
    return 0
  fi
  [ -x "$bin_dir/$bin" ] || die "$bin_dir/$bin is missing; run make package (or drop --no-build)"
  local got
  got=$(env -i PATH=/usr/bin:/bin HOME="$stage_parent" "$bin_dir/$bin" --version) || die "$bin_dir/$bin --version failed"
  [ "$got" = "$version" ] || die "$bin_dir/$bin --version printed '$got', expected '$version' (stale build?)"
  install -m 0755 "$bin_dir/$bin" "$stage/bin/$bin"
  say "added bin/$bin ($(du -m "$stage/bin/$bin" | cut -f1) MiB)"
}
add_binary midcert-agent agent/cli/main.ts
add_binary midcert controller/cli/main.ts
[ -f "$stage/bin/midcert-agent" ] || die "the agent binary is required"

install -m 0644 "$root/packaging/midcert-agent.service" "$stage/systemd/midcert-agent.service"
install -m 0644 "$root/packaging/midcert-agent.service.d/mid-home.conf.example" "$stage/systemd/midcert-agent.service.d/mid-home.conf.example"
install -m 0644 "$root/packaging/polkit/50-midcert-agent.rules" "$stage/polkit/50-midcert-agent.rules"
install -m 0644 "$root/packaging/agent.example.yaml" "$stage/etc/agent.example.yaml"
install -m 0644 "$root/README.md" "$stage/README.md"
for doc in "$root"/docs/*.md; do
  install -m 0644 "$doc" "$stage/docs/$(basename -- "$doc")"
done

# The Ansible collection, built by ansible-galaxy from its own galaxy.yml.
collection="$root/ansible/ansible_collections/midcert/fleet"
if [ -f "$collection/galaxy.yml" ]; then
  command -v ansible-galaxy >/dev/null || die "ansible-galaxy is needed to build the collection (apt-get install ansible-core)"
  coll_version=$(sed -n 's/^version: *//p' "$collection/galaxy.yml")
  [ -f "$collection/CHANGELOG.rst" ] && grep -qx "v$coll_version" "$collection/CHANGELOG.rst" \
    && grep -q "^  $coll_version:\$" "$collection/changelogs/changelog.yaml" \
    || die "the collection's changelog has no release $coll_version (changelogs/changelog.yaml, CHANGELOG.rst; see ansible/README.md)"
  mkdir -p "$stage/ansible"
  ansible-galaxy collection build "$collection" --output-path "$stage/ansible" --force >&2 \
    || die "ansible-galaxy collection build failed for $collection"
  say "added $(cd -- "$stage" && ls ansible/*.tar.gz)"
else
  say "SKIPPED the Ansible collection: $collection/galaxy.yml does not exist yet"
fi

(cd -- "$stage" && find . -type f -printf '%P\n' | LC_ALL=C sort | xargs -d '\n' sha256sum) > "$stage_parent/SHA256SUMS"
mv -- "$stage_parent/SHA256SUMS" "$stage/SHA256SUMS"

epoch=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}
tarball="$out_dir/$name.tar.gz"
tmp_tar="$out_dir/.$name.tar.gz.$$"
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
  --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
  -C "$stage_parent" -cf - "$name" | gzip -6n > "$tmp_tar"
mv -f -- "$tmp_tar" "$tarball"
(cd -- "$out_dir" && sha256sum -- "$name.tar.gz" > "$name.tar.gz.sha256")
say "wrote $tarball ($(du -m "$tarball" | cut -f1) MiB), sha256 $(cut -d' ' -f1 < "$tarball.sha256")"
printf '%s\n' "$tarball"
