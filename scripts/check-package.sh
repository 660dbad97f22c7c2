#!/usr/bin/env bash
# CI check of the Debian package (called by scripts/test.sh; ~30 s with the
# debug binaries cargo test already built): builds it, inspects its control
# data and contents, checks the default configuration with the packaged vsd,
# verifies the systemd unit and lints the man pages.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "check-package: $*" >&2
  exit 1
}
WORK=$(mktemp -d /tmp/vsd-pkg.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

echo "== building the package (VSD_PROFILE=${VSD_PROFILE:=dev})"
VSD_PROFILE=$VSD_PROFILE VSD_DEB_DIR=$WORK/deb scripts/package.sh >"$WORK/build.log" 2>&1 ||
  { cat "$WORK/build.log"; fail "scripts/package.sh failed"; }
DEB=$(ls "$WORK"/deb/vsd_*.deb)

echo "== dpkg-deb -I $(basename "$DEB")"
info=$(dpkg-deb -I "$DEB")
field() { dpkg-deb -f "$DEB" "$1"; }
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -1)
[[ $(field Package) == vsd ]] || fail "Package is $(field Package)"
[[ $(field Version) == "$version" ]] || fail "Version $(field Version) is not Cargo.toml's $version (debian/changelog)"
# The DPDK libraries the binary links (readelf NEEDED) must each be a
# dependency, as dh_shlibdeps found them; and the PMDs (package dpdk).
depends=$(field Depends)
dpkg-deb -x "$DEB" "$WORK/root"
for lib in $(readelf -d "$WORK/root/usr/sbin/vsd" | sed -n 's/.*NEEDED.*\[\(librte_[a-z]*\)\.so\.\([0-9]*\)\]/\1\2/p'); do
  pkg=${lib//_/-}
  [[ $depends == *"$pkg "* || $depends == *"$pkg," || $depends == *"$pkg" ]] ||
    fail "Depends lacks $pkg (vsd links ${lib}): $depends"
done
[[ $depends == *librte-eal23* ]] || fail "Depends names no librte-eal23: $depends"
[[ $depends =~ (^|, )dpdk($|,) ]] || fail "Depends lacks dpdk (the PMDs): $depends"
grep -q 'conffiles' <<<"$info" || fail "no conffiles"
dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./conffiles | grep -qx /etc/vsd/vsd.toml ||
  fail "/etc/vsd/vsd.toml is not a conffile"
# Installed, not enabled or started: the configuration must be edited first.
if dpkg-deb --ctrl-tarfile "$DEB" | tar -xO ./postinst | grep -q 'deb-systemd-invoke start'; then
  fail "postinst starts vsd before it is configured"
fi

echo "== dpkg-deb -c"
contents=$(dpkg-deb -c "$DEB" | awk '{print $6}')
for f in ./usr/sbin/vsd ./usr/sbin/vsadm ./etc/vsd/vsd.toml ./lib/systemd/system/vsd.service \
  ./lib/systemd/system/vsd-prepare.service ./usr/lib/vsd/vsd-prepare \
  ./usr/share/man/man8/vsd.8.gz ./usr/share/man/man8/vsadm.8.gz ./usr/share/man/man5/vsd.toml.5.gz \
  ./usr/share/doc/vsd/examples/demo.toml; do
  grep -qx -- "$f" <<<"$contents" || fail "package lacks $f"
done

echo "== the default /etc/vsd/vsd.toml with the packaged vsd --check"
mkdir -p "$WORK/run"
sed "s|^socket = .*|socket = \"$WORK/run/vsd.sock\"|" "$WORK/root/etc/vsd/vsd.toml" >"$WORK/vsd.toml"
"$WORK/root/usr/sbin/vsd" --config "$WORK/vsd.toml" --check >"$WORK/check.log" 2>&1 ||
  { cat "$WORK/check.log"; fail "vsd --check refuses the default configuration"; }
if grep -q warning "$WORK/check.log"; then
  cat "$WORK/check.log"
  fail "vsd --check warns about the default configuration"
fi

echo "== systemd-analyze verify vsd.service"
unit=$WORK/root/lib/systemd/system/vsd.service
for key in 'Type=notify' 'ExecReload=/bin/kill -HUP $MAINPID' 'Restart=on-failure' \
  'ExecStart=/usr/sbin/vsd --config /etc/vsd/vsd.toml'; do
  grep -qxF -- "$key" "$unit" || fail "vsd.service lacks $key"
done
# verify checks that the commands exist: point them at the extracted package.
mkdir -p "$WORK/units"
sed "s|/usr/sbin/|$WORK/root/usr/sbin/|g" "$unit" >"$WORK/units/vsd.service"
if ! MANPATH=$WORK/root/usr/share/man systemd-analyze verify "$WORK/units/vsd.service" >"$WORK/verify.log" 2>&1 ||
  [[ -s $WORK/verify.log ]]; then
  cat "$WORK/verify.log"
  fail "systemd-analyze verify vsd.service"
fi

echo "== systemd-analyze verify vsd-prepare.service; vsd-prepare --dry-run on a fake sysfs"
grep -qxF 'Wants=network-pre.target vsd-prepare.service' "$unit" || fail "vsd.service does not want vsd-prepare.service"
sed "s|/usr/lib/vsd/|$WORK/root/usr/lib/vsd/|g" "$WORK/root/lib/systemd/system/vsd-prepare.service" >"$WORK/units/vsd-prepare.service"
if ! MANPATH=$WORK/root/usr/share/man systemd-analyze verify "$WORK/units/vsd-prepare.service" >"$WORK/verify.log" 2>&1 ||
  [[ -s $WORK/verify.log ]]; then
  cat "$WORK/verify.log"
  fail "systemd-analyze verify vsd-prepare.service"
fi
# the default configuration's two NICs: one on a kernel driver, one bound already
sys=$WORK/sys
mkdir -p "$sys/kernel/mm/hugepages/hugepages-2048kB" "$sys/bus/pci/drivers/ixgbe" "$sys/bus/pci/drivers/vfio-pci"
echo 0 >"$sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"
for d in 0000:03:00.0:ixgbe 0000:03:00.1:vfio-pci; do
  mkdir -p "$sys/bus/pci/devices/${d%:*}"
  ln -s "../../drivers/${d##*:}" "$sys/bus/pci/devices/${d%:*}/driver"
done
prep=$(VSD=$WORK/root/usr/sbin/vsd VSD_SYSFS=$sys PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  "$WORK/root/usr/lib/vsd/vsd-prepare" --dry-run "$WORK/vsd.toml" 2>&1) ||
  { echo "$prep"; fail "vsd-prepare --dry-run failed"; }
for want in "hugepages 2048kB: would raise 0 to 2080" "0000:03:00.0: ixgbe -> vfio-pci" \
  "run: modprobe vfio-pci" "0000:03:00.1: already on vfio-pci"; do
  grep -qF -- "$want" <<<"$prep" || { echo "$prep"; fail "vsd-prepare --dry-run did not say: $want"; }
done
[[ $(<"$sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages") == 0 ]] || fail "--dry-run changed nr_hugepages"

echo "== man pages"
for page in man8/vsd.8.gz man8/vsadm.8.gz man5/vsd.toml.5.gz; do
  out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$WORK/root/usr/share/man/$page" 2>&1 >/dev/null)
  [[ -z $out ]] || fail "$page: $out"
done
man -l "$WORK/root/usr/share/man/man8/vsd.8.gz" 2>/dev/null | grep -q -- '--check' || fail "vsd(8) lacks --check"
man -l "$WORK/root/usr/share/man/man8/vsadm.8.gz" 2>/dev/null | grep -q -- '--add-laddr' || fail "vsadm(8) lacks --add-laddr"
echo "check-package: OK ($(basename "$DEB"), $(du -h "$DEB" | cut -f1))"
