//! Sleeping until the control thread has something to do: poll(2) on the
//! control socket, its clients and the metrics listener, with a timeout
//! for the next periodic duty. A control thread that polled on a fixed
//! short period woke up hundreds of times a second for nothing, and on a
//! small machine each wake-up preempts packet work sharing its CPU.

use std::os::fd::RawFd;
use std::time::Duration;

/// What one descriptor waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interest {
    pub fd: RawFd,
    pub read: bool,
    pub write: bool,
}

impl Interest {
    /// A listening socket: wait for connections.
    pub fn listener(fd: RawFd) -> Interest {
        Interest {
            fd,
            read: true,
            write: false,
        }
    }
}

/// Descriptors to wait on, built afresh before each wait.
#[derive(Debug, Default)]
pub struct WaitSet {
    fds: Vec<libc::pollfd>,
    /// Something is ready without waiting (buffered requests).
    ready_now: bool,
}

impl WaitSet {
    pub fn clear(&mut self) {
        self.fds.clear();
        self.ready_now = false;
    }

    pub fn add(&mut self, i: Interest) {
        let mut events = 0;
        if i.read {
            events |= libc::POLLIN;
        }
        if i.write {
            events |= libc::POLLOUT;
        }
        // errors and hang-ups are reported whatever `events` says
        self.fds.push(libc::pollfd {
            fd: i.fd,
            events,
            revents: 0,
        });
    }

    /// Work is waiting already: the next wait returns at once.
    pub fn ready_now(&mut self) {
        self.ready_now = true;
    }

    /// Sleep until a descriptor is ready, `timeout` passes or a signal
    /// arrives. True if a descriptor is ready (or was ready before).
    pub fn wait(&mut self, timeout: Duration) -> bool {
        if self.ready_now {
            return true;
        }
        // round up: waking a little late is fine, spinning early is not
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as libc::c_int;
        // SAFETY: `fds` is a valid, initialised array of `len` pollfd
        // structs that lives across the call; poll only writes `revents`.
        let n = unsafe { libc::poll(self.fds.as_mut_ptr(), self.fds.len() as libc::nfds_t, ms) };
        n > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    #[test]
    fn waits_for_the_timeout_when_nothing_is_ready() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut w = WaitSet::default();
        w.add(Interest {
            fd: a.as_raw_fd(),
            read: true,
            write: false,
        });
        let t = Instant::now();
        assert!(!w.wait(Duration::from_millis(30)));
        assert!(t.elapsed() >= Duration::from_millis(29));
    }

    #[test]
    fn returns_when_a_descriptor_is_ready() {
        let (a, mut b) = UnixStream::pair().unwrap();
        b.write_all(b"x").unwrap();
        let mut w = WaitSet::default();
        w.add(Interest {
            fd: a.as_raw_fd(),
            read: true,
            write: false,
        });
        let t = Instant::now();
        assert!(w.wait(Duration::from_secs(10)));
        assert!(t.elapsed() < Duration::from_secs(5));
        // and a writable socket, for a client with answers queued
        let mut w = WaitSet::default();
        w.add(Interest {
            fd: b.as_raw_fd(),
            read: false,
            write: true,
        });
        assert!(w.wait(Duration::from_secs(10)));
    }

    #[test]
    fn buffered_work_does_not_wait() {
        let mut w = WaitSet::default();
        w.ready_now();
        let t = Instant::now();
        assert!(w.wait(Duration::from_secs(10)));
        assert!(t.elapsed() < Duration::from_secs(5));
        w.clear();
        assert!(!w.wait(Duration::ZERO));
    }
}
