//! Where EAL will run each lcore, from `[lcores] cpu_map` (`--lcores`), and
//! warnings for worker placements that cost forwarding capacity.
//!
//! What: [`lcore_cpus`] reads the `--lcores` syntax the way DPDK 22.11's
//! `eal_parse_lcores` does: `LCORES[@CPUS]` elements separated by commas,
//! where LCORES and CPUS are `N`, `N-M` or `(N,M-K,...)`. With `@CPUS`
//! every lcore of the element gets the whole CPU set (a group *floats* over
//! it); without it a bare range `N-M` pins each lcore to the CPU of the same
//! number, while `(...)` makes the lcores share the set of their own numbers.
//! Without a cpu_map vsd passes `-l`, which pins lcore N to CPU N.
//!
//! Why: a worker polls its queues without sleeping. Two workers on one CPU
//! halve each other; a worker floating over several CPUs is moved by the
//! scheduler and loses its caches (`(1-4)@(2-5)` is four floating workers,
//! not four pinned ones). Both are legal for EAL, so `vsd --check` (and the
//! start) warn instead of refusing.
//!
//! Failure modes: syntax errors are reported by the config parser (which
//! refuses the file); here a map that does not parse yields no warnings.

use super::config::LcoreConf;
use std::collections::{BTreeMap, BTreeSet};

/// Highest lcore / CPU number accepted (EAL's RTE_MAX_LCORE is 128 on
/// Debian; CPU numbers can be higher).
const MAX_ID: u32 = 4095;

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }
    fn err(&self) -> String {
        match self.peek() {
            Some(c) => format!("unexpected {:?} at offset {}", c as char, self.pos),
            None => "unexpected end".to_string(),
        }
    }
    fn number(&mut self) -> Result<u32, String> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        std::str::from_utf8(self.b.get(start..self.pos).unwrap_or_default())
            .ok()
            .and_then(|s| s.parse::<u32>().ok())
            .filter(|n| *n <= MAX_ID)
            .ok_or_else(|| {
                if start == self.pos {
                    self.err()
                } else {
                    format!("number at offset {start} must be 0..={MAX_ID}")
                }
            })
    }
    fn range(&mut self, out: &mut BTreeSet<u32>) -> Result<bool, String> {
        let lo = self.number()?;
        if self.peek() != Some(b'-') {
            out.insert(lo);
            return Ok(false);
        }
        self.pos += 1;
        let hi = self.number()?;
        // EAL takes min..=max whichever way round the range is written.
        out.extend(lo.min(hi)..=lo.max(hi));
        Ok(true)
    }
    /// A set; also whether it was a bare `N-M` range (not in parentheses).
    fn set(&mut self) -> Result<(BTreeSet<u32>, bool), String> {
        let mut out = BTreeSet::new();
        if self.peek() != Some(b'(') {
            let bare_range = self.range(&mut out)?;
            return Ok((out, bare_range));
        }
        self.pos += 1;
        loop {
            self.range(&mut out)?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b')') => {
                    self.pos += 1;
                    return Ok((out, false));
                }
                _ => return Err(self.err()),
            }
        }
    }
}

/// The CPU set EAL gives each lcore for an `--lcores` string.
pub fn lcore_cpus(text: &str) -> Result<BTreeMap<u32, BTreeSet<u32>>, String> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let mut c = Cursor {
        b: compact.as_bytes(),
        pos: 0,
    };
    let mut out = BTreeMap::new();
    loop {
        let (lcores, bare_range) = c.set()?;
        let shared = if c.peek() == Some(b'@') {
            c.pos += 1;
            Some(c.set()?.0)
        } else if bare_range {
            None
        } else {
            Some(lcores.clone())
        };
        for &l in &lcores {
            let cpus = shared.clone().unwrap_or_else(|| BTreeSet::from([l]));
            if out.insert(l, cpus).is_some() {
                return Err(format!("lcore {l} is mapped twice"));
            }
        }
        match c.peek() {
            None => return Ok(out),
            Some(b',') => c.pos += 1,
            Some(_) => return Err(c.err()),
        }
    }
}

fn cpu_list(cpus: &BTreeSet<u32>) -> String {
    // Runs as ranges: {2,3,4,5,7} -> "2-5,7".
    let mut parts: Vec<String> = Vec::new();
    let mut it = cpus.iter().copied().peekable();
    while let Some(lo) = it.next() {
        let mut hi = lo;
        while it.peek() == Some(&(hi + 1)) {
            hi += 1;
            it.next();
        }
        parts.push(if lo == hi {
            lo.to_string()
        } else {
            format!("{lo}-{hi}")
        });
    }
    parts.join(",")
}

/// Warnings about the worker placement `[lcores]` asks for: a worker that
/// floats over several CPUs, or a CPU two lcores share (a worker with
/// another worker or with the control lcore).
pub fn pinning_warnings(lc: &LcoreConf) -> Vec<String> {
    let map: BTreeMap<u32, BTreeSet<u32>> = match &lc.cpu_map {
        None => std::iter::once(lc.control)
            .chain(lc.workers.iter().copied())
            .map(|l| (l, BTreeSet::from([l])))
            .collect(),
        Some(text) => match lcore_cpus(text) {
            Ok(m) => m,
            Err(_) => return Vec::new(),
        },
    };
    let mut out = Vec::new();
    for w in &lc.workers {
        let Some(cpus) = map.get(w) else { continue };
        if cpus.len() > 1 {
            out.push(format!(
                "worker lcore {w} floats over CPUs {} (lcores.cpu_map); pin each worker to one CPU of its own (\"{w}@CPU\")",
                cpu_list(cpus),
            ));
        }
    }
    // Who may run on each CPU: (lcore, is it a worker).
    let mut on_cpu: BTreeMap<u32, Vec<(u32, bool)>> = BTreeMap::new();
    for (&l, cpus) in &map {
        let is_worker = lc.workers.contains(&l);
        if !is_worker && l != lc.control {
            continue;
        }
        for &cpu in cpus {
            on_cpu.entry(cpu).or_default().push((l, is_worker));
        }
    }
    for (cpu, lcores) in on_cpu {
        let workers: Vec<String> = lcores
            .iter()
            .filter(|(_, w)| *w)
            .map(|(l, _)| l.to_string())
            .collect();
        if workers.len() > 1 {
            out.push(format!(
                "worker lcores {} share CPU {cpu} (lcores.cpu_map); each worker needs a CPU of its own",
                workers.join(",")
            ));
        } else if workers.len() == 1 && lcores.len() > 1 {
            out.push(format!(
                "worker lcore {} shares CPU {cpu} with the control lcore {} (lcores.cpu_map)",
                workers[0], lc.control
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u32]) -> BTreeSet<u32> {
        v.iter().copied().collect()
    }

    fn lc(control: u32, workers: &[u32], map: Option<&str>) -> LcoreConf {
        LcoreConf {
            control,
            workers: workers.to_vec(),
            cpu_map: map.map(str::to_string),
            idle: Default::default(),
        }
    }

    #[test]
    fn lcores_syntax_as_eal_reads_it() {
        let m = lcore_cpus("0@0,(1-4)@(2-5)").unwrap();
        assert_eq!(m[&0], set(&[0]));
        for l in 1..=4 {
            assert_eq!(m[&l], set(&[2, 3, 4, 5]), "lcore {l} floats");
        }
        // A bare range without @ pins each lcore to its own number.
        let m = lcore_cpus("0,1-3").unwrap();
        assert_eq!(m[&2], set(&[2]));
        // A group without @ shares the set of its own numbers.
        let m = lcore_cpus("(1,2)").unwrap();
        assert_eq!(m[&1], set(&[1, 2]));
        let m = lcore_cpus("0@0, 1@2 ,2@3-5,3@(7,9)").unwrap();
        assert_eq!(m[&1], set(&[2]));
        assert_eq!(m[&2], set(&[3, 4, 5]));
        assert_eq!(m[&3], set(&[7, 9]));
        assert_eq!(lcore_cpus("4-2").unwrap()[&3], set(&[3]));
        assert!(lcore_cpus("1@x").is_err());
        assert!(lcore_cpus("(1,2").is_err());
        assert!(lcore_cpus("1,1@2").is_err());
        assert!(lcore_cpus("").is_err());
        assert!(lcore_cpus("1@2@3").is_err());
    }

    #[test]
    fn floating_and_shared_workers_are_warned_about() {
        let w = pinning_warnings(&lc(0, &[1, 2, 3, 4], Some("0@0,(1-4)@(2-5)")));
        assert_eq!(
            w.iter()
                .filter(|m| m.contains("floats over CPUs 2-5"))
                .count(),
            4
        );
        assert!(w
            .iter()
            .any(|m| m.contains("worker lcores 1,2,3,4 share CPU 2")));

        let w = pinning_warnings(&lc(0, &[1, 2], Some("0@0,1@2,2@2")));
        assert_eq!(w, vec!["worker lcores 1,2 share CPU 2 (lcores.cpu_map); each worker needs a CPU of its own"]);

        let w = pinning_warnings(&lc(0, &[1], Some("0@0,1@0")));
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("shares CPU 0 with the control lcore 0"),
            "{w:?}"
        );
    }

    #[test]
    fn one_worker_per_cpu_is_quiet() {
        assert!(pinning_warnings(&lc(0, &[1, 2, 3, 4], Some("0@0,1@2,2@3,3@4,4@5"))).is_empty());
        assert!(pinning_warnings(&lc(0, &[1, 2, 3], None)).is_empty());
        assert!(pinning_warnings(&lc(0, &[1, 2], Some("0-2"))).is_empty());
        // The control lcore may float; it does not poll.
        assert!(pinning_warnings(&lc(0, &[1, 2], Some("0@(0,1),1@2,2@3"))).is_empty());
    }

    #[test]
    fn shipped_configs_pin_one_worker_per_cpu() {
        for name in ["bare-metal.toml", "demo.toml", "memif.toml"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("configs")
                .join(name);
            let cfg = crate::control::config::Config::from_file(&path).unwrap();
            assert_eq!(
                pinning_warnings(&cfg.lcores),
                Vec::<String>::new(),
                "{name}"
            );
        }
    }
}
