//! What a machine must prepare at boot before vsd can start: hugepages and
//! the PCI NICs bound to a DPDK-capable driver. `vsd --boot-plan` prints it
//! from the configuration, so the boot unit (debian/vsd-prepare) needs no
//! TOML parser of its own and cannot disagree with vsd about the devices.
//!
//! Format, one item per line (`#` lines are comments):
//!
//! ```text
//! hugepages 2048kB 2080
//! pci 0000:03:00.0
//! ```
//!
//! Hugepages: `memory_mb` (EAL's `-m`) in 2 MiB pages plus 32 pages of
//! headroom for EAL's own allocations, or 1024 pages (2 GiB) when the
//! configuration leaves the amount to EAL; none with `huge = false`.

use std::fmt::Write as _;

use super::config::{Config, PortDevice};

/// 2 MiB pages EAL may use beyond `memory_mb`.
pub const HEADROOM_PAGES: u32 = 32;
/// Pages reserved when `memory_mb` is not set.
pub const DEFAULT_PAGES: u32 = 1024;

/// The boot plan of `cfg`, in the format above.
pub fn boot_plan(cfg: &Config) -> String {
    let mut out = format!("# vsd boot plan for {}\n", cfg.source);
    if cfg.eal.huge {
        let pages = cfg
            .eal
            .memory_mb
            .map_or(DEFAULT_PAGES, |mb| mb.div_ceil(2) + HEADROOM_PAGES);
        let _ = writeln!(out, "hugepages 2048kB {pages}");
    }
    for p in &cfg.ports {
        if let PortDevice::Pci { addr, .. } = &p.device {
            let _ = writeln!(out, "pci {addr}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_str(text, "test.toml").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn the_bare_metal_example_needs_hugepages_and_its_two_nics() {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/configs/bare-metal.toml"
        ))
        .expect("bare-metal.toml");
        let plan = boot_plan(&config(&text));
        let items: Vec<&str> = plan.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            items,
            vec![
                "hugepages 2048kB 2080",
                "pci 0000:03:00.0",
                "pci 0000:03:00.1"
            ]
        );
    }

    #[test]
    fn virtual_devices_and_no_huge_need_nothing() {
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/configs/demo.toml"))
                .expect("demo.toml");
        let mut cfg = config(&text);
        assert!(!boot_plan(&cfg).lines().any(|l| l.starts_with("pci ")));
        cfg.eal.huge = false;
        let plan = boot_plan(&cfg);
        assert!(plan.lines().all(|l| l.starts_with('#')), "{plan}");
    }
}
