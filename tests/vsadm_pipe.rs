//! `vsadm ... | head`: when the reader closes the pipe, vsadm stops quietly
//! (status 0, nothing on stderr) instead of reporting "Broken pipe".

use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

#[test]
fn vsadm_exits_quietly_when_its_output_pipe_is_closed() {
    let mut fds = [0; 2];
    // SAFETY: fds is a valid array of two ints for pipe(2) to fill.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: pipe(2) just returned these descriptors; each is owned once.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // The reader is gone before vsadm writes a byte, as after `head` exits.
    drop(read_end);
    for args in [&["-h"][..], &["--version"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_vsadm"))
            .args(args)
            .stdout(Stdio::from(write_end.try_clone().unwrap()))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.is_empty(), "vsadm {args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "vsadm {args:?}: {stderr}");
    }
    // The same when the shell runs it under pipefail: no message, status 0.
    let out = Command::new("bash")
        .args([
            "-c",
            "set -o pipefail; for i in $(seq 200); do \"$0\" -h; done | head -c 10 >/dev/null",
            env!("CARGO_BIN_EXE_vsadm"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
