#!/usr/bin/env bash
# Installs the OS tools the test cluster uses, when missing: openssl (certificates), setpriv /
# unshare / nsenter (process and network-namespace isolation), ip, iptables and nft (what
# kube-proxy programs and what the tests read back). Debian/Ubuntu with apt-get, as root.
set -euo pipefail
declare -A pkg_of=(
  [openssl]=openssl [setpriv]=util-linux [unshare]=util-linux [nsenter]=util-linux [flock]=util-linux
  [ip]=iproute2 [iptables-save]=iptables [nft]=nftables
)
missing=()
for cmd in "${!pkg_of[@]}"; do command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkg_of[$cmd]}"); done
[ ${#missing[@]} -eq 0 ] && exit 0
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "[system-deps] missing OS packages: $pkgs; install them (needs root and apt-get here)" >&2
  exit 1
fi
echo "[system-deps] installing $pkgs" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $pkgs >&2
