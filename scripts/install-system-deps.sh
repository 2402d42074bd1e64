#!/usr/bin/env bash
# Installs the Debian packages svcnet's tests and demo use, only when one is missing, so a
# second `make test` costs nothing. Runs as root (CI and these machines are root).
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have iptables-restore || need+=(iptables)
have nft || need+=(nftables)
have conntrack || need+=(conntrack)
have ip || need+=(iproute2)
have dig || need+=(dnsutils)
# curl: the lab's e2e tests and the demo walk-through use it as a user would from a pod.
have curl || need+=(curl)
# ipset and ipvsadm: what --mode ipvs drives (the ipset part is tested in any kernel; virtual
# servers need one with IPVS).
have ipset || need+=(ipset)
have ipvsadm || need+=(ipvsadm)
# etcd for the etcd datastore and its tests (tests start their own members on free ports).
[ -x /usr/bin/etcd ] || need+=(etcd-server)
have etcdctl || need+=(etcd-client)
have kubectl || echo "note: kubectl is not on this machine; kubectl tests will say so" >&2
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${need[*]} (run as root to install them)" >&2
    exit 0
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
