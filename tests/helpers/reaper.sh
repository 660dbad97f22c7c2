#!/usr/bin/env bash
# Cleans up after an end-to-end test process that died without running its
# destructors (SIGKILL, abort). Started once per test process in a session
# of its own; waits for PID to end, then removes whatever the ledger still
# lists, newest first. Guards remove their ledger lines when they clean up
# normally, so after a clean run the ledger is empty and nothing is touched.
#
#   reaper.sh PID LEDGER
#
# Ledger lines: "netns NAME" (its processes are killed, then it is deleted),
# "link NAME" (root-namespace interface), "dir PATH", "dpdk PREFIX"
# (hugepage files and runtime directory of a DPDK --file-prefix).
set -u
pid=$1
ledger=$2
while kill -0 "$pid" 2>/dev/null; do sleep 0.2; done
[[ -f $ledger ]] || exit 0
tac "$ledger" | while read -r kind arg; do
  case $kind in
    netns)
      for p in $(ip netns pids "$arg" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
      ip netns del "$arg" 2>/dev/null ;;
    link)
      ip link del "$arg" 2>/dev/null ;;
    dir)
      [[ $arg == /tmp/* ]] && rm -rf -- "$arg" ;;
    dpdk)
      [[ $arg =~ ^[A-Za-z0-9_-]+$ ]] || continue
      # give a DPDK process killed with its parent a moment to exit
      for _ in 1 2 3 4 5 6 7 8 9 10; do
        fuser -s /var/run/dpdk/"$arg"/config 2>/dev/null || break
        sleep 0.2
      done
      rm -f /dev/hugepages/"$arg"map_* /mnt/huge/"$arg"map_* 2>/dev/null
      rm -rf /var/run/dpdk/"$arg" ;;
  esac
done
rm -f "$ledger"
