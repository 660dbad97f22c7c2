//! Classic pcap files (microsecond timestamps, Ethernet link type).

use std::path::Path;

/// Write `frames` as a pcap file.
pub fn write(path: &Path, frames: &[Vec<u8>]) {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&0i32.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&(i as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    std::fs::write(path, out).expect("write pcap");
}

/// Read every frame of a pcap file (either byte order, µs or ns).
pub fn read(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(data.len() >= 24, "pcap too short");
    let magic = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
    let le = match magic {
        0xa1b2c3d4 | 0xa1b23c4d => true,
        0xd4c3b2a1 | 0x4d3cb2a1 => false,
        m => panic!("not a pcap file (magic {m:#x})"),
    };
    let u32_at = |o: usize| {
        let b = [data[o], data[o + 1], data[o + 2], data[o + 3]];
        if le {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        }
    };
    let mut frames = Vec::new();
    let mut off = 24;
    while off + 16 <= data.len() {
        let incl = u32_at(off + 8) as usize;
        let start = off + 16;
        assert!(start + incl <= data.len(), "truncated pcap record");
        frames.push(data[start..start + incl].to_vec());
        off = start + incl;
    }
    frames
}

/// The head of every capture-replay vsd config: EAL without PCI or
/// hugepages, one worker, the control socket in vsd's run directory, a
/// small mempool, and port `cap0` replaying `dir/in.pcap` into
/// `dir/out.pcap` with the given MAC and addresses. Callers append their
/// own sections (`[lb]`, VIPs, services); TOML does not mind the order.
pub fn replay_config(
    dir: &Path,
    prefix: &str,
    mbufs: u32,
    mac: impl std::fmt::Display,
    addresses: &[&str],
) -> String {
    let addresses = addresses
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[eal]
args = ["--no-pci", "--file-prefix={prefix}"]
huge = false
memory_mb = 256

[lcores]
control = 0
workers = [1]

[control]
socket = "{{dir}}/vsd.sock"

[mempool]
mbufs = {mbufs}

[[port]]
name = "cap0"
device = "net_pcap0,rx_pcap={rx},tx_pcap={tx}"
mac = "{mac}"
addresses = [{addresses}]
"#,
        rx = dir.join("in.pcap").display(),
        tx = dir.join("out.pcap").display(),
    )
}

/// One `[[service]]` (round robin, `extra` lines added to it) with one
/// real server.
pub fn service(
    proto: &str,
    vip: impl std::fmt::Display,
    port: u16,
    extra: &str,
    rs: impl std::fmt::Display,
    rport: u16,
    method: &str,
) -> String {
    format!(
        "\n[[service]]\nproto = \"{proto}\"\nvip = \"{vip}\"\nport = {port}\nscheduler = \"rr\"\n{extra}\n[[service.real_server]]\naddress = \"{rs}\"\nport = {rport}\nmethod = \"{method}\"\n"
    )
}
