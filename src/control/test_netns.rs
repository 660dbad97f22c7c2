//! A network namespace of a test's own, for control-plane tests that need
//! real interfaces (rtnetlink, multicast sockets): the test's closure runs
//! on a thread moved into a fresh namespace (`unshare(CLONE_NEWNET)`,
//! which changes only that thread), with `lo` up. Threads and processes it
//! starts inherit the namespace; the namespace and everything in it go
//! when the thread ends, also when the test fails. Needs root, as the
//! other network tests.

/// Runs `f` on a thread in a network namespace of its own.
pub(crate) fn in_private_netns<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|sc| {
        sc.spawn(|| {
            // SAFETY: unshare with CLONE_NEWNET changes only this thread's
            // network namespace; no memory is involved.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "unshare(CLONE_NEWNET): {}",
                std::io::Error::last_os_error()
            );
            ip(&["link", "set", "lo", "up"]);
            f()
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// `ip ARGS` in the calling thread's namespace; panics if it fails.
pub(crate) fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("ip {args:?}: {e}"));
    assert!(out.status.success(), "ip {args:?}: {out:?}");
}
