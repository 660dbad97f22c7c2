//! The README's command blocks run as typed, and the scripts find Rust the
//! way a newcomer's machine has it (root's PATH, sudo's secure_path).
//!
//! Every ```sh block of README.md is run, in order, in one bash with
//! `set -e -o pipefail`, from the repository root, unless the line before it
//! is `<!-- readme-test: skip: REASON -->` (a REASON is required). The blocks
//! run in a private mount namespace with a tmpfs on /run/vsd, so the demo's
//! `--keep` socket (vsadm's default path) is the test's own; the demo itself
//! makes its network namespaces, taps with unique names and its own EAL file
//! prefix. The teardown command `demo.sh --keep` prints is run at the end,
//! also when a block fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

const SKIP_MARKER: &str = "<!-- readme-test: skip:";

struct Block {
    line: usize,
    lang: String,
    text: String,
    skip: Option<String>,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Fenced blocks of a markdown text, with the skip marker that precedes them.
fn blocks(md: &str) -> Result<Vec<Block>, String> {
    let mut out = Vec::new();
    let mut lines = md.lines().enumerate();
    let mut pending_skip: Option<(usize, String)> = None;
    while let Some((n, line)) = lines.next() {
        if let Some(rest) = line.trim().strip_prefix(SKIP_MARKER) {
            let reason = rest.trim_end_matches("-->").trim();
            if reason.is_empty() {
                return Err(format!("README.md:{}: skip marker without a reason", n + 1));
            }
            pending_skip = Some((n, reason.to_string()));
            continue;
        }
        if let Some(lang) = line.strip_prefix("```") {
            let mut text = String::new();
            let mut closed = false;
            for (_, l) in lines.by_ref() {
                if l.starts_with("```") {
                    closed = true;
                    break;
                }
                text.push_str(l);
                text.push('\n');
            }
            if !closed {
                return Err(format!("README.md:{}: block not closed", n + 1));
            }
            let skip = match pending_skip.take() {
                Some((m, reason)) if m + 1 == n => Some(reason),
                Some((m, _)) => {
                    return Err(format!(
                        "README.md:{}: skip marker not directly before a block",
                        m + 1
                    ))
                }
                None => None,
            };
            out.push(Block {
                line: n + 1,
                lang: lang.trim().to_string(),
                text,
                skip,
            });
        } else if let Some((m, _)) = &pending_skip {
            return Err(format!(
                "README.md:{}: skip marker not directly before a block",
                m + 1
            ));
        }
    }
    Ok(out)
}

fn readme_blocks() -> Vec<Block> {
    let md = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    blocks(&md).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn readme_markers_parse_and_name_a_reason() {
    let b = blocks("<!-- readme-test: skip: needs a NIC -->\n```sh\nfoo\n```\n```sh\nbar\n```\n")
        .unwrap();
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].skip.as_deref(), Some("needs a NIC"));
    assert_eq!(b[1].skip, None);
    assert_eq!(b[1].text, "bar\n");
    assert!(blocks("<!-- readme-test: skip: -->\n```sh\nx\n```\n").is_err());
    assert!(blocks("<!-- readme-test: skip: r -->\n\ntext\n```sh\nx\n```\n").is_err());
    assert!(blocks("```sh\nx\n").is_err());

    let all = readme_blocks();
    let run: Vec<_> = all
        .iter()
        .filter(|b| b.lang == "sh" && b.skip.is_none())
        .collect();
    // The set-up command and the vsadm examples are among the blocks run.
    assert!(run
        .iter()
        .any(|b| b.text.contains("scripts/demo.sh --keep")));
    assert!(run.iter().any(|b| b.text.contains("vsadm -Ln")));
    for b in &all {
        assert!(
            matches!(b.lang.as_str(), "sh" | "text" | "toml"),
            "README.md:{}: block language {:?}: use sh (run by this test) or text",
            b.line,
            b.lang
        );
    }
}

/// Run `script` under bash with a PATH like sudo's secure_path and the given
/// HOME / SUDO_USER, sourcing scripts/lib/rust.sh.
fn find_rust_with(home: &str, sudo_user: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new("/bin/bash");
    cmd.env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", home)
        .current_dir(repo())
        .args([
            "-c",
            "source scripts/lib/rust.sh && find_rust demo && command -v cargo && cargo --version",
        ]);
    if let Some(u) = sudo_user {
        cmd.env("SUDO_USER", u);
    }
    cmd.output().expect("bash")
}

fn user_with_rustup() -> Option<(String, String)> {
    // The user whose ~/.cargo/bin holds this test's cargo, if it is rustup's.
    let cargo_home = std::env::var("CARGO_HOME").ok()?;
    let home = Path::new(&cargo_home).parent()?.to_str()?.to_string();
    if !Path::new(&cargo_home).join("bin/cargo").exists() {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 5 && f[5] == home).then(|| (f[0].to_string(), home.clone()))
    })
}

#[test]
fn scripts_find_rustup_cargo_under_sudo_or_say_what_is_missing() {
    if Command::new("cargo").arg("--version").output().is_err()
        && !Path::new("/usr/bin/cargo").exists()
    {
        return;
    }
    let Some((user, home)) = user_with_rustup() else {
        eprintln!("SKIPPED: cargo here is not a rustup install in a user's ~/.cargo");
        return;
    };
    if Path::new("/usr/bin/cargo").exists() || Path::new("/usr/local/bin/cargo").exists() {
        eprintln!("SKIPPED: a system cargo is on secure_path");
        return;
    }
    // sudo from the user who installed Rust: HOME is root's (here a
    // directory without Rust), SUDO_USER names the user.
    let empty = tempdir();
    let out = find_rust_with(empty.to_str().unwrap(), Some(&user));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("{home}/.cargo/bin/cargo")),
        "{stdout}"
    );
    // As root with Rust in root's own ~/.cargo/bin (HOME set, no SUDO_USER).
    let out = find_rust_with(&home, None);
    assert!(out.status.success());
    // Nothing anywhere: the message says what is missing and how to get it.
    let out = find_rust_with(empty.to_str().unwrap(), None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("Rust is not installed"), "{stderr}");
    assert!(stderr.contains("needs Rust 1."), "{stderr}");
    assert!(stderr.contains("rustup"), "{stderr}");
    let _ = std::fs::remove_dir_all(empty);
}

#[test]
fn cargo_toml_states_the_rust_version_the_scripts_check() {
    let toml = std::fs::read_to_string(repo().join("Cargo.toml")).unwrap();
    let line = toml
        .lines()
        .find(|l| l.starts_with("rust-version"))
        .expect("Cargo.toml has a rust-version");
    let v = line.split('"').nth(1).unwrap();
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("Rust {v} or newer")),
        "README states Rust {v}"
    );
}

fn tempdir() -> PathBuf {
    let d = std::env::temp_dir().join(common::unique("vsd-readme-"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn readme_command_blocks_run_as_typed() {
    if !common::e2e_prerequisites(true) {
        return;
    }
    let work = tempdir();
    let log = work.join("blocks.log");
    let mut script = String::from(
        "set -e -o pipefail\n\
         mount -t tmpfs vsd-readme /run/vsd\n\
         teardown() {\n\
           t=$(sed -n 's/^tear down: //p' \"$LOG\" | tail -1)\n\
           if [[ -n $t ]]; then \"$t\"; fi\n\
         }\n\
         trap teardown EXIT\n",
    );
    for b in readme_blocks() {
        if b.lang != "sh" || b.skip.is_some() {
            continue;
        }
        script.push_str(&format!(
            "echo '### README.md:{} '\n{{\n{}}} 2>&1 | tee -a \"$LOG\"\n",
            b.line, b.text
        ));
    }
    std::fs::create_dir_all("/run/vsd").unwrap();
    let bin_dir = PathBuf::from(env!("CARGO_BIN_EXE_vsadm"))
        .parent()
        .unwrap()
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "bash", "-c", &script])
        .current_dir(repo())
        .env("PATH", path)
        .env("LOG", &log)
        // The binaries cargo test already built (debug, or release under --release).
        .env(
            "DEMO_PROFILE",
            bin_dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("debug"),
        )
        .env("DEMO_REQUESTS", "2")
        // cargo test built the binaries; a nested cargo would wait for its lock.
        .env("DEMO_BUILD", "0")
        .output()
        .expect("unshare");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let _ = std::fs::remove_file("/tmp/vsd.rules");
    let _ = std::fs::remove_dir_all(&work);
    eprintln!("{stdout}\n{stderr}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // The kept demo was torn down by the command it printed.
    assert!(stdout.contains("demo: torn down"), "{stdout}\n{stderr}");
    // Services the README adds are there when it lists them.
    assert!(stdout.contains("TCP  198.18.0.100:83 rr"), "{stdout}");
    assert!(stdout.contains("FWM  1 rr"), "{stdout}");
}
