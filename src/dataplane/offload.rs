//! TX checksum offload for forwarded packets. With it, the forwarding core
//! leaves TCP/UDP checksums alone (`L4Csum::Skip`) and the NIC computes
//! them: the L4 checksum field must then hold the pseudo-header sum (not
//! complemented, as `rte_ipv4_phdr_cksum` gives it) and the mbuf carries
//! the header lengths and `RTE_MBUF_F_TX_*` flags. Used only on ports whose
//! hardware offloads (software PMDs like net_tap or memif "offload" by
//! computing the full sum, slower than our incremental update).

use crate::wire::{self, checksum, EtherType};
use std::net::Ipv4Addr;

/// What the NIC needs to finish a packet's checksums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxOffload {
    pub l2_len: u8,
    pub l3_len: u16,
    /// `RTE_MBUF_F_TX_*` bits to set.
    pub flags: u64,
}

/// `RTE_MBUF_F_TX_*` (as in dpdk-sys's `mbuf_flags`; repeated here so this
/// module stays pure).
pub const TX_IPV4: u64 = 1 << 55;
pub const TX_TCP_CKSUM: u64 = 1 << 52;
pub const TX_UDP_CKSUM: u64 = 3 << 52;

/// Prepare an IPv4 TCP/UDP frame for L4 checksum offload: write the
/// pseudo-header sum into its checksum field and say what to tell the NIC.
/// `None` (frame untouched) for anything else, for fragments, and for UDP
/// without a checksum (0 must stay 0).
pub fn prepare_l4_offload(frame: &mut [u8]) -> Option<TxOffload> {
    let (l3, ethertype) = wire::l3_offset(frame).ok()?;
    if ethertype != EtherType::IPV4 || l3 > 127 {
        return None;
    }
    let ip = frame.get(l3..)?;
    let hdr = ip.get(..20)?;
    let ihl = usize::from(hdr[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    let frag = u16::from_be_bytes([hdr[6], hdr[7]]) & 0x3fff;
    if hdr[0] >> 4 != 4 || ihl < 20 || total < ihl || total > ip.len() || frag != 0 {
        return None;
    }
    let proto = hdr[9];
    let src = Ipv4Addr::new(hdr[12], hdr[13], hdr[14], hdr[15]);
    let dst = Ipv4Addr::new(hdr[16], hdr[17], hdr[18], hdr[19]);
    let l4_len = total - ihl;
    let (csum_at, flag) = match proto {
        6 if l4_len >= 20 => (16, TX_TCP_CKSUM),
        17 if l4_len >= 8 => (6, TX_UDP_CKSUM),
        _ => return None,
    };
    let at = l3 + ihl + csum_at;
    if proto == 17 && frame.get(at..at + 2)? == [0, 0] {
        return None;
    }
    let phdr = checksum::pseudo_header_v4(src, dst, proto, l4_len as u16);
    frame
        .get_mut(at..at + 2)?
        .copy_from_slice(&phdr.to_be_bytes());
    Some(TxOffload {
        l2_len: l3 as u8,
        l3_len: ihl as u16,
        flags: TX_IPV4 | flag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{MacAddr, PacketBuilder};

    const A: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const B: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

    /// What the NIC does: checksum over the L4 bytes, whose checksum field
    /// holds the pseudo-header sum, complemented into the field.
    fn nic_finish(frame: &mut [u8], o: TxOffload, csum_at: usize) {
        let l4 = o.l2_len as usize + o.l3_len as usize;
        let c = checksum::checksum(&frame[l4..]);
        let c = if c == 0 && csum_at == 6 { 0xffff } else { c };
        frame[l4 + csum_at..l4 + csum_at + 2].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn tcp_and_udp_end_with_the_right_checksum() {
        let src = Ipv4Addr::new(198, 18, 0, 2);
        let dst = Ipv4Addr::new(198, 18, 1, 11);
        for (want, csum_at) in [
            (
                PacketBuilder::ethernet(A, B)
                    .ipv4(src, dst)
                    .tcp(40000, 8080, 0x18)
                    .payload(b"GET / HTTP/1.0\r\n\r\n")
                    .build(),
                16,
            ),
            (
                PacketBuilder::ethernet(A, B)
                    .vlan(7)
                    .ipv4(src, dst)
                    .udp(40000, 53)
                    .payload(b"q")
                    .build(),
                6,
            ),
        ] {
            let mut f = want.clone();
            // a forwarding core in Skip mode leaves a stale L4 checksum
            let (l3, _) = wire::l3_offset(&f).unwrap();
            let at = l3 + 20 + csum_at;
            f[at] ^= 0x5a;
            let o = prepare_l4_offload(&mut f).expect("offloadable");
            assert_eq!(o.l2_len as usize, l3);
            assert_eq!(o.l3_len, 20);
            assert_eq!(o.flags & TX_IPV4, TX_IPV4);
            nic_finish(&mut f, o, csum_at);
            assert_eq!(f, want);
        }
    }

    #[test]
    fn leaves_alone_what_it_cannot_offload() {
        let src = Ipv4Addr::new(198, 18, 0, 2);
        let dst = Ipv4Addr::new(198, 18, 1, 11);
        let cases = [
            PacketBuilder::ethernet(A, B)
                .ipv4(src, dst)
                .udp(1, 2)
                .l4_checksum(0)
                .build(),
            PacketBuilder::ethernet(A, B)
                .ipv4(src, dst)
                .icmp_echo_request(1, 1)
                .build(),
            PacketBuilder::ethernet(A, B)
                .ipv4(src, dst)
                .tcp(1, 2, 0x02)
                .fragment(true, 0)
                .build(),
            PacketBuilder::ethernet(A, B)
                .arp_request(A, src, dst)
                .build(),
            vec![0u8; 10],
        ];
        for c in cases {
            let mut f = c.clone();
            assert_eq!(prepare_l4_offload(&mut f), None);
            assert_eq!(f, c, "unchanged");
        }
    }
}
