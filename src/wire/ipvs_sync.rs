//! IPVS connection synchronisation messages, protocol version 1 (and 0 on
//! receive), byte for byte as Linux writes and reads them
//! (`net/netfilter/ipvs/ip_vs_sync.c`).
//!
//! **What.** A sync message is one UDP datagram (default group 224.0.0.81,
//! port 8848 + sync thread id): an 8-byte header
//! `{reserved = 0, syncid, size (BE, whole datagram), nr_conns, version = 1,
//! spare = 0}` followed by `nr_conns` entries. An entry is a fixed part
//! (36 bytes for IPv4, 72 for IPv6: type with the IPv6 bit, protocol,
//! `ver_size` = 4-bit entry version 0 and 12-bit size, flags, state, client,
//! virtual and destination ports, fwmark, timeout in seconds, the three
//! addresses) and type-length-value options: `SEQ_DATA` (two
//! `ip_vs_seq {init_seq, delta, previous_delta}`, 24 bytes), `PE_DATA`,
//! `PE_NAME`. An entry's size counts its options but not padding; the next
//! entry starts at the next 4-byte boundary, and the last entry is not
//! padded (the kernel pads *before* appending, never at the end).
//! [`SyncMessageBuilder`] fills messages up to `sync_maxlen` and at most 255
//! entries (`nr_conns` is a byte), then starts the next one.
//! [`decode`] validates a datagram the way the kernel's
//! `ip_vs_process_message` / `ip_vs_proc_sync_conn` do.
//!
//! **Why.** A vsd backup must take what a kernel master sends and a kernel
//! backup what vsd sends, so the format is the kernel's, not our own.
//!
//! **FULLNAT.** The kernel format has no field for FULLNAT's local address
//! and port. The kernel's option parser switches on `type & ~0x40` and,
//! for a type it does not know, rejects the *entry* only if bit 0x40
//! (`IPVS_OPT_F_PARAM`, "optional") is clear, otherwise skips the option and
//! keeps the entry. vsd therefore sends FULLNAT connections with the MASQ
//! forwarding bits and an optional option [`VSD_OPT_FULLNAT`] (0x50 = 0x40 |
//! 0x10) holding the local address (same family as the entry) and port. A
//! kernel backup installs such an entry as a NAT connection to the same real
//! server (it cannot forward it usefully: the server answers the local
//! address, which only a vsd director owns) and is otherwise unaffected; the
//! type is not one the kernel uses (1, 2, 3; 7 is the flag's bit number), so
//! it never collides with a kernel option. Templates never carry it: a
//! template pins a client to a real server whatever the method.
//!
//! **SYN proxy.** A connection vsd's SYN proxy opened has its sequence
//! numbers shifted; vsd sends the shift as the kernel's own SEQ option
//! (`out_seq`, flag `OUT_SEQ`, see [`crate::lb::sync`]) and the rest of the
//! proxy's state (timestamp shift, window scales) in a second optional
//! option, [`VSD_OPT_SYNPROXY`] (0x51 = 0x40 | 0x11, 8 bytes), which a
//! kernel backup skips as it skips the FULLNAT one. It is only valid on a
//! connection that also carries the SEQ option.
//!
//! **Wireshark.** Its `ipvs` dissector (4.0 up to today's master) reads only
//! the fixed part of a version 1 entry and steps 36 or 72 bytes, ignoring
//! the entry size, options and padding; anything after an entry with
//! options is misread (the kernel's own SEQ entries included). The builder
//! therefore by default ends a message after an entry with options
//! ([`OptionPlacement::LastOnly`]); [`OptionPlacement::Packed`] packs as
//! the kernel does. The dissector also labels the IPv6 type (1) "Unknown"
//! (it expects 2) while decoding the IPv6 addresses correctly.
//!
//! **Failure modes.** Every reason the kernel drops a whole datagram is a
//! [`MessageError`] variant, every reason it drops one entry an
//! [`EntryError`] variant, so a caller can count drops by reason. Where the
//! kernel applies the entries before a datagram-fatal error and then stops,
//! vsd rejects the whole datagram first (nothing of a broken datagram is
//! applied). vsd is stricter than the kernel in three documented places:
//! bytes after the last of `nr_conns` entries ([`MessageError::TrailingData`];
//! the kernel ignores them, and never sends them), entry types other than
//! 0 and 1 ([`MessageError::EntryType`]; the kernel reads any odd type as
//! IPv6, but only ever sends 0 or 1) and headers that are
//! neither version 1 nor version 0 ([`MessageError::BadVersion`],
//! [`MessageError::BadSpare`]; the kernel reads those as version 0 with no
//! entry, i.e. ignores them too, silently).
//!
//! **Version 0.** A kernel master with `net.ipv4.vs.sync_version=0` sends
//! the pre-2.6.39 format: a 4-byte header `{nr_conns, syncid, size}` (a
//! non-zero first byte tells it from version 1) and 24-byte IPv4 entries
//! `{reserved, protocol, cport, vport, dport, caddr, vaddr, daddr, flags
//! (16 bit), state}`, followed by the 24-byte sequence data when the flags
//! say so, with no timeout and no fwmark. vsd decodes it as the kernel does
//! (`ip_vs_process_message_v0`), with timeout 0 (the receiver uses its own
//! table); its sequence data is copied from the sender's memory in host
//! byte order, so such an entry is dropped ([`EntryError::Version0SeqData`])
//! rather than guessed at. The decoder never panics on
//! any input (checked by a randomized test).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{read_u16, read_u32, write_u16};

/// Default multicast group of the sync daemons.
pub const SYNC_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 81);
/// Default UDP port (sync thread `n` uses `SYNC_PORT + n`).
pub const SYNC_PORT: u16 = 8848;
/// The protocol version in the header.
pub const SYNC_PROTO_VERSION: u8 = 1;

/// Header length (`struct ip_vs_sync_mesg`).
pub const HEADER_LEN: usize = 8;
/// Length of the fixed part of an IPv4 entry (`struct ip_vs_sync_v4`).
pub const ENTRY_V4_LEN: usize = 36;
/// Length of the fixed part of an IPv6 entry (`struct ip_vs_sync_v6`).
pub const ENTRY_V6_LEN: usize = 72;
/// Length of the SEQ_DATA option's value (`struct ip_vs_sync_conn_options`).
pub const SEQ_OPTION_LEN: usize = 24;
/// Most entries in one message: `nr_conns` is one byte.
pub const MAX_CONNS_PER_MESSAGE: usize = 255;
/// Largest `size` the header can state.
pub const MAX_MESSAGE_LEN: usize = u16::MAX as usize;
/// Largest entry vsd writes: IPv6, SEQ option, FULLNAT option.
pub const MAX_ENTRY_LEN: usize =
    ENTRY_V6_LEN + 2 + SEQ_OPTION_LEN + 2 + 18 + 2 + SYNPROXY_OPTION_LEN;
/// Smallest `sync_maxlen` the builder accepts: one entry of any kind fits.
pub const MIN_MAXLEN: usize = HEADER_LEN + MAX_ENTRY_LEN;

/// The kernel master's default `sync_maxlen` for IPv4 multicast: a
/// 1500-byte MTU less the IPv4 and UDP headers (`start_sync_thread`).
pub const DEFAULT_MAXLEN_V4: usize = 1500 - 20 - 8;
/// The same for IPv6 multicast.
pub const DEFAULT_MAXLEN_V6: usize = 1500 - 40 - 8;

/// Entry `type` bit: IPv6 addresses (`STYPE_F_INET6`).
pub const TYPE_F_INET6: u8 = 1;
/// `ver_size`: shift of the 4-bit entry version.
const VER_SHIFT: u16 = 12;
/// `ver_size`: mask of the 12-bit entry size.
const SIZE_MASK: u16 = 0x0fff;

/// Option type: sequence adjustment data.
pub const OPT_SEQ_DATA: u8 = 1;
/// Option type: persistence engine data.
pub const OPT_PE_DATA: u8 = 2;
/// Option type: persistence engine name.
pub const OPT_PE_NAME: u8 = 3;
/// Option type bit: the option may be skipped by a receiver that does not
/// know it (`IPVS_OPT_F_PARAM`, `1 << (IPVS_OPT_PARAM - 1)`).
pub const OPT_F_OPTIONAL: u8 = 0x40;
/// vsd's option: FULLNAT local address and port (optional, so a kernel
/// backup skips it; see the module note).
pub const VSD_OPT_FULLNAT: u8 = OPT_F_OPTIONAL | 0x10;
/// vsd's option: the SYN proxy's state beyond the sequence shift the SEQ
/// option carries (optional; see the module note).
pub const VSD_OPT_SYNPROXY: u8 = OPT_F_OPTIONAL | 0x11;
/// Length of [`VSD_OPT_SYNPROXY`]'s value.
pub const SYNPROXY_OPTION_LEN: usize = 8;
/// Longest PE name the kernel accepts (`IP_VS_PENAME_MAXLEN`).
pub const PE_NAME_MAX_LEN: usize = 16;

/// Connection flags (`IP_VS_CONN_F_*`, include/uapi/linux/ip_vs.h).
pub mod flags {
    /// Mask of the forwarding method.
    pub const FWD_MASK: u32 = 0x0007;
    /// NAT (also used on the wire for vsd FULLNAT, see the module note).
    pub const MASQ: u32 = 0x0000;
    /// Local node.
    pub const LOCALNODE: u32 = 0x0001;
    /// IP-in-IP tunnel.
    pub const TUNNEL: u32 = 0x0002;
    /// Direct routing.
    pub const DROUTE: u32 = 0x0003;
    /// Cache bypass.
    pub const BYPASS: u32 = 0x0004;
    /// Entry created by sync (set by the receiver).
    pub const SYNC: u32 = 0x0020;
    /// Hashed entry (never sent).
    pub const HASHED: u32 = 0x0040;
    /// No output packets seen.
    pub const NOOUTPUT: u32 = 0x0080;
    /// Not established (counted in InActConn).
    pub const INACTIVE: u32 = 0x0100;
    /// Output sequence adjustment.
    pub const OUT_SEQ: u32 = 0x0200;
    /// Input sequence adjustment.
    pub const IN_SEQ: u32 = 0x0400;
    /// Either sequence adjustment.
    pub const SEQ_MASK: u32 = 0x0600;
    /// Client port not set yet.
    pub const NO_CPORT: u32 = 0x0800;
    /// Persistence template, not a connection.
    pub const TEMPLATE: u32 = 0x1000;
    /// One-packet scheduling (never synced).
    pub const ONE_PACKET: u32 = 0x2000;
    /// Bits a backup takes from a received entry (`IP_VS_CONN_F_BACKUP_MASK`).
    pub const BACKUP_MASK: u32 = FWD_MASK | NOOUTPUT | INACTIVE | SEQ_MASK | NO_CPORT | TEMPLATE;
}

/// One direction's sequence adjustment (`struct ip_vs_seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeqAdjust {
    pub init_seq: u32,
    pub delta: u32,
    pub previous_delta: u32,
}

/// The SEQ_DATA option: input then output direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeqOptions {
    pub in_seq: SeqAdjust,
    pub out_seq: SeqAdjust,
}

/// What a backup needs, beyond the SEQ option's sequence shift, to go on
/// shifting a connection vsd's SYN proxy opened ([`crate::lb::synproxy`]):
/// the timestamp shift and the two window scales. Wire form, 8 bytes:
/// `ts_delta` (BE), flags (bit 0: timestamps in use), the server's window
/// shift, the client's, 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SynproxyState {
    pub ts: bool,
    pub ts_delta: u32,
    pub server_wscale: u8,
    pub client_wscale: u8,
}

/// One synced connection or template, as the wire carries it. All three
/// addresses share one family (the entry type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncConn {
    /// IP protocol number (6, 17; 0 for fwmark templates).
    pub protocol: u8,
    /// `IP_VS_CONN_F_*` bits. Decoded entries carry what a kernel backup
    /// keeps: the received bits masked with [`flags::BACKUP_MASK`], plus
    /// [`flags::SYNC`].
    pub flags: u32,
    /// Protocol state in the kernel's numbering.
    pub state: u16,
    pub client: SocketAddr,
    pub virt: SocketAddr,
    /// Real server.
    pub real: SocketAddr,
    pub fwmark: u32,
    /// Timeout of the current state, seconds (0: the receiver uses its own).
    pub timeout_s: u32,
    pub seq: Option<SeqOptions>,
    /// vsd FULLNAT: the local address and port towards the real server
    /// (connections only).
    pub fullnat_local: Option<SocketAddr>,
    /// vsd SYN proxy: the state beside `seq` (connections with `seq` only).
    pub synproxy: Option<SynproxyState>,
}

impl SyncConn {
    fn is_v6(&self) -> bool {
        self.client.is_ipv6()
    }

    /// Bytes this entry takes on the wire, without padding.
    pub fn wire_len(&self) -> usize {
        let (fixed, addr) = if self.is_v6() {
            (ENTRY_V6_LEN, 16)
        } else {
            (ENTRY_V4_LEN, 4)
        };
        fixed
            + self.seq.map_or(0, |_| 2 + SEQ_OPTION_LEN)
            + self.fullnat_local.map_or(0, |_| 2 + addr + 2)
            + self.synproxy.map_or(0, |_| 2 + SYNPROXY_OPTION_LEN)
    }

    /// Whether this is a persistence template.
    pub fn is_template(&self) -> bool {
        self.flags & flags::TEMPLATE != 0
    }
}

/// Why a datagram was dropped whole (the kernel drops it too, or, where
/// noted in the module documentation, vsd is stricter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageError {
    /// Shorter than a header.
    HeaderTooShort { len: usize },
    /// The header's size is not the datagram's length.
    SizeMismatch { header: u16, actual: usize },
    /// Sync ID other than the one the backup listens for.
    SyncIdMismatch { got: u8 },
    /// Header version other than 1.
    BadVersion(u8),
    /// Version 1 header with non-zero spare bytes.
    BadSpare,
    /// `nr_conns` promises an entry the datagram has no room for.
    EntryTruncated { index: u8 },
    /// An entry's size runs past the datagram.
    EntryOverrun { index: u8 },
    /// Entry version (upper 4 bits of `ver_size`) not 0.
    EntryVersion { index: u8, version: u8 },
    /// Entry type other than IPv4 (0) or IPv6 (1).
    EntryType { index: u8, entry_type: u8 },
    /// Entry size smaller than its fixed part.
    EntryTooSmall { index: u8, size: u16 },
    /// An option header or value runs past its entry.
    OptionTruncated { index: u8 },
    /// An option of length 0.
    OptionEmpty { index: u8 },
    /// SEQ_DATA of the wrong length or given twice.
    BadSeqOption { index: u8 },
    /// PE_DATA/PE_NAME too long or given twice.
    BadPeOption { index: u8 },
    /// Bytes after the last of `nr_conns` entries.
    TrailingData { extra: usize },
}

impl fmt::Display for MessageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MessageError::HeaderTooShort { len } => write!(f, "sync message of {len} bytes"),
            MessageError::SizeMismatch { header, actual } => {
                write!(f, "sync header size {header}, datagram {actual} bytes")
            }
            MessageError::SyncIdMismatch { got } => write!(f, "sync id {got} not ours"),
            MessageError::BadVersion(v) => write!(f, "sync protocol version {v}"),
            MessageError::BadSpare => f.write_str("sync header spare bytes not zero"),
            MessageError::EntryTruncated { index } => write!(f, "entry {index} truncated"),
            MessageError::EntryOverrun { index } => write!(f, "entry {index} runs past message"),
            MessageError::EntryVersion { index, version } => {
                write!(f, "entry {index} version {version}")
            }
            MessageError::EntryType { index, entry_type } => {
                write!(f, "entry {index} type {entry_type}")
            }
            MessageError::EntryTooSmall { index, size } => {
                write!(f, "entry {index} size {size} below its fixed part")
            }
            MessageError::OptionTruncated { index } => write!(f, "entry {index} option truncated"),
            MessageError::OptionEmpty { index } => write!(f, "entry {index} option of length 0"),
            MessageError::BadSeqOption { index } => write!(f, "entry {index} bad SEQ option"),
            MessageError::BadPeOption { index } => write!(f, "entry {index} bad PE option"),
            MessageError::TrailingData { extra } => {
                write!(f, "{extra} bytes after the last entry")
            }
        }
    }
}

impl std::error::Error for MessageError {}

/// Why one entry was dropped while the rest of its datagram is used (the
/// kernel's positive return codes of `ip_vs_proc_sync_conn`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryError {
    /// An option type the receiver does not know, not marked optional.
    UnknownMandatoryOption(u8),
    /// A protocol vsd does not balance (connections only; SCTP included).
    UnsupportedProtocol(u8),
    /// A state number outside the protocol's states.
    InvalidState { protocol: u8, state: u16 },
    /// Persistence-engine data: vsd has no persistence engines (the kernel
    /// drops the entry when it lacks the named engine).
    PersistenceEngine,
    /// Version 0 entry with sequence data (in the sender's byte order).
    Version0SeqData,
    /// vsd's FULLNAT option of the wrong length, given twice, on a
    /// template, or on an entry whose forwarding bits are not MASQ.
    BadFullnatOption,
    /// vsd's SYN proxy option of the wrong length, given twice, on a
    /// template, or without the SEQ option.
    BadSynproxyOption,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EntryError::UnknownMandatoryOption(t) => write!(f, "unknown mandatory option {t}"),
            EntryError::UnsupportedProtocol(p) => write!(f, "unsupported protocol {p}"),
            EntryError::InvalidState { protocol, state } => {
                write!(f, "invalid state {state} for protocol {protocol}")
            }
            EntryError::PersistenceEngine => f.write_str("persistence engine data not supported"),
            EntryError::Version0SeqData => f.write_str("version 0 sequence data"),
            EntryError::BadFullnatOption => f.write_str("bad FULLNAT option"),
            EntryError::BadSynproxyOption => f.write_str("bad SYN proxy option"),
        }
    }
}

impl std::error::Error for EntryError {}

/// A decoded datagram: its sync ID and each entry, or why that entry alone
/// was dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncMessage {
    /// Protocol version of the datagram (0 or 1).
    pub version: u8,
    pub syncid: u8,
    pub entries: Vec<Result<SyncConn, EntryError>>,
}

/// Number of states of a protocol the kernel syncs (`pp->num_states`), or
/// `None` for one vsd does not balance.
fn state_count(protocol: u8) -> Option<u16> {
    match protocol {
        6 => Some(11), // IP_VS_TCP_S_LAST
        17 => Some(1), // IP_VS_UDP_S_LAST
        _ => None,
    }
}

/// Decodes one datagram. `backup_syncid` 0 accepts any sync ID, as the
/// kernel does.
pub fn decode(buf: &[u8], backup_syncid: u8) -> Result<SyncMessage, MessageError> {
    if buf.len() < 4 {
        return Err(MessageError::HeaderTooShort { len: buf.len() });
    }
    let size = read_u16(buf, 2);
    if usize::from(size) != buf.len() {
        return Err(MessageError::SizeMismatch {
            header: size,
            actual: buf.len(),
        });
    }
    let syncid = buf[1];
    if backup_syncid != 0 && syncid != backup_syncid {
        return Err(MessageError::SyncIdMismatch { got: syncid });
    }
    if buf[0] != 0 {
        return decode_v0(buf);
    }
    if buf.len() < HEADER_LEN {
        return Err(MessageError::HeaderTooShort { len: buf.len() });
    }
    if buf[5] != SYNC_PROTO_VERSION {
        return Err(MessageError::BadVersion(buf[5]));
    }
    if buf[6] != 0 || buf[7] != 0 {
        return Err(MessageError::BadSpare);
    }
    let nr_conns = buf[4];
    let mut entries = Vec::with_capacity(usize::from(nr_conns));
    let mut at = HEADER_LEN;
    for index in 0..nr_conns {
        if at + ENTRY_V4_LEN > buf.len() {
            return Err(MessageError::EntryTruncated { index });
        }
        let ver_size = read_u16(buf, at + 2);
        let size = usize::from(ver_size & SIZE_MASK);
        let end = at + size;
        if end > buf.len() {
            return Err(MessageError::EntryOverrun { index });
        }
        if ver_size >> VER_SHIFT != 0 {
            return Err(MessageError::EntryVersion {
                index,
                version: (ver_size >> VER_SHIFT) as u8,
            });
        }
        entries.push(decode_entry(&buf[at..], size, index)?);
        // The next entry starts 32-bit aligned; the last has no padding,
        // which the bounds check of the next round or the end test allows.
        at += (size + 3) & !3;
    }
    if at < buf.len() {
        return Err(MessageError::TrailingData {
            extra: buf.len() - at,
        });
    }
    Ok(SyncMessage {
        version: SYNC_PROTO_VERSION,
        syncid,
        entries,
    })
}

/// Version 0 header length (`struct ip_vs_sync_mesg_v0`).
pub const HEADER_V0_LEN: usize = 4;
/// Version 0 entry length (`struct ip_vs_sync_conn_v0`).
pub const ENTRY_V0_LEN: usize = 24;

/// A version 0 datagram whose header checks (size, sync ID) passed.
fn decode_v0(buf: &[u8]) -> Result<SyncMessage, MessageError> {
    let nr_conns = buf[0];
    let mut entries = Vec::with_capacity(usize::from(nr_conns));
    let mut at = HEADER_V0_LEN;
    for index in 0..nr_conns {
        if at + ENTRY_V0_LEN > buf.len() {
            return Err(MessageError::EntryTruncated { index });
        }
        let e = &buf[at..at + ENTRY_V0_LEN];
        let flags = (u32::from(read_u16(e, 20)) | flags::SYNC) & !flags::HASHED;
        at += ENTRY_V0_LEN;
        let with_seq = flags & flags::SEQ_MASK != 0;
        if with_seq {
            if at + SEQ_OPTION_LEN > buf.len() {
                return Err(MessageError::OptionTruncated { index });
            }
            at += SEQ_OPTION_LEN;
        }
        let (protocol, state) = (e[1], read_u16(e, 22));
        if flags & flags::TEMPLATE == 0 {
            let Some(count) = state_count(protocol) else {
                entries.push(Err(EntryError::UnsupportedProtocol(protocol)));
                continue;
            };
            if state >= count {
                entries.push(Err(EntryError::InvalidState { protocol, state }));
                continue;
            }
        }
        if with_seq {
            entries.push(Err(EntryError::Version0SeqData));
            continue;
        }
        let addr = |o: usize| IpAddr::V4(Ipv4Addr::from(read_u32(e, o)));
        entries.push(Ok(SyncConn {
            protocol,
            flags,
            state,
            client: SocketAddr::new(addr(8), read_u16(e, 2)),
            virt: SocketAddr::new(addr(12), read_u16(e, 4)),
            real: SocketAddr::new(addr(16), read_u16(e, 6)),
            fwmark: 0,
            timeout_s: 0,
            seq: None,
            fullnat_local: None,
            synproxy: None,
        }));
    }
    if at < buf.len() {
        return Err(MessageError::TrailingData {
            extra: buf.len() - at,
        });
    }
    Ok(SyncMessage {
        version: 0,
        syncid: buf[1],
        entries,
    })
}

/// One entry: `rest` starts at the entry and holds at least an IPv4 entry's
/// fixed part and `size` bytes. Outer error: drop the datagram; inner: drop
/// this entry.
fn decode_entry(
    rest: &[u8],
    size: usize,
    index: u8,
) -> Result<Result<SyncConn, EntryError>, MessageError> {
    let entry_type = rest[0];
    let (fixed, v6) = match entry_type {
        0 => (ENTRY_V4_LEN, false),
        TYPE_F_INET6 => (ENTRY_V6_LEN, true),
        _ => return Err(MessageError::EntryType { index, entry_type }),
    };
    if size < fixed {
        return Err(MessageError::EntryTooSmall {
            index,
            size: size as u16,
        });
    }
    let entry = &rest[..size];
    // Options, in the kernel's order: framing errors drop the datagram, an
    // unknown mandatory option drops the entry at once (later options are
    // not looked at), protocol and state are checked after all options.
    let mut seq = None;
    let mut pe_data = false;
    let mut pe_name = false;
    let mut local = None;
    let mut synproxy = None;
    let mut p = fixed;
    while p < entry.len() {
        if p + 2 > entry.len() {
            return Err(MessageError::OptionTruncated { index });
        }
        let (ptype, plen) = (entry[p], usize::from(entry[p + 1]));
        p += 2;
        if plen == 0 {
            return Err(MessageError::OptionEmpty { index });
        }
        if p + plen > entry.len() {
            return Err(MessageError::OptionTruncated { index });
        }
        let value = &entry[p..p + plen];
        match ptype & !OPT_F_OPTIONAL {
            OPT_SEQ_DATA => {
                if plen != SEQ_OPTION_LEN || seq.is_some() {
                    return Err(MessageError::BadSeqOption { index });
                }
                let adj = |o: usize| SeqAdjust {
                    init_seq: read_u32(value, o),
                    delta: read_u32(value, o + 4),
                    previous_delta: read_u32(value, o + 8),
                };
                seq = Some(SeqOptions {
                    in_seq: adj(0),
                    out_seq: adj(12),
                });
            }
            OPT_PE_DATA => {
                // Any u8 length is within IP_VS_PEDATA_MAXLEN (255).
                if pe_data {
                    return Err(MessageError::BadPeOption { index });
                }
                pe_data = true;
            }
            OPT_PE_NAME => {
                if plen > PE_NAME_MAX_LEN || pe_name {
                    return Err(MessageError::BadPeOption { index });
                }
                pe_name = true;
            }
            _ if ptype == VSD_OPT_FULLNAT => {
                let addr_len = if v6 { 16 } else { 4 };
                if plen != addr_len + 2 || local.is_some() {
                    return Ok(Err(EntryError::BadFullnatOption));
                } else {
                    let ip = read_ip(value, 0, v6);
                    local = Some(SocketAddr::new(ip, read_u16(value, addr_len)));
                }
            }
            _ if ptype == VSD_OPT_SYNPROXY => {
                if plen != SYNPROXY_OPTION_LEN || synproxy.is_some() {
                    return Ok(Err(EntryError::BadSynproxyOption));
                }
                synproxy = Some(SynproxyState {
                    ts_delta: read_u32(value, 0),
                    ts: value[4] & 1 != 0,
                    server_wscale: value[5],
                    client_wscale: value[6],
                });
            }
            _ if ptype & OPT_F_OPTIONAL != 0 => {}
            _ => return Ok(Err(EntryError::UnknownMandatoryOption(ptype))),
        }
        p += plen;
    }
    let flags = (read_u32(entry, 4) & flags::BACKUP_MASK) | flags::SYNC;
    let protocol = entry[1];
    let state = read_u16(entry, 8);
    if flags & flags::TEMPLATE == 0 {
        let Some(count) = state_count(protocol) else {
            return Ok(Err(EntryError::UnsupportedProtocol(protocol)));
        };
        if state >= count {
            return Ok(Err(EntryError::InvalidState { protocol, state }));
        }
    }
    if pe_data || pe_name {
        return Ok(Err(EntryError::PersistenceEngine));
    }
    if local.is_some() && flags & (flags::FWD_MASK | flags::TEMPLATE) != flags::MASQ {
        return Ok(Err(EntryError::BadFullnatOption));
    }
    if synproxy.is_some() && (seq.is_none() || flags & flags::TEMPLATE != 0) {
        return Ok(Err(EntryError::BadSynproxyOption));
    }
    let addr_len = if v6 { 16 } else { 4 };
    let addr = |n: usize| read_ip(entry, 24 + n * addr_len, v6);
    Ok(Ok(SyncConn {
        protocol,
        flags,
        state,
        client: SocketAddr::new(addr(0), read_u16(entry, 10)),
        virt: SocketAddr::new(addr(1), read_u16(entry, 12)),
        real: SocketAddr::new(addr(2), read_u16(entry, 14)),
        fwmark: read_u32(entry, 16),
        timeout_s: read_u32(entry, 20),
        seq,
        fullnat_local: local,
        synproxy,
    }))
}

fn read_ip(buf: &[u8], at: usize, v6: bool) -> IpAddr {
    if v6 {
        let mut o = [0u8; 16];
        o.copy_from_slice(&buf[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(o))
    } else {
        IpAddr::V4(Ipv4Addr::from(read_u32(buf, at)))
    }
}

/// What the encoder needs of one entry whose three addresses (and local
/// address) are `N` bytes (4: IPv4, 16: IPv6), in network order.
/// [`SyncConn`] implements it (through a view of its family) and so does
/// the connection table's record ([`crate::lb::sync::SyncRecord`]), which
/// the data-plane master encodes on the forwarding core without building
/// a `SyncConn`: one encoder, [`SyncMessageBuilder::push_entry_then`],
/// writes both, so both transports send the same bytes.
pub trait SyncEntry<const N: usize> {
    fn protocol(&self) -> u8;
    /// `IP_VS_CONN_F_*` bits (`HASHED` and `SYNC` are never sent).
    fn flags(&self) -> u32;
    fn state(&self) -> u16;
    fn fwmark(&self) -> u32;
    fn timeout_s(&self) -> u32;
    /// Client, virtual and real server: address and port.
    fn endpoints(&self) -> [([u8; N], u16); 3];
    /// vsd FULLNAT's local address and port.
    fn fullnat_local(&self) -> Option<([u8; N], u16)>;
    fn seq(&self) -> Option<SeqOptions>;
    fn synproxy(&self) -> Option<SynproxyState>;
}

/// A [`SyncConn`] of one family as a [`SyncEntry`] (the builder checked
/// that every address is of that family).
struct ConnOf<'a, const N: usize>(&'a SyncConn);

/// The `N` bytes of `ip` (zeros for the other family, which the
/// builder's check rules out).
fn octets_of<const N: usize>(ip: IpAddr) -> [u8; N] {
    let mut o = [0u8; N];
    match ip {
        IpAddr::V4(a) if N == 4 => o.copy_from_slice(&a.octets()),
        IpAddr::V6(a) if N == 16 => o.copy_from_slice(&a.octets()),
        _ => {}
    }
    o
}

impl<const N: usize> SyncEntry<N> for ConnOf<'_, N> {
    fn protocol(&self) -> u8 {
        self.0.protocol
    }
    fn flags(&self) -> u32 {
        self.0.flags
    }
    fn state(&self) -> u16 {
        self.0.state
    }
    fn fwmark(&self) -> u32 {
        self.0.fwmark
    }
    fn timeout_s(&self) -> u32 {
        self.0.timeout_s
    }
    fn endpoints(&self) -> [([u8; N], u16); 3] {
        [self.0.client, self.0.virt, self.0.real].map(|a| (octets_of(a.ip()), a.port()))
    }
    fn fullnat_local(&self) -> Option<([u8; N], u16)> {
        self.0.fullnat_local.map(|a| (octets_of(a.ip()), a.port()))
    }
    fn seq(&self) -> Option<SeqOptions> {
        self.0.seq
    }
    fn synproxy(&self) -> Option<SynproxyState> {
        self.0.synproxy
    }
}

/// Wire length of an entry of `N`-byte addresses, without padding.
#[inline(always)]
fn entry_len<const N: usize>(e: &impl SyncEntry<N>) -> usize {
    24 + 3 * N
        + if e.seq().is_some() {
            2 + SEQ_OPTION_LEN
        } else {
            0
        }
        + if e.fullnat_local().is_some() {
            2 + N + 2
        } else {
            0
        }
        + if e.synproxy().is_some() {
            2 + SYNPROXY_OPTION_LEN
        } else {
            0
        }
}

/// Writes `e` (checked, `len` = [`entry_len`]) into `out`, exactly `len`
/// bytes: the fixed part in one fixed-layout write, then the options.
#[inline(always)]
fn write_entry<const N: usize>(e: &impl SyncEntry<N>, len: usize, out: &mut [u8]) {
    let Some((head, rest)) = out.split_first_chunk_mut::<24>() else {
        return;
    };
    let [c, v, r] = e.endpoints();
    let ty = if N == 16 { TYPE_F_INET6 } else { 0 };
    let size = (len as u16 & SIZE_MASK).to_be_bytes();
    let fl = (e.flags() & !(flags::HASHED | flags::SYNC)).to_be_bytes();
    let st = e.state().to_be_bytes();
    let (cp, vp, rp) = (c.1.to_be_bytes(), v.1.to_be_bytes(), r.1.to_be_bytes());
    let fm = e.fwmark().to_be_bytes();
    let to = e.timeout_s().to_be_bytes();
    *head = [
        ty,
        e.protocol(),
        size[0],
        size[1],
        fl[0],
        fl[1],
        fl[2],
        fl[3],
        st[0],
        st[1],
        cp[0],
        cp[1],
        vp[0],
        vp[1],
        rp[0],
        rp[1],
        fm[0],
        fm[1],
        fm[2],
        fm[3],
        to[0],
        to[1],
        to[2],
        to[3],
    ];
    let mut w = OptionWriter { out: rest };
    w.put(&c.0);
    w.put(&v.0);
    w.put(&r.0);
    if let Some(seq) = e.seq() {
        let mut o = [0u8; 2 + SEQ_OPTION_LEN];
        o[0] = OPT_SEQ_DATA;
        o[1] = SEQ_OPTION_LEN as u8;
        let vals = [seq.in_seq, seq.out_seq].map(|s| [s.init_seq, s.delta, s.previous_delta]);
        for (chunk, v) in o[2..].chunks_exact_mut(4).zip(vals.iter().flatten()) {
            chunk.copy_from_slice(&v.to_be_bytes());
        }
        w.put(&o);
    }
    if let Some((addr, port)) = e.fullnat_local() {
        w.put(&[VSD_OPT_FULLNAT, N as u8 + 2]);
        w.put(&addr);
        w.put(&port.to_be_bytes());
    }
    if let Some(sp) = e.synproxy() {
        let d = sp.ts_delta.to_be_bytes();
        w.put(&[
            VSD_OPT_SYNPROXY,
            SYNPROXY_OPTION_LEN as u8,
            d[0],
            d[1],
            d[2],
            d[3],
            u8::from(sp.ts),
            sp.server_wscale,
            sp.client_wscale,
            0,
        ]);
    }
}

/// Writes at the front of what is left of an entry's bytes (sized by
/// [`entry_len`] beforehand, so a write never falls short; one that would
/// is dropped rather than panicking).
struct OptionWriter<'a> {
    out: &'a mut [u8],
}

impl OptionWriter<'_> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        let out = std::mem::take(&mut self.out);
        if let Some((dst, rest)) = out.split_at_mut_checked(bytes.len()) {
            dst.copy_from_slice(bytes);
            self.out = rest;
        }
    }
}

/// Why an entry cannot be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncodeError {
    /// Client, virtual, real (and local) addresses of different families.
    MixedFamilies,
    /// One-packet connections are never synced (the kernel skips them).
    OnePacket,
    /// FULLNAT option on a template or with forwarding bits other than MASQ.
    FullnatNotMasq,
    /// `sync_maxlen` outside [`MIN_MAXLEN`]..=[`MAX_MESSAGE_LEN`].
    BadMaxlen(usize),
    /// SYN proxy option on a template or without the SEQ option.
    SynproxyWithoutSeq,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EncodeError::MixedFamilies => f.write_str("addresses of different families"),
            EncodeError::OnePacket => f.write_str("one-packet connections are not synced"),
            EncodeError::FullnatNotMasq => {
                f.write_str("FULLNAT option on a template or without MASQ bits")
            }
            EncodeError::SynproxyWithoutSeq => {
                f.write_str("SYN proxy option on a template or without SEQ data")
            }
            EncodeError::BadMaxlen(n) => {
                write!(
                    f,
                    "sync_maxlen {n} outside {MIN_MAXLEN}..={MAX_MESSAGE_LEN}"
                )
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// Where entries with options (SEQ, FULLNAT) may go in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionPlacement {
    /// Anywhere, as the kernel master packs them: densest.
    Packed,
    /// At most one per message, as its last entry, so that Wireshark
    /// decodes every message (see the module note). The kernel accepts
    /// both placements.
    LastOnly,
}

/// Fills version 1 messages up to `sync_maxlen` bytes and 255 entries, as
/// the kernel master does, handing out each full message.
#[derive(Debug)]
pub struct SyncMessageBuilder {
    syncid: u8,
    maxlen: usize,
    /// `maxlen` bytes, allocated once; the message is `buf[..len]`, its
    /// header's size and count written when it is handed out.
    buf: Vec<u8>,
    len: usize,
    nr_conns: u8,
    placement: OptionPlacement,
    /// The last entry has options and placement is `LastOnly`.
    sealed: bool,
}

impl SyncMessageBuilder {
    /// A builder for `syncid` and datagrams of at most `maxlen` bytes that
    /// keeps every message readable by Wireshark ([`OptionPlacement::LastOnly`]).
    pub fn new(syncid: u8, maxlen: usize) -> Result<Self, EncodeError> {
        Self::with_placement(syncid, maxlen, OptionPlacement::LastOnly)
    }

    /// A builder with an explicit placement of entries with options.
    pub fn with_placement(
        syncid: u8,
        maxlen: usize,
        placement: OptionPlacement,
    ) -> Result<Self, EncodeError> {
        if !(MIN_MAXLEN..=MAX_MESSAGE_LEN).contains(&maxlen) {
            return Err(EncodeError::BadMaxlen(maxlen));
        }
        let mut b = SyncMessageBuilder {
            syncid,
            maxlen,
            buf: vec![0; maxlen],
            len: HEADER_LEN,
            nr_conns: 0,
            placement,
            sealed: false,
        };
        b.reset();
        Ok(b)
    }

    fn reset(&mut self) {
        if let Some(h) = self.buf.first_chunk_mut::<HEADER_LEN>() {
            *h = [0, self.syncid, 0, 0, 0, SYNC_PROTO_VERSION, 0, 0];
        }
        self.len = HEADER_LEN;
        self.nr_conns = 0;
        self.sealed = false;
    }

    /// The message being filled, its header completed.
    fn message(&mut self) -> &[u8] {
        let size = self.len as u16;
        write_u16(&mut self.buf, 2, size);
        self.buf[4] = self.nr_conns;
        &self.buf[..self.len]
    }

    /// Entries in the message being filled.
    pub fn pending(&self) -> usize {
        usize::from(self.nr_conns)
    }

    /// Appends `conn`. If it does not fit into the current message (bytes
    /// or entry count), that message is finished and returned and `conn`
    /// starts the next one.
    pub fn push(&mut self, conn: &SyncConn) -> Result<Option<Vec<u8>>, EncodeError> {
        let mut done = None;
        self.push_then(conn, |msg| done = Some(msg.to_vec()))?;
        Ok(done)
    }

    /// [`Self::push`] without allocating: a message `conn` does not fit
    /// into is handed to `full` (its exact bytes) and the builder reuses its
    /// buffer for the next one (the data plane's sync transport).
    pub fn push_then(
        &mut self,
        conn: &SyncConn,
        full: impl FnOnce(&[u8]),
    ) -> Result<(), EncodeError> {
        let v6 = conn.is_v6();
        let same = |a: &SocketAddr| a.is_ipv6() == v6;
        if !same(&conn.virt) || !same(&conn.real) || !conn.fullnat_local.iter().all(same) {
            return Err(EncodeError::MixedFamilies);
        }
        if v6 {
            self.push_entry_then::<16>(&ConnOf(conn), full)
        } else {
            self.push_entry_then::<4>(&ConnOf(conn), full)
        }
    }

    /// [`Self::push_then`] for any [`SyncEntry`]: the one encoder of both
    /// transports. The entry is checked, then written in place into the
    /// message buffer (no intermediate [`SyncConn`], no capacity check per
    /// field).
    #[inline]
    pub fn push_entry_then<const N: usize>(
        &mut self,
        e: &impl SyncEntry<N>,
        full: impl FnOnce(&[u8]),
    ) -> Result<(), EncodeError> {
        let fl = e.flags();
        if fl & flags::ONE_PACKET != 0 {
            return Err(EncodeError::OnePacket);
        }
        if e.fullnat_local().is_some() && fl & (flags::FWD_MASK | flags::TEMPLATE) != flags::MASQ {
            return Err(EncodeError::FullnatNotMasq);
        }
        if e.synproxy().is_some() && (e.seq().is_none() || fl & flags::TEMPLATE != 0) {
            return Err(EncodeError::SynproxyWithoutSeq);
        }
        let len = entry_len(e);
        // a message that holds an entry and has no room for this one (in
        // bytes or entries), or is sealed, goes out first
        let pad = self.len.wrapping_neg() & 3;
        if self.nr_conns > 0
            && (self.len + pad + len > self.maxlen
                || usize::from(self.nr_conns) == MAX_CONNS_PER_MESSAGE
                || self.sealed)
        {
            full(self.message());
            self.reset();
        }
        let pad = self.len.wrapping_neg() & 3;
        let start = self.len + pad;
        // fits: an entry is at most MAX_ENTRY_LEN, maxlen at least
        // MIN_MAXLEN, and a fuller message was sent above
        debug_assert!(start + len <= self.maxlen, "entry past maxlen");
        let Some(out) = self.buf.get_mut(self.len..start + len) else {
            return Ok(());
        };
        // the padding (0 to 3 bytes of a reused buffer): four zeros the
        // entry then overwrites, one store rather than a variable-length fill
        if let Some(z) = out.first_chunk_mut::<4>() {
            *z = [0; 4];
        }
        if let Some(entry) = out.get_mut(pad..) {
            write_entry(e, len, entry);
        }
        self.len = start + len;
        self.nr_conns += 1;
        if self.placement == OptionPlacement::LastOnly && len > 24 + 3 * N {
            self.sealed = true;
        }
        Ok(())
    }

    /// [`Self::finish`] without allocating: the message being filled, if it
    /// holds an entry, goes to `send`, and the builder starts afresh.
    pub fn finish_then(&mut self, send: impl FnOnce(&[u8])) -> bool {
        if self.nr_conns == 0 {
            return false;
        }
        send(self.message());
        self.reset();
        true
    }

    /// Finishes the current message (`None` if it holds no entry).
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        let mut done = None;
        self.finish_then(|msg| done = Some(msg.to_vec()));
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::testutil::{hex, XorShift};

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn v4_dr() -> SyncConn {
        SyncConn {
            protocol: 6,
            flags: flags::DROUTE,
            state: 1,
            client: sa("198.18.0.1:12345"),
            virt: sa("198.18.1.1:80"),
            real: sa("198.18.2.1:8080"),
            fwmark: 0,
            timeout_s: 900,
            seq: None,
            fullnat_local: None,
            synproxy: None,
        }
    }

    /// A kernel master's message with one IPv4 DR connection, laid out
    /// field by field from `struct ip_vs_sync_mesg` and `struct ip_vs_sync_v4`.
    const KERNEL_V4_DR: &str = "
        00 07 002c 01 01 0000
        00 06 0024 00000003 0001 3039 0050 1f90 00000000 00000384
        c6120001 c6120101 c6120201";

    /// Two entries: IPv4 NAT with SEQ_DATA (62 bytes, so 2 bytes of padding
    /// follow) and an IPv6 DR persistence template (last: no padding).
    const KERNEL_SEQ_AND_V6_TEMPLATE: &str = "
        00 07 0090 02 01 0000
        00 06 003e 00000600 0004 3039 0050 0050 00000000 00000078
        c6120001 c6120101 c6120201
        01 18 00000064 00000005 00000002 000000c8 0000000a 00000000
        0000
        01 06 0048 00001003 0000 0000 0050 0050 00000000 0000012c
        20010db8000000000000000000000000
        20010db8000000000000000000000001
        20010db8000000000000000000000002";

    fn seq_and_template() -> [SyncConn; 2] {
        [
            SyncConn {
                protocol: 6,
                flags: flags::MASQ | flags::SEQ_MASK,
                state: 4,
                client: sa("198.18.0.1:12345"),
                virt: sa("198.18.1.1:80"),
                real: sa("198.18.2.1:80"),
                fwmark: 0,
                timeout_s: 120,
                seq: Some(SeqOptions {
                    in_seq: SeqAdjust {
                        init_seq: 100,
                        delta: 5,
                        previous_delta: 2,
                    },
                    out_seq: SeqAdjust {
                        init_seq: 200,
                        delta: 10,
                        previous_delta: 0,
                    },
                }),
                fullnat_local: None,
                synproxy: None,
            },
            SyncConn {
                protocol: 6,
                flags: flags::TEMPLATE | flags::DROUTE,
                state: 0,
                client: sa("[2001:db8::]:0"),
                virt: sa("[2001:db8::1]:80"),
                real: sa("[2001:db8::2]:80"),
                fwmark: 0,
                timeout_s: 300,
                seq: None,
                fullnat_local: None,
                synproxy: None,
            },
        ]
    }

    fn encode_all(syncid: u8, maxlen: usize, conns: &[SyncConn]) -> Vec<Vec<u8>> {
        encode_with(OptionPlacement::Packed, syncid, maxlen, conns)
    }

    fn encode_with(
        placement: OptionPlacement,
        syncid: u8,
        maxlen: usize,
        conns: &[SyncConn],
    ) -> Vec<Vec<u8>> {
        let mut b = SyncMessageBuilder::with_placement(syncid, maxlen, placement).unwrap();
        let mut out = Vec::new();
        for c in conns {
            out.extend(b.push(c).unwrap());
        }
        out.extend(b.finish());
        out
    }

    fn received(mut c: SyncConn) -> SyncConn {
        c.flags = (c.flags & flags::BACKUP_MASK) | flags::SYNC;
        c
    }

    #[test]
    fn encodes_kernel_layout_byte_for_byte() {
        assert_eq!(encode_all(7, 1500, &[v4_dr()]), vec![hex(KERNEL_V4_DR)]);
        assert_eq!(
            encode_all(7, 1500, &seq_and_template()),
            vec![hex(KERNEL_SEQ_AND_V6_TEMPLATE)]
        );
    }

    #[test]
    fn last_only_placement_ends_a_message_after_an_entry_with_options() {
        let [seq, tpl] = seq_and_template();
        let conns = [v4_dr(), seq, v4_dr(), tpl, seq, seq];
        let msgs = encode_with(OptionPlacement::LastOnly, 7, 1500, &conns);
        // [dr, seq] [dr, tpl, seq] [seq]
        assert_eq!(msgs.iter().map(|m| m[4]).collect::<Vec<_>>(), vec![2, 3, 1]);
        let mut all = Vec::new();
        for m in &msgs {
            let entries = decode(m, 7).unwrap().entries;
            let with_opts = entries.iter().position(|e| e.unwrap().seq.is_some());
            assert!(with_opts.is_none_or(|i| i == entries.len() - 1));
            all.extend(entries);
        }
        let want: Vec<_> = conns.iter().map(|c| Ok(received(*c))).collect();
        assert_eq!(all, want);
        assert_eq!(
            encode_with(OptionPlacement::Packed, 7, 1500, &conns).len(),
            1
        );
    }

    #[test]
    fn decodes_kernel_layout() {
        let m = decode(&hex(KERNEL_V4_DR), 7).unwrap();
        assert_eq!(m.syncid, 7);
        assert_eq!(m.entries, vec![Ok(received(v4_dr()))]);
        let m = decode(&hex(KERNEL_SEQ_AND_V6_TEMPLATE), 0).unwrap();
        let want: Vec<_> = seq_and_template()
            .into_iter()
            .map(|c| Ok(received(c)))
            .collect();
        assert_eq!(m.entries, want);
        assert!(m.entries[1].unwrap().is_template());
        // Receivers mark entries as synced and drop bits a backup must not take.
        let mut raw = hex(KERNEL_V4_DR);
        raw[8 + 7] |= (flags::HASHED | flags::ONE_PACKET) as u8; // 0x40 in the low byte
        raw[8 + 6] |= (flags::ONE_PACKET >> 8) as u8;
        let c = decode(&raw, 0).unwrap().entries[0].unwrap();
        assert_eq!(c.flags, flags::DROUTE | flags::SYNC);
    }

    /// A kernel master with `sync_version=0`: header `{nr_conns, syncid,
    /// size}`, then `struct ip_vs_sync_conn_v0` entries.
    const KERNEL_V0: &str = "
        03 07 0064
        00 06 3039 0050 1f90 c6120001 c6120101 c6120201 0003 0001
        00 11 d431 0035 0035 c6120002 c6120102 c6120202 0100 0000
        00 06 3039 0015 0015 c6120003 c6120103 c6120203 0600 0001
        000000640000000500000002 000000c80000000a00000000";

    #[test]
    fn decodes_kernel_version_0() {
        let m = decode(&hex(KERNEL_V0), 7).unwrap();
        assert_eq!(m.version, 0);
        let mut dr = v4_dr();
        dr.timeout_s = 0;
        let mut udp = dr;
        udp.protocol = 17;
        udp.flags = flags::MASQ | flags::INACTIVE;
        udp.state = 0;
        udp.client = sa("198.18.0.2:54321");
        udp.virt = sa("198.18.1.2:53");
        udp.real = sa("198.18.2.2:53");
        assert_eq!(
            m.entries,
            vec![
                Ok(received(dr)),
                Ok(received(udp)),
                Err(EntryError::Version0SeqData)
            ]
        );
        let v0 = hex(KERNEL_V0);
        assert_eq!(decode(&v0, 8), Err(MessageError::SyncIdMismatch { got: 7 }));
        // One more entry promised than present; the SEQ data cut short.
        let mut more = v0.clone();
        more[0] = 4;
        assert_eq!(
            decode(&more, 0),
            Err(MessageError::EntryTruncated { index: 3 })
        );
        let mut cut = v0[..v0.len() - 4].to_vec();
        cut[3] -= 4;
        assert_eq!(
            decode(&cut, 0),
            Err(MessageError::OptionTruncated { index: 2 })
        );
        let mut less = v0.clone();
        less[0] = 2;
        assert_eq!(
            decode(&less, 0),
            Err(MessageError::TrailingData { extra: 48 })
        );
        let mut bad_state = v0;
        bad_state[4 + 22..4 + 24].copy_from_slice(&[0, 11]);
        assert_eq!(
            decode(&bad_state, 0).unwrap().entries[0],
            Err(EntryError::InvalidState {
                protocol: 6,
                state: 11
            })
        );
    }

    #[test]
    fn fullnat_option_roundtrips_and_is_optional_for_the_kernel() {
        let mut c = v4_dr();
        c.flags = flags::MASQ;
        c.fullnat_local = Some(sa("198.18.3.1:40000"));
        let msgs = encode_all(1, 1500, &[c]);
        let m = &msgs[0];
        // Fixed part, then type 0x50 (optional bit set), length 6, address, port.
        assert_eq!(&m[8 + 36..], &hex("50 06 c6120301 9c40")[..]);
        assert_eq!(m[8 + 36] & OPT_F_OPTIONAL, OPT_F_OPTIONAL);
        assert!(![OPT_SEQ_DATA, OPT_PE_DATA, OPT_PE_NAME].contains(&(m[8 + 36] & !OPT_F_OPTIONAL)));
        assert_eq!(decode(m, 0).unwrap().entries, vec![Ok(received(c))]);
        // IPv6: 16-byte address.
        let mut c6 = seq_and_template()[1];
        c6.flags = flags::MASQ;
        c6.fullnat_local = Some(sa("[2001:db8::9]:1024"));
        let m = &encode_all(1, 1500, &[c6])[0];
        assert_eq!(decode(m, 0).unwrap().entries, vec![Ok(received(c6))]);
        // Not with other methods, not on templates.
        let mut b = SyncMessageBuilder::new(1, 1500).unwrap();
        c.flags = flags::DROUTE;
        assert_eq!(b.push(&c), Err(EncodeError::FullnatNotMasq));
        c.flags = flags::MASQ | flags::TEMPLATE;
        assert_eq!(b.push(&c), Err(EncodeError::FullnatNotMasq));
    }

    #[test]
    fn synproxy_option_follows_seq_and_is_optional_for_the_kernel() {
        let mut c = v4_dr();
        c.flags = flags::MASQ | flags::OUT_SEQ;
        c.seq = Some(SeqOptions {
            in_seq: SeqAdjust::default(),
            out_seq: SeqAdjust {
                init_seq: 0x5000_0000,
                delta: 0x1234_5678,
                previous_delta: 0,
            },
        });
        c.synproxy = Some(SynproxyState {
            ts: true,
            ts_delta: 0xdead_beef,
            server_wscale: 9,
            client_wscale: 7,
        });
        let m = &encode_all(1, 1500, &[c])[0];
        // fixed part, the kernel's SEQ option (in_seq zero, out_seq), then
        // type 0x51 (optional bit set), length 8
        assert_eq!(
            &m[8 + 36..],
            &hex(
                "01 18 00000000 00000000 00000000 50000000 12345678 00000000 \
                 51 08 deadbeef 01 09 07 00"
            )[..]
        );
        assert_eq!(m[8 + 36 + 26] & OPT_F_OPTIONAL, OPT_F_OPTIONAL);
        assert_eq!(decode(m, 0).unwrap().entries, vec![Ok(received(c))]);
        // never without the SEQ option, never on a template
        let mut b = SyncMessageBuilder::new(1, 1500).unwrap();
        let mut bare = c;
        bare.seq = None;
        assert_eq!(b.push(&bare), Err(EncodeError::SynproxyWithoutSeq));
        let mut t = c;
        t.flags |= flags::TEMPLATE;
        assert_eq!(b.push(&t), Err(EncodeError::SynproxyWithoutSeq));
        // received without SEQ data, or with a wrong length: that entry only
        let mut raw = m.clone();
        raw[8 + 36 + 26 + 1] = 7;
        raw.truncate(raw.len() - 1);
        let n = raw.len() as u16;
        raw[2..4].copy_from_slice(&n.to_be_bytes());
        let size = (n as usize - 8) as u16;
        raw[8 + 2..8 + 4].copy_from_slice(&size.to_be_bytes());
        assert_eq!(
            decode(&raw, 0).unwrap().entries,
            vec![Err(EntryError::BadSynproxyOption)]
        );
        let mut only = m[..8 + 36].to_vec();
        only.extend_from_slice(&m[8 + 36 + 26..]);
        let n = only.len() as u16;
        only[2..4].copy_from_slice(&n.to_be_bytes());
        only[8 + 2..8 + 4].copy_from_slice(&(n - 8).to_be_bytes());
        assert_eq!(
            decode(&only, 0).unwrap().entries,
            vec![Err(EntryError::BadSynproxyOption)]
        );
    }

    #[test]
    fn builder_splits_at_maxlen_and_255_entries() {
        // 1472-byte datagrams (1500 MTU): (1472 - 8) / 36 = 40 entries each.
        let conns: Vec<SyncConn> = (0..100u16)
            .map(|i| {
                let mut c = v4_dr();
                c.client.set_port(i);
                c
            })
            .collect();
        let msgs = encode_all(3, 1472, &conns);
        assert_eq!(
            msgs.iter().map(|m| m[4]).collect::<Vec<_>>(),
            vec![40, 40, 20]
        );
        let mut seen = Vec::new();
        for m in &msgs {
            assert!(m.len() <= 1472);
            seen.extend(
                decode(m, 3)
                    .unwrap()
                    .entries
                    .into_iter()
                    .map(|e| e.unwrap().client.port()),
            );
        }
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        // Large maxlen: the one-byte count splits first.
        let conns: Vec<SyncConn> = (0..600u16)
            .map(|i| {
                let mut c = v4_dr();
                c.client.set_port(i);
                c
            })
            .collect();
        let msgs = encode_all(3, 65_000, &conns);
        assert_eq!(
            msgs.iter().map(|m| m[4]).collect::<Vec<_>>(),
            vec![255, 255, 90]
        );
        for m in &msgs {
            assert_eq!(decode(m, 0).unwrap().entries.len(), usize::from(m[4]));
        }
        assert_eq!(
            SyncMessageBuilder::new(0, MIN_MAXLEN - 1).unwrap_err(),
            EncodeError::BadMaxlen(MIN_MAXLEN - 1)
        );
        let mut one = v4_dr();
        one.flags |= flags::ONE_PACKET;
        let mut b = SyncMessageBuilder::new(0, 1500).unwrap();
        assert_eq!(b.push(&one), Err(EncodeError::OnePacket));
        let mut mixed = v4_dr();
        mixed.real = sa("[2001:db8::2]:80");
        assert_eq!(b.push(&mixed), Err(EncodeError::MixedFamilies));
        assert_eq!(b.finish(), None);
    }

    #[test]
    fn message_errors_each_have_their_reason() {
        let good = hex(KERNEL_V4_DR);
        let with = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut m = good.clone();
            f(&mut m);
            decode(&m, 7)
        };
        let resize = |m: &mut Vec<u8>| {
            let n = m.len() as u16;
            m[2..4].copy_from_slice(&n.to_be_bytes());
        };
        assert_eq!(
            decode(&good[..3], 0),
            Err(MessageError::HeaderTooShort { len: 3 })
        );
        assert_eq!(
            decode(&good[..40], 0),
            Err(MessageError::SizeMismatch {
                header: 44,
                actual: 40
            })
        );
        assert_eq!(
            decode(&good, 8),
            Err(MessageError::SyncIdMismatch { got: 7 })
        );
        assert!(decode(&good, 0).is_ok());
        assert_eq!(with(&|m| m[5] = 2), Err(MessageError::BadVersion(2)));
        assert_eq!(with(&|m| m[7] = 1), Err(MessageError::BadSpare));
        assert_eq!(
            with(&|m| m[4] = 2),
            Err(MessageError::EntryTruncated { index: 1 })
        );
        assert_eq!(
            with(&|m| m[4] = 0),
            Err(MessageError::TrailingData { extra: 36 })
        );
        assert_eq!(
            with(&|m| m[11] = 40),
            Err(MessageError::EntryOverrun { index: 0 })
        );
        assert_eq!(
            with(&|m| m[10] = 0x10),
            Err(MessageError::EntryVersion {
                index: 0,
                version: 1
            })
        );
        assert_eq!(
            with(&|m| m[8] = 2),
            Err(MessageError::EntryType {
                index: 0,
                entry_type: 2
            })
        );
        assert_eq!(
            with(&|m| m[11] = 20),
            Err(MessageError::EntryTooSmall { index: 0, size: 20 })
        );
        // An IPv6 type on a 36-byte entry is too small for its fixed part.
        assert_eq!(
            with(&|m| m[8] = 1),
            Err(MessageError::EntryTooSmall { index: 0, size: 36 })
        );
        let opt = |bytes: &'static str| {
            move |m: &mut Vec<u8>| {
                m.extend_from_slice(&hex(bytes));
                let size = (m.len() - 8) as u16;
                m[10..12].copy_from_slice(&size.to_be_bytes());
                resize(m);
            }
        };
        assert_eq!(
            with(&opt("01")),
            Err(MessageError::OptionTruncated { index: 0 })
        );
        assert_eq!(
            with(&opt("01 00")),
            Err(MessageError::OptionEmpty { index: 0 })
        );
        assert_eq!(
            with(&opt("01 04 0000")),
            Err(MessageError::OptionTruncated { index: 0 })
        );
        assert_eq!(
            with(&opt("01 02 0000")),
            Err(MessageError::BadSeqOption { index: 0 })
        );
        let seq = "01 18 000000000000000000000000000000000000000000000000";
        let twice: &'static str = Box::leak(format!("{seq} {seq}").into_boxed_str());
        assert_eq!(
            with(&opt(twice)),
            Err(MessageError::BadSeqOption { index: 0 })
        );
        assert_eq!(
            with(&opt("03 11 0000000000000000000000000000000000")),
            Err(MessageError::BadPeOption { index: 0 })
        );
        assert_eq!(
            with(&opt("02 01 00 02 01 00")),
            Err(MessageError::BadPeOption { index: 0 })
        );
        assert!(MessageError::BadSpare.to_string().contains("spare"));
    }

    #[test]
    fn entry_errors_drop_only_their_entry() {
        // Two entries; the first gets an extra option, the second stays good.
        let two = |first_opt: &str, proto: u8, state: u16| {
            let mut e1 = hex(&KERNEL_V4_DR[KERNEL_V4_DR.find("00 06").unwrap()..]);
            e1[1] = proto;
            e1[8..10].copy_from_slice(&state.to_be_bytes());
            e1.extend_from_slice(&hex(first_opt));
            let size = e1.len() as u16;
            e1[2..4].copy_from_slice(&size.to_be_bytes());
            let mut m = hex("00 07 0000 02 01 0000");
            m.extend_from_slice(&e1);
            m.resize((m.len() + 3) & !3, 0);
            m.extend_from_slice(&hex(&KERNEL_V4_DR[KERNEL_V4_DR.find("00 06").unwrap()..]));
            let n = m.len() as u16;
            m[2..4].copy_from_slice(&n.to_be_bytes());
            decode(&m, 7).unwrap().entries
        };
        let ok = Ok(received(v4_dr()));
        // Unknown mandatory option: entry dropped; unknown optional: skipped.
        assert_eq!(
            two("05 01 00", 6, 1),
            vec![Err(EntryError::UnknownMandatoryOption(5)), ok]
        );
        assert_eq!(two("45 01 00", 6, 1), vec![ok, ok]);
        assert_eq!(
            two("", 132, 1),
            vec![Err(EntryError::UnsupportedProtocol(132)), ok]
        );
        assert_eq!(
            two("", 6, 11),
            vec![
                Err(EntryError::InvalidState {
                    protocol: 6,
                    state: 11
                }),
                ok
            ]
        );
        assert_eq!(
            two("", 17, 1),
            vec![
                Err(EntryError::InvalidState {
                    protocol: 17,
                    state: 1
                }),
                ok
            ]
        );
        assert_eq!(
            two("02 02 0102 03 03 736970", 6, 1),
            vec![Err(EntryError::PersistenceEngine), ok]
        );
        // vsd's own option: wrong length, or on a DR entry.
        assert_eq!(
            two("50 02 0000", 6, 1),
            vec![Err(EntryError::BadFullnatOption), ok]
        );
        assert_eq!(
            two("50 06 c6120301 9c40", 6, 1),
            vec![Err(EntryError::BadFullnatOption), ok]
        );
    }

    /// Random and mutated datagrams: errors are fine, panics are not, and
    /// whatever decodes re-encodes to a message that decodes the same.
    #[test]
    fn decoder_never_panics_on_garbage() {
        let mut rng = XorShift(0x05ee_d1b5);
        let mut fn_conn = v4_dr();
        fn_conn.flags = flags::MASQ;
        fn_conn.fullnat_local = Some(sa("198.18.3.1:40000"));
        let mut seeds = encode_all(7, 1500, &seq_and_template());
        seeds.extend(encode_all(
            7,
            1500,
            &[v4_dr(), fn_conn, seq_and_template()[1]],
        ));
        seeds.push(hex(KERNEL_V0));
        let mut decoded = 0;
        for i in 0..50_000 {
            let mut m = if i % 4 == 0 {
                let mut b = vec![0u8; rng.below(200)];
                rng.fill(&mut b);
                if b.len() >= 8 {
                    let n = b.len() as u16;
                    b[2..4].copy_from_slice(&n.to_be_bytes());
                    b[0] = 0;
                    b[5] = 1;
                }
                b
            } else {
                let mut b = seeds[i % seeds.len()].clone();
                for _ in 0..1 + rng.below(3) {
                    let at = rng.below(b.len());
                    b[at] = rng.next_u32() as u8;
                }
                if rng.below(4) == 0 {
                    b.truncate(rng.below(b.len() + 1));
                }
                b
            };
            if i % 3 == 0 && m.len() >= 4 {
                let n = m.len() as u16;
                m[2..4].copy_from_slice(&n.to_be_bytes());
            }
            if let Ok(msg) = decode(&m, 0) {
                decoded += 1;
                let good: Vec<SyncConn> = msg
                    .entries
                    .iter()
                    .filter_map(|e| e.ok())
                    .filter(|c| c.flags & flags::ONE_PACKET == 0)
                    .collect();
                let mut b = SyncMessageBuilder::new(msg.syncid, 1500).unwrap();
                for c in &good {
                    if let Some(full) = b.push(c).unwrap() {
                        assert!(decode(&full, 0).is_ok());
                    }
                }
                if let Some(last) = b.finish() {
                    assert!(decode(&last, 0).is_ok());
                }
            }
        }
        assert!(
            decoded > 100,
            "mutations too destructive: {decoded} decoded"
        );
    }
}
