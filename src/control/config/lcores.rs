//! `[lcores]`: worker lcores, the main lcore and DPDK's `--lcores` CPU map.

use std::collections::BTreeSet;

use super::{narrow, ConfigError, Ctx, RawLcores, MAX_LCORE_ID, MAX_WORKERS, S};

/// `[lcores]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LcoreConf {
    /// Lcore of the main (control) thread.
    pub control: u32,
    /// Worker lcores, in file order; distinct, none equal to `control`.
    pub workers: Vec<u32>,
    /// DPDK `--lcores` mapping of lcores onto CPUs, passed through when set.
    pub cpu_map: Option<String>,
    /// What a worker does when it finds no packets (`idle`).
    pub idle: IdleMode,
}

/// `[lcores] idle`: busy polling, or sleeping with backoff once idle
/// (see `dataplane::idle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdleMode {
    /// Poll without pause: lowest latency, one CPU per worker (appliances).
    #[default]
    Poll,
    /// Sleep with a growing pause after a run of empty polls.
    Sleep,
}

pub(super) fn build_lcores(ctx: &Ctx<'_>, raw: &S<RawLcores>) -> Result<LcoreConf, ConfigError> {
    let max = i64::from(MAX_LCORE_ID);
    let lc = raw.get_ref();
    let control = narrow::<u32>(ctx.int_or(&lc.control, "lcores.control", 0, max, 0)?);
    let list = lc.workers.get_ref();
    if list.is_empty() {
        return Err(ctx.err(
            lc.workers.span(),
            "lcores.workers",
            "at least one worker lcore is required",
        ));
    }
    if list.len() > MAX_WORKERS {
        return Err(ctx.err(
            lc.workers.span(),
            "lcores.workers",
            format!(
                "{} workers: at most {MAX_WORKERS} are supported",
                list.len()
            ),
        ));
    }
    let mut workers = Vec::with_capacity(list.len());
    for (i, w) in list.iter().enumerate() {
        let key = format!("lcores.workers[{i}]");
        let id = narrow::<u32>(ctx.int(w, &key, 0, max)?);
        if id == control {
            return Err(ctx.err(
                w.span(),
                key,
                format!("lcore {id} is the control lcore; workers need their own"),
            ));
        }
        if workers.contains(&id) {
            return Err(ctx.err(w.span(), key, format!("duplicate worker lcore {id}")));
        }
        workers.push(id);
    }
    let cpu_map = match &lc.cpu_map {
        None => None,
        Some(map) => {
            let defined = parse_cpu_map(map.get_ref())
                .map_err(|m| ctx.err(map.span(), "lcores.cpu_map", m))?;
            let mut used: BTreeSet<u32> = workers.iter().copied().collect();
            used.insert(control);
            if defined != used {
                return Err(ctx.err(
                    map.span(),
                    "lcores.cpu_map",
                    format!(
                        "defines lcores {} but control and workers are {}",
                        join_ids(&defined),
                        join_ids(&used)
                    ),
                ));
            }
            Some(map.get_ref().clone())
        }
    };
    let idle = match &lc.idle {
        None => IdleMode::Poll,
        Some(v) => match v.get_ref().as_str() {
            "poll" => IdleMode::Poll,
            "sleep" => IdleMode::Sleep,
            other => {
                return Err(ctx.err(
                    v.span(),
                    "lcores.idle",
                    format!("unknown idle mode {other:?}: expected \"poll\" or \"sleep\""),
                ))
            }
        },
    };
    Ok(LcoreConf {
        control,
        workers,
        cpu_map,
        idle,
    })
}

fn join_ids(ids: &BTreeSet<u32>) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// Parses DPDK's `--lcores` syntax (`0@0,(1,2)@(1-3),4-5`) and returns the lcore ids it
/// defines; CPU sets are checked for syntax only.
pub(super) fn parse_cpu_map(text: &str) -> Result<BTreeSet<u32>, String> {
    struct P<'a> {
        b: &'a [u8],
        pos: usize,
    }
    impl P<'_> {
        fn peek(&self) -> Option<u8> {
            self.b.get(self.pos).copied()
        }
        fn unexpected(&self) -> String {
            match self.peek() {
                Some(c) => format!("unexpected {:?} at offset {}", c as char, self.pos),
                None => "unexpected end".to_string(),
            }
        }
        fn number(&mut self, max: u32) -> Result<u32, String> {
            let start = self.pos;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.pos += 1;
            }
            if start == self.pos {
                return Err(self.unexpected());
            }
            std::str::from_utf8(self.b.get(start..self.pos).unwrap_or_default())
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                .filter(|n| *n <= max)
                .ok_or_else(|| format!("number at offset {start} must be 0..={max}"))
        }
        /// `N` or `N-M`, added to `out`.
        fn range(&mut self, max: u32, out: &mut BTreeSet<u32>) -> Result<(), String> {
            let lo = self.number(max)?;
            let hi = if self.peek() == Some(b'-') {
                self.pos += 1;
                self.number(max)?
            } else {
                lo
            };
            if hi < lo {
                return Err(format!("empty range {lo}-{hi}"));
            }
            out.extend(lo..=hi);
            Ok(())
        }
        /// A range or a parenthesised list of ranges.
        fn set(&mut self, max: u32) -> Result<BTreeSet<u32>, String> {
            let mut out = BTreeSet::new();
            if self.peek() == Some(b'(') {
                self.pos += 1;
                loop {
                    self.range(max, &mut out)?;
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b')') => {
                            self.pos += 1;
                            break;
                        }
                        _ => return Err(self.unexpected()),
                    }
                }
            } else {
                self.range(max, &mut out)?;
            }
            Ok(out)
        }
    }
    let mut p = P {
        b: text.as_bytes(),
        pos: 0,
    };
    let mut lcores = BTreeSet::new();
    loop {
        let set = p.set(MAX_LCORE_ID)?;
        if let Some(dup) = set.intersection(&lcores).next() {
            return Err(format!("lcore {dup} is mapped twice"));
        }
        lcores.extend(set);
        if p.peek() == Some(b'@') {
            p.pos += 1;
            p.set(1023)?;
        }
        match p.peek() {
            None => return Ok(lcores),
            Some(b',') => p.pos += 1,
            _ => return Err(p.unexpected()),
        }
    }
}
