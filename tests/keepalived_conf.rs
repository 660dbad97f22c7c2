//! `vsd --keepalived FILE`: the seed notes' keepalived.conf loads as is, and
//! `vsd --check` on a broken keepalived.conf names the file and the line.
//! No DPDK: `--check` validates without starting EAL.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use vsd::control::config::{Config, ServiceKey};
use vsd::health::spec::{CheckKind, EffectiveTiming};
use vsd::lb::types::{FwdMethod, Protocol, SchedulerKind};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

#[test]
fn the_seed_keepalived_conf_loads_as_is() {
    let cfg = Config::load(
        &repo("configs/keepalived-seed.toml"),
        Some(&repo("configs/keepalived-seed.conf")),
    )
    .unwrap();
    assert_eq!(cfg.services.len(), 1);
    let s = &cfg.services[0];
    assert_eq!(
        s.key,
        ServiceKey::Addr {
            proto: Protocol::Tcp,
            vip: "198.18.0.50".parse().unwrap(),
            port: 80
        }
    );
    assert_eq!(s.scheduler, SchedulerKind::Rr);
    assert_eq!(s.persistence_timeout, Some(50));
    assert_eq!(s.netmask, None, "net_mask is no keepalived keyword");
    let servers: Vec<(String, u16, u32, FwdMethod)> = s
        .real_servers
        .iter()
        .map(|r| (r.address.to_string(), r.port, r.weight, r.method))
        .collect();
    assert_eq!(
        servers,
        vec![
            ("198.18.0.12".into(), 80, 1, FwdMethod::Route),
            ("198.18.0.13".into(), 80, 1, FwdMethod::Route),
        ]
    );
    for r in &s.real_servers {
        assert_eq!(r.health.checkers.len(), 1);
        let c = &r.health.checkers[0];
        let CheckKind::Http(h) = &c.kind else {
            panic!("{:?}", c.kind)
        };
        assert_eq!(h.urls.len(), 1);
        assert_eq!(h.urls[0].path, "/");
        assert_eq!(h.urls[0].status, vec![(200, 200)]);
        assert!(h.urls[0].digest.is_none());
        // connect_timeout 3, nb_get_retry 3, delay_before_retry 3, delay_loop 6
        let t = EffectiveTiming::resolve(&c.kind, &c.timing, &r.health.timing, &s.health.timing);
        let secs = Duration::from_secs;
        assert_eq!(
            (
                t.connect_timeout,
                t.retry,
                t.delay_before_retry,
                t.delay_loop
            ),
            (secs(3), 3, secs(3), secs(6))
        );
        assert_eq!(t.detection_bound(), secs(6 + 3 * 4 + 3 * 3));
    }
    // what keepalived --config-test says about the checker part of this file
    let lines: Vec<&str> = cfg
        .warnings
        .iter()
        .map(|w| w.split("keepalived-seed.conf:").nth(1).unwrap_or(w))
        .collect();
    assert_eq!(
        lines,
        vec![
            "49: unknown keyword 'net_mask' in virtual_server ignored (keepalived ignores it too)",
            "61: nb_get_retry is deprecated - please use 'retry' (read as retry)",
            "73: nb_get_retry is deprecated - please use 'retry' (read as retry)",
        ]
    );
}

/// The lines `keepalived --config-test` warns about as unknown keywords
/// (or the deprecated nb_get_retry) and the lines vsd warns about alike;
/// `None` when keepalived is not installed (outside CI).
fn unknown_keyword_lines(conf: &Path) -> Option<(Vec<usize>, Vec<usize>, String)> {
    let out = match Command::new("timeout")
        .args(["20", "keepalived", "--config-test", "-f"])
        .arg(conf)
        .output()
    {
        Ok(o) if o.status.code() != Some(127) => o,
        _ => {
            assert!(!common::in_ci(), "keepalived is needed in CI");
            eprintln!("keepalived not installed: skipped");
            return None;
        }
    };
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    let mut theirs: Vec<usize> = text
        .lines()
        .filter(|l| {
            (l.contains("Unknown keyword") && !l.contains("Unknown keyword '}'"))
                || l.contains("nb_get_retry is deprecated")
        })
        .filter_map(|l| l.split("Line ").nth(1)?.split(')').next()?.parse().ok())
        .collect();
    theirs.sort();
    theirs.dedup();
    let cfg = Config::load(&repo("configs/keepalived-seed.toml"), Some(conf)).unwrap();
    let name = format!("{}:", conf.display());
    let mut ours: Vec<usize> = cfg
        .warnings
        .iter()
        .filter(|w| w.contains("unknown keyword") || w.contains("nb_get_retry"))
        .filter_map(|w| w.split(&name).nth(1)?.split(':').next()?.parse().ok())
        .collect();
    ours.sort();
    Some((ours, theirs, text))
}

/// keepalived itself (when installed, as in CI) warns about the same lines
/// of the seed file: vsd skips what keepalived skips.
#[test]
fn keepalived_config_test_agrees_on_the_seed_file() {
    let Some((ours, theirs, text)) = unknown_keyword_lines(&repo("configs/keepalived-seed.conf"))
    else {
        return;
    };
    assert_eq!(ours, vec![49, 61, 73]);
    assert_eq!(ours, theirs, "keepalived said:\n{text}");
}

/// Every keyword vsd reads is one keepalived knows, at the same level, and
/// unknown ones are skipped by both: tests/data/keepalived-all-keywords.conf
/// uses each of them once and adds an unknown keyword to every block.
#[test]
fn vsd_knows_the_keywords_keepalived_knows() {
    let Some((ours, theirs, text)) =
        unknown_keyword_lines(&repo("tests/data/keepalived-all-keywords.conf"))
    else {
        return;
    };
    assert_eq!(ours.len(), 12, "{ours:?}");
    assert_eq!(ours, theirs, "keepalived said:\n{text}");
}

#[test]
fn vsd_check_accepts_the_seed_files() {
    let out = Command::new(env!("CARGO_BIN_EXE_vsd"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "--check",
            "--config",
            "configs/keepalived-seed.toml",
            "--keepalived",
            "configs/keepalived-seed.conf",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stdout.contains(
            "configuration OK: configs/keepalived-seed.toml + configs/keepalived-seed.conf (1 services)"
        ),
        "{stdout}"
    );
    assert!(
        stderr.contains("configs/keepalived-seed.conf:49: unknown keyword 'net_mask'"),
        "{stderr}"
    );
}

#[test]
fn vsd_check_names_the_file_and_line_of_a_keepalived_error() {
    let dir = std::env::temp_dir().join(common::unique("vsd-kacheck-"));
    std::fs::create_dir_all(&dir).unwrap();
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(dir.clone());
    let main = dir.join("keepalived.conf");
    std::fs::write(
        &main,
        "global_defs {\n router_id A\n}\ninclude services/*.conf\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("services")).unwrap();
    let inc = dir.join("services/web.conf");
    let run = |text: &str| {
        std::fs::write(&inc, text).unwrap();
        Command::new(env!("CARGO_BIN_EXE_vsd"))
            .args(["--check", "--config"])
            .arg(repo("configs/keepalived-seed.toml"))
            .arg("--keepalived")
            .arg(&main)
            .output()
            .unwrap()
    };
    for (text, want) in [
        (
            "virtual_server 198.18.0.50 80 {\n lb_kind DR\n real_server 198.18.0.12 80 {\n  HTTP_GET {\n   url {\n    path /\n    status_code 200-2x\n   }\n  }\n }\n}\n",
            ":7: invalid status code \"2x\": expected 100..=599 or a range like 200-299",
        ),
        (
            "virtual_server 198.18.0.50 80 {\n real_server 198.18.0.12 80 {\n  SMTP_CHECK {\n  }\n }\n",
            ":1: block opened here is never closed",
        ),
        (
            "virtual_server group web {\n}\n",
            ":1: virtual_server group is not supported by vsd",
        ),
    ] {
        let out = run(text);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        let place = format!("{}{want}", inc.display());
        assert!(stderr.contains(&place), "want {place:?} in {stderr}");
    }
    // the same service in the TOML file and in keepalived.conf is refused
    let toml = dir.join("base.toml");
    let base = std::fs::read_to_string(repo("configs/keepalived-seed.toml")).unwrap();
    std::fs::write(
        &toml,
        format!("{base}\n[[service]]\nproto = \"tcp\"\nvip = \"198.18.0.50\"\nport = 80\n"),
    )
    .unwrap();
    std::fs::write(
        &inc,
        "virtual_server 198.18.0.50 80 {\n protocol TCP\n real_server 198.18.0.12 80\n}\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vsd"))
        .args(["--check", "--config"])
        .arg(&toml)
        .arg("--keepalived")
        .arg(&main)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:1: virtual_server 198.18.0.50 80 (TCP) is also service[0] of {}",
            inc.display(),
            toml.display()
        )),
        "{stderr}"
    );
}

#[test]
fn the_all_keywords_file_loads() {
    let cfg = Config::load(
        &repo("configs/keepalived-seed.toml"),
        Some(&repo("tests/data/keepalived-all-keywords.conf")),
    )
    .unwrap();
    assert_eq!(cfg.services.len(), 1);
    let s = &cfg.services[0];
    assert_eq!(s.scheduler, SchedulerKind::Sh);
    assert!(s.one_packet && s.health.omega && s.health.sorry_server.is_some());
    let kinds: Vec<&str> = s.real_servers[0]
        .health
        .checkers
        .iter()
        .map(|c| c.kind.name())
        .collect();
    assert_eq!(
        kinds,
        [
            "HTTP_GET",
            "SSL_GET",
            "TCP_CHECK",
            "MISC_CHECK",
            "DNS_CHECK",
            "UDP_CHECK",
            "PING_CHECK"
        ]
    );
}
