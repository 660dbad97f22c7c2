//! The buffer contract between the forwarding core and the data plane.
//!
//! [`crate::lb::director::CoreLb`] rewrites frames in place through
//! [`PacketBuf`]: on DPDK it is an mbuf (`rte_pktmbuf_prepend`, `adj`,
//! `append`, `trim`), in tests and benchmarks a [`VecPacket`]. The frame
//! always starts at the Ethernet header.

/// A packet buffer whose data can grow and shrink at both ends.
pub trait PacketBuf {
    /// The whole frame, starting at the Ethernet header.
    fn data(&self) -> &[u8];
    /// The whole frame, mutable.
    fn data_mut(&mut self) -> &mut [u8];
    /// Grow the data by `n` bytes at the front (TUN encapsulation). False
    /// when there is not enough headroom; then nothing changed.
    fn prepend(&mut self, n: usize) -> bool;
    /// Drop `n` bytes at the front. False (nothing changed) if the data is
    /// shorter than `n`.
    fn adj(&mut self, n: usize) -> bool;
    /// Grow the data by `n` bytes at the end. False when there is not
    /// enough tailroom; then nothing changed.
    fn append(&mut self, n: usize) -> bool;
    /// Shorten the data to `len` bytes (no effect if already shorter).
    fn truncate(&mut self, len: usize);
    /// Length of the data.
    fn len(&self) -> usize {
        self.data().len()
    }
    /// Whether the data is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A `Vec`-backed [`PacketBuf`] with head- and tailroom, for tests and
/// benchmarks. Its layout mirrors an mbuf: `headroom` free bytes, the
/// data, then free tailroom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VecPacket {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl VecPacket {
    /// Headroom DPDK leaves in front of received data (`RTE_PKTMBUF_HEADROOM`).
    pub const DEFAULT_HEADROOM: usize = 128;
    /// Data room of a default DPDK mbuf (`RTE_MBUF_DEFAULT_DATAROOM`).
    pub const DEFAULT_DATAROOM: usize = 2048;

    /// A packet holding `frame` with the default headroom and the rest of
    /// a default mbuf's data room as tailroom.
    pub fn new(frame: &[u8]) -> Self {
        let tail = Self::DEFAULT_DATAROOM.saturating_sub(frame.len());
        Self::with_room(frame, Self::DEFAULT_HEADROOM, tail)
    }

    /// A packet holding `frame` with exactly `headroom` and `tailroom`
    /// free bytes around it.
    pub fn with_room(frame: &[u8], headroom: usize, tailroom: usize) -> Self {
        let mut buf = vec![0u8; headroom + frame.len() + tailroom];
        buf[headroom..headroom + frame.len()].copy_from_slice(frame);
        VecPacket {
            buf,
            start: headroom,
            end: headroom + frame.len(),
        }
    }

    /// Replace the data with `frame`, keeping the buffer (benchmarks reuse
    /// one packet). The headroom becomes `headroom` again; `frame` must fit.
    pub fn reset(&mut self, frame: &[u8], headroom: usize) -> bool {
        let Some(room) = self.buf.get_mut(headroom..headroom + frame.len()) else {
            return false;
        };
        room.copy_from_slice(frame);
        self.start = headroom;
        self.end = headroom + frame.len();
        true
    }

    /// Free bytes in front of the data.
    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Free bytes after the data.
    pub fn tailroom(&self) -> usize {
        self.buf.len() - self.end
    }

    /// The data as an owned vector.
    pub fn to_vec(&self) -> Vec<u8> {
        self.data().to_vec()
    }
}

impl PacketBuf for VecPacket {
    fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }
    fn prepend(&mut self, n: usize) -> bool {
        if n > self.start {
            return false;
        }
        self.start -= n;
        true
    }
    fn adj(&mut self, n: usize) -> bool {
        if n > self.end - self.start {
            return false;
        }
        self.start += n;
        true
    }
    fn append(&mut self, n: usize) -> bool {
        if n > self.tailroom() {
            return false;
        }
        // Zero the new bytes so results never depend on stale contents.
        self.buf[self.end..self.end + n].fill(0);
        self.end += n;
        true
    }
    fn truncate(&mut self, len: usize) {
        if len < self.end - self.start {
            self.end = self.start + len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grow_and_shrink_at_both_ends() {
        let mut p = VecPacket::with_room(&[1, 2, 3], 4, 2);
        assert_eq!((p.headroom(), p.tailroom(), p.len()), (4, 2, 3));
        assert!(!p.prepend(5));
        assert!(p.prepend(4));
        assert_eq!(p.headroom(), 0);
        p.data_mut()[..4].copy_from_slice(&[9, 9, 9, 9]);
        assert_eq!(p.data(), &[9, 9, 9, 9, 1, 2, 3]);
        assert!(p.adj(4));
        assert_eq!(p.data(), &[1, 2, 3]);
        assert!(!p.adj(4));
        assert!(!p.append(3));
        assert!(p.append(2));
        assert_eq!(p.data(), &[1, 2, 3, 0, 0]);
        p.truncate(1);
        assert_eq!(p.data(), &[1]);
        p.truncate(10);
        assert_eq!(p.data(), &[1]);
        assert!(p.reset(&[5, 6], 1));
        assert_eq!((p.data(), p.headroom()), (&[5u8, 6][..], 1));
        assert!(!p.reset(&[0; 20], 1));
        let d = VecPacket::new(&[7; 60]);
        assert_eq!(
            (d.headroom(), d.tailroom()),
            (128, VecPacket::DEFAULT_DATAROOM - 60)
        );
        assert!(!d.is_empty());
    }
}
