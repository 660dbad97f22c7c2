# Sourced by demo.sh and test.sh: puts a Rust toolchain new enough for vsd on
# PATH, or says in plain words what is missing and how to get it.
#
# Why: rustup installs cargo in ~/.cargo/bin of the user who ran it. Under
# sudo, secure_path drops that directory (and HOME may be root's), so a
# toolchain that works for the user is "cargo: command not found" for the
# script. Debian bookworm's own rustc (1.63) is too old for the locked
# dependencies; the minimum is Cargo.toml's rust-version.

vsd_rust_version() {
  sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' "$(dirname "${BASH_SOURCE[0]}")/../../Cargo.toml" | head -1
}

# find_rust NAME: returns 0 with cargo and rustc on PATH (and RUSTUP_HOME set
# when the toolchain belongs to $SUDO_USER), else prints why and returns 1.
find_rust() {
  local who=$1 need have h
  need=$(vsd_rust_version)
  if ! command -v cargo >/dev/null 2>&1; then
    local homes=()
    [[ -n ${HOME:-} ]] && homes+=("$HOME")
    if [[ -n ${SUDO_USER:-} ]]; then
      h=$(getent passwd "$SUDO_USER" | cut -d: -f6)
      [[ -n $h ]] && homes+=("$h")
    fi
    for h in "${homes[@]}"; do
      if [[ -x $h/.cargo/bin/cargo ]]; then
        export PATH="$h/.cargo/bin:$PATH"
        # rustup's proxies find their toolchains in RUSTUP_HOME (~/.rustup of
        # the user who installed them, not root's under sudo).
        if [[ -z ${RUSTUP_HOME:-} && -d $h/.rustup ]]; then
          export RUSTUP_HOME="$h/.rustup"
        fi
        break
      fi
    done
  fi
  if ! command -v cargo >/dev/null 2>&1 || ! command -v rustc >/dev/null 2>&1; then
    cat >&2 <<MSG
$who: Rust is not installed (no cargo on PATH, none in ~/.cargo/bin${SUDO_USER:+ or in ~$SUDO_USER/.cargo/bin}).
$who: vsd needs Rust $need or newer; Debian's rustc package is too old. Install it with rustup:
$who:   curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
$who: then run this script again (as root, or with sudo from the user who installed Rust).
MSG
    return 1
  fi
  have=$(rustc --version 2>/dev/null | sed -n 's/^rustc \([0-9]*\.[0-9]*\(\.[0-9]*\)\{0,1\}\).*/\1/p')
  if [[ -z $have ]]; then
    echo "$who: $(command -v rustc) does not run (no default toolchain? try: rustup default stable)" >&2
    return 1
  fi
  if [[ $(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1) != "$need" ]]; then
    echo "$who: rustc $have at $(command -v rustc) is too old: vsd needs Rust $need or newer (rustup update stable)" >&2
    return 1
  fi
}
