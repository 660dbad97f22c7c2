#!/usr/bin/env bash
# Installs what vsd needs to build, run and be tested on Debian bookworm:
# DPDK 22.11 LTS and its headers, libclang for bindgen, the tools the
# end-to-end tests drive (curl, ab, python3 for the real servers and the
# IPIP helper, nftables, ethtool, sha256sum, tshark for the IPVS sync
# dissector, keepalived and bird2 for the failover and ECMP tests), and
# 2 MiB hugepages.
# Idempotent; run as root.
set -euo pipefail

PACKAGES=(
  dpdk dpdk-dev libdpdk-dev pkg-config clang libclang-dev
  iproute2 iputils-ping procps
  curl apache2-utils python3 nftables ethtool coreutils psmisc
  tshark
  debhelper fakeroot man-db systemd
  keepalived bird2
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # wireshark-common asks whether non-root users may capture: no.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  # bird2 enables a BIRD in the root namespace; the tests run their own in
  # namespaces they make, so one this run installed is stopped (a BIRD that
  # was there before stays as it was).
  if [[ " ${missing[*]} " == *" bird2 "* ]] && command -v systemctl >/dev/null &&
    systemctl is-enabled bird.service >/dev/null 2>&1; then
    systemctl disable --now bird.service >/dev/null 2>&1 || true
  fi
fi

# Hugepages: 512 x 2 MiB, and a hugetlbfs mount for EAL.
want=512
have=$(cat /proc/sys/vm/nr_hugepages)
if ((have < want)); then
  echo "$want" > /proc/sys/vm/nr_hugepages || true
fi
if ! grep -q ' /dev/hugepages hugetlbfs ' /proc/mounts; then
  mkdir -p /dev/hugepages
  mount -t hugetlbfs nodev /dev/hugepages
fi
echo "setup: hugepages $(cat /proc/sys/vm/nr_hugepages) x 2 MiB on /dev/hugepages"
