//! MISC_CHECK: run `misc_path`; exit status 0 passes.
//!
//! As keepalived does, the command line is split into words (single and
//! double quotes and backslash escapes, no expansion) and executed without
//! a shell, in its own process group, with stdin/stdout/stderr on
//! /dev/null, as `user`/`group` when given. With `misc_dynamic`, exit
//! status 1 fails and 2..=255 passes with weight status - 2 (0 passes at
//! the configured weight, reported as no dynamic weight).
//!
//! The attempt is bounded by `misc_timeout` (default `delay_loop`): then
//! the whole process group gets SIGKILL and the child is reaped. The
//! child is reaped in every case, also when the attempt is dropped (the
//! checker removed or the engine stopped): [`ChildGuard`] kills and reaps
//! on drop, so no zombie and no stray program outlive a check.

use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::unix::AsyncFd;

use super::{human, Outcome};
use crate::health::spec::{CheckTarget, MiscCheck};

pub async fn check(target: &CheckTarget, misc: &MiscCheck) -> Outcome {
    let argv = split_command(&misc.path)?;
    let limit = misc.timeout.unwrap_or(target.timing.delay_loop);
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    if let Some((uid, gid)) = credentials(misc.user.as_deref(), misc.group.as_deref())? {
        if let Some(uid) = uid {
            cmd.uid(uid);
        }
        cmd.gid(gid);
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {}: {}", argv[0], super::io_reason(&e)))?;
    let mut guard = ChildGuard {
        pid: child.id() as libc::pid_t,
        reaped: false,
    };
    drop(child);
    let status = match tokio::time::timeout(limit, guard.wait()).await {
        Ok(status) => status.map_err(|e| format!("waiting for {}: {e}", argv[0]))?,
        Err(_) => {
            drop(guard);
            return Err(format!("killed after misc_timeout {}", human(limit)));
        }
    };
    verdict(status, misc.dynamic)
}

/// The exit status as keepalived reads it.
fn verdict(status: ExitStatus, dynamic: bool) -> Outcome {
    match status.code() {
        Some(0) => Ok(None),
        Some(code @ 2..=255) if dynamic => Ok(Some(code as u32 - 2)),
        Some(code) => Err(format!("exit status {code}")),
        None => Err(format!(
            "killed by signal {}",
            status.signal().unwrap_or_default()
        )),
    }
}

/// A child this checker started: killed (with its process group) and
/// reaped when dropped before it was waited for.
pub struct ChildGuard {
    pid: libc::pid_t,
    reaped: bool,
}

impl ChildGuard {
    /// Wait for the child to exit without blocking the thread: a pidfd
    /// polls readable when it exits (Linux 5.3+); without pidfd, poll
    /// waitpid every 10 ms.
    async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, self.pid, 0) };
        let pidfd = if fd >= 0 {
            // SAFETY: fd is a new descriptor we own; the AsyncFd owns it
            // from here and nothing else closes or replaces it.
            let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
            // SAFETY: as above, the descriptor lives exactly as long as
            // the AsyncFd that owns it.
            Some(unsafe { AsyncFd::register(owned) }.map_err(std::io::Error::from)?)
        } else {
            None
        };
        loop {
            if let Some(status) = self.try_reap()? {
                return Ok(status);
            }
            match &pidfd {
                Some(fd) => fd.readable().await?.clear_ready(),
                None => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    fn try_reap(&mut self) -> std::io::Result<Option<ExitStatus>> {
        let mut status = 0;
        // SAFETY: waitpid on our own child with a valid status pointer.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        if r == self.pid {
            self.reaped = true;
            return Ok(Some(ExitStatus::from_raw(status)));
        }
        if r < 0 {
            self.reaped = true;
            return Err(std::io::Error::last_os_error());
        }
        Ok(None)
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.reaped {
            return;
        }
        // SAFETY: signals our own child's process group (it called
        // setpgid(0, 0) before exec, so the group id is its pid), then
        // reaps the child; SIGKILL makes the blocking wait short.
        unsafe {
            libc::kill(-self.pid, libc::SIGKILL);
            let mut status = 0;
            while libc::waitpid(self.pid, &mut status, 0) < 0
                && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR)
            {}
        }
    }
}

/// Split `misc_path` (see [`crate::health::command`]).
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    use crate::health::command::SplitError;
    crate::health::command::split_command(line).map_err(|e| match e {
        SplitError::Unterminated(q) => format!("unterminated {q} in misc_path"),
        SplitError::TrailingBackslash => "trailing backslash in misc_path".into(),
        SplitError::Empty => "empty misc_path".into(),
    })
}

/// uid and gid for `user [group]`: `None` when neither is given.
fn credentials(
    user: Option<&str>,
    group: Option<&str>,
) -> Result<Option<(Option<u32>, u32)>, String> {
    let pw = match user {
        Some(u) => Some(lookup_user(u)?),
        None => None,
    };
    let gid = match (group, pw) {
        (Some(g), _) => lookup_group(g)?,
        (None, Some((_, gid))) => gid,
        (None, None) => return Ok(None),
    };
    Ok(Some((pw.map(|(uid, _)| uid), gid)))
}

fn lookup_user(name: &str) -> Result<(u32, u32), String> {
    crate::health::command::lookup_user(name).ok_or_else(|| format!("unknown user {name}"))
}

fn lookup_group(name: &str) -> Result<u32, String> {
    crate::health::command::lookup_group(name).ok_or_else(|| format!("unknown group {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_like_keepalived() {
        assert_eq!(
            split_command(r#"/bin/check -h "a b" 'c  d' e\ f"#).unwrap(),
            vec!["/bin/check", "-h", "a b", "c  d", "e f"]
        );
        assert!(split_command("  ").is_err());
        assert!(split_command("x 'y").is_err());
    }

    #[test]
    fn dynamic_exit_codes_set_weights() {
        let st = |c: i32| ExitStatus::from_raw(c << 8);
        assert_eq!(verdict(st(0), true), Ok(None));
        assert_eq!(verdict(st(1), true), Err("exit status 1".into()));
        assert_eq!(verdict(st(7), true), Ok(Some(5)));
        assert_eq!(verdict(st(7), false), Err("exit status 7".into()));
        assert_eq!(
            verdict(ExitStatus::from_raw(9), false),
            Err("killed by signal 9".into())
        );
    }

    #[test]
    fn unknown_users_are_refused() {
        assert_eq!(
            credentials(Some("no-such-user-vsd"), None),
            Err("unknown user no-such-user-vsd".into())
        );
        assert_eq!(credentials(Some("root"), None), Ok(Some((Some(0), 0))));
    }
}
