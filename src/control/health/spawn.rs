//! Notify and quorum scripts: how they are started (as their user and group),
//! reaped, and waited for at shutdown.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::health::spec::Script;

/// Starts notify and quorum scripts.
pub trait Spawner {
    /// Start `script` without waiting; `reason` says why (for logs).
    fn spawn(&mut self, script: &Script, reason: &str, log: &mut dyn FnMut(String));
    /// Collect finished children, logging failures.
    fn reap(&mut self, log: &mut dyn FnMut(String));
    /// Wait up to `limit` for every child (shutdown).
    fn wait_all(&mut self, limit: Duration, log: &mut dyn FnMut(String));
}

/// Split a script's command line (see [`crate::health::command`]).
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    use crate::health::command::SplitError;
    crate::health::command::split_command(line).map_err(|e| match e {
        SplitError::Unterminated(q) => format!("unterminated {q} in `{line}'"),
        SplitError::TrailingBackslash => format!("trailing backslash in `{line}'"),
        SplitError::Empty => "empty command".to_string(),
    })
}

/// A user's uid and primary gid, by name or number.
fn lookup_user(name: &str) -> Result<(u32, u32), String> {
    crate::health::command::lookup_user(name).ok_or_else(|| format!("no user {name}"))
}

/// A group's gid, by name or number.
fn lookup_group(name: &str) -> Result<u32, String> {
    crate::health::command::lookup_group(name).ok_or_else(|| format!("no group {name}"))
}

/// Runs scripts as child processes (no shell), reaped by polling.
#[derive(Default)]
pub struct ProcessSpawner {
    children: Vec<(Child, String)>,
}

impl ProcessSpawner {
    /// Children not reaped yet.
    pub fn running(&self) -> usize {
        self.children.len()
    }

    fn start(script: &Script) -> Result<Child, String> {
        let argv = split_command(&script.command)?;
        let mut cmd = std::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(user) = &script.user {
            use std::os::unix::process::CommandExt;
            let (uid, gid) = lookup_user(user)?;
            let gid = match &script.group {
                Some(g) => lookup_group(g)?,
                None => gid,
            };
            cmd.uid(uid).gid(gid);
        } else if let Some(g) = &script.group {
            use std::os::unix::process::CommandExt;
            cmd.gid(lookup_group(g)?);
        }
        cmd.spawn().map_err(|e| format!("{}: {e}", argv[0]))
    }
}

impl Spawner for ProcessSpawner {
    fn spawn(&mut self, script: &Script, reason: &str, log: &mut dyn FnMut(String)) {
        match Self::start(script) {
            Ok(child) => self
                .children
                .push((child, format!("`{}' ({reason})", script.command))),
            Err(e) => log(format!(
                "health: script `{}' ({reason}) not started: {e}",
                script.command
            )),
        }
    }

    fn reap(&mut self, log: &mut dyn FnMut(String)) {
        self.children
            .retain_mut(|(child, what)| match child.try_wait() {
                Ok(Some(status)) => {
                    if !status.success() {
                        log(format!("health: script {what} failed: {status}"));
                    }
                    false
                }
                Ok(None) => true,
                Err(e) => {
                    log(format!("health: script {what}: {e}"));
                    false
                }
            });
    }

    fn wait_all(&mut self, limit: Duration, log: &mut dyn FnMut(String)) {
        let until = Instant::now() + limit;
        loop {
            self.reap(log);
            if self.children.is_empty() || Instant::now() >= until {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        for (_, what) in &self.children {
            log(format!("health: script {what} still running at exit"));
        }
    }
}
