#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy, kubectl and
# kwok from their Go modules at the versions pinned in versions.env, into a cache folder outside
# the repo; with the argument `coredns`, CoreDNS instead. Only what is missing is built. Prints the
# bin folder on its last line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache_root="${SERVICEGROUP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/servicegroup}"
say() { echo "[build-binaries] $*" >&2; }
find_go() {
  if ! command -v go >/dev/null 2>&1; then
    for g in /usr/local/go/bin/go "$HOME/go/bin/go"; do [ -x "$g" ] && export PATH="$(dirname "$g"):$PATH" && break; done
  fi
  command -v go >/dev/null 2>&1 || {
    say "ERROR: the Go toolchain (go) is not on PATH; it is needed to build: $*"
    say "Install Go >= 1.25 (https://go.dev/doc/install) or put prebuilt binaries in $bin"
    exit 1
  }
}

# `build-binaries.sh coredns`: CoreDNS alone, in a folder of its own so that pinning another
# CoreDNS does not rebuild the Kubernetes binaries (and the reverse).
if [ "${1:-}" = coredns ]; then
  bin="$cache_root/bin/coredns-$COREDNS_VERSION"
  mkdir -p "$bin"
  if [ ! -x "$bin/coredns" ]; then
    exec 9>"$cache_root/coredns.lock"
    flock 9
    if [ ! -x "$bin/coredns" ]; then
      find_go coredns
      say "building coredns $COREDNS_VERSION (first time on a machine: 5-15 minutes on 2 cores)"
      CGO_ENABLED=0 GOBIN="$bin" GOFLAGS= go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@$COREDNS_VERSION" >&2
    fi
  fi
  echo "$bin"; exit 0
fi

bin="$cache_root/bin/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"
mkdir -p "$bin"

k8s_parts=(kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl)
missing_k8s=()
for p in "${k8s_parts[@]}"; do [ -x "$bin/$p" ] || missing_k8s+=("$p"); done
need_etcd=0; [ -x "$bin/etcd" ] || need_etcd=1
need_kwok=0; [ -x "$bin/kwok" ] || need_kwok=1

if [ ${#missing_k8s[@]} -eq 0 ] && [ $need_etcd -eq 0 ] && [ $need_kwok -eq 0 ]; then
  echo "$bin"; exit 0
fi

# Two test processes starting at once must not build into the same folder together.
exec 9>"$cache_root/build.lock"
flock 9
missing_k8s=(); for p in "${k8s_parts[@]}"; do [ -x "$bin/$p" ] || missing_k8s+=("$p"); done
[ -x "$bin/etcd" ] && need_etcd=0
[ -x "$bin/kwok" ] && need_kwok=0

find_go "${missing_k8s[*]}" "$([ $need_etcd = 1 ] && echo etcd)" "$([ $need_kwok = 1 ] && echo kwok)"

export CGO_ENABLED=0 GOFLAGS=-mod=mod
work="$cache_root/build"
mkdir -p "$work"
started=$(date +%s)

# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces the staging modules with local
# folders. A wrapper module requires it and pins every staging module to the matching v0 tag.
if [ ${#missing_k8s[@]} -gt 0 ]; then
  mod="$work/k8s-$KUBERNETES_VERSION"
  mkdir -p "$mod"
  minor_tag="v0.${KUBERNETES_VERSION#v1.}"
  if [ ! -f "$mod/go.mod" ] || ! grep -q "k8s.io/kubernetes $KUBERNETES_VERSION" "$mod/go.mod"; then
    say "resolving k8s.io/kubernetes $KUBERNETES_VERSION (first time: downloads modules)"
    kmod=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    {
      echo "module servicegroup.local/k8s-binaries"
      echo
      echo "go 1.25.0"
      echo
      echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
      echo
      echo "replace ("
      sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$kmod" | while read -r m; do
        echo "	$m => $m $minor_tag"
      done
      echo ")"
    } > "$mod/go.mod"
    printf 'package main\n\nimport (\n\t_ "k8s.io/kubernetes/cmd/kube-apiserver/app"\n)\n\nfunc main() {}\n' > "$mod/tools.go"
    (cd "$mod" && go mod tidy) >&2
  fi
  minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  pkgs=(); for p in "${missing_k8s[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$p"); done
  say "building ${missing_k8s[*]} $KUBERNETES_VERSION (first time on a machine: 10-30 minutes on 2 cores)"
  (cd "$mod" && go build -v -trimpath -ldflags "$ldflags" -o "$bin/" "${pkgs[@]}" 2>&1 \
    | awk '{n++; if (n % 100 == 0) printf "[build-binaries] kubernetes: %d packages compiled\n", n > "/dev/stderr"}') 
  for p in "${missing_k8s[@]}"; do [ -x "$bin/$p" ] || { say "ERROR: $p was not built"; exit 1; }; done
fi

# etcd's server module also replaces its sibling modules with local folders; same approach.
if [ $need_etcd -eq 1 ]; then
  mod="$work/etcd-$ETCD_VERSION"
  mkdir -p "$mod"
  if [ ! -f "$mod/go.mod" ]; then
    say "resolving go.etcd.io/etcd/server/v3 $ETCD_VERSION"
    printf 'module servicegroup.local/etcd-binary\n\ngo 1.25.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" > "$mod/go.mod"
    printf 'package main\n\nimport _ "go.etcd.io/etcd/server/v3/etcdmain"\n\nfunc main() {}\n' > "$mod/tools.go"
    (cd "$mod" && go mod tidy) >&2
  fi
  say "building etcd $ETCD_VERSION"
  (cd "$mod" && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3) >&2
fi

if [ $need_kwok -eq 1 ]; then
  say "building kwok $KWOK_VERSION"
  GOBIN="$bin" GOFLAGS= go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" >&2
fi

say "done in $(( $(date +%s) - started ))s"
echo "$bin"
