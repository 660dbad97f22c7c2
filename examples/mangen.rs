//! Writes the man pages vsd(8), vsadm(8) and vsd.toml(5) into a directory:
//! `cargo run --example mangen -- OUTDIR` (the Debian package build runs it).
//!
//! Each page is generated from what the programs themselves use, so it
//! cannot drift: vsd(8) from the clap definition (`vsd::cli::VsdArgs`),
//! vsadm(8) from the help text of vsadm's hand-written parser
//! (`ipvsadm::usage`, which a unit test keeps complete), vsd.toml(5) from
//! `configs/demo.toml`, the annotated reference of every key (parsed by a
//! unit test).

use clap::CommandFactory;
use std::path::{Path, PathBuf};

/// Text as roff shows it verbatim inside `.nf`: backslashes escaped, a
/// leading `.` or `'` (a roff request) neutralised, `-` kept a hyphen-minus.
fn verbatim(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let l = line.replace('\\', "\\e").replace('-', "\\-");
        if l.starts_with('.') || l.starts_with('\'') {
            out.push_str("\\&");
        }
        out.push_str(&l);
        out.push('\n');
    }
    out
}

fn header(name: &str, section: &str, summary: &str) -> String {
    format!(
        ".TH {} {section} \"\" \"vsd {}\" \"vsd\"\n.SH NAME\n{name} \\- {summary}\n",
        name.to_uppercase(),
        env!("CARGO_PKG_VERSION")
    )
}

fn vsadm_page() -> String {
    let usage = vsd::control::ipvsadm::usage("vsadm");
    let (synopsis, rest) = usage.split_once("\n\n").unwrap_or((&usage, ""));
    let mut p = header(
        "vsadm",
        "8",
        "administer vsd, the Linux Virtual Server director on DPDK, with ipvsadm's syntax",
    );
    p.push_str(".SH SYNOPSIS\n.nf\n");
    p.push_str(&verbatim(synopsis.trim_start_matches("Usage:\n")));
    p.push_str(".fi\n.SH DESCRIPTION\n");
    p.push_str(
        "vsadm takes ipvsadm(8)'s command line and sends it to a running vsd(8) over its \
control socket; listings are printed in ipvsadm's formats. \
\\fB\\-\\-socket\\fR \\fIPATH\\fR (default \\fI/run/vsd/vsd.sock\\fR) and \\fB\\-\\-json\\fR \
may appear anywhere on the line.\n",
    );
    p.push_str(".SH OPTIONS\n.nf\n");
    p.push_str(&verbatim(rest));
    p.push_str(".fi\n");
    p.push_str(
        ".SH EXIT STATUS\n0 on success (also when the reader of the output closes it early), \
2 for wrong usage, 1 when vsd refuses or cannot be reached.\n\
.SH FILES\n.TP\n.I /run/vsd/vsd.sock\nvsd's control socket.\n\
.SH SEE ALSO\n.BR vsd (8),\n.BR vsd.toml (5),\n.BR ipvsadm (8)\n",
    );
    p
}

fn vsd_toml_page(reference: &str) -> String {
    let mut p = header(
        "vsd.toml",
        "5",
        "configuration of vsd, the Linux Virtual Server director on DPDK",
    );
    p.push_str(
        ".SH SYNOPSIS\n.I /etc/vsd/vsd.toml\n.SH DESCRIPTION\n\
vsd(8) reads one TOML file (\\fB\\-\\-config\\fR). Errors name the file, line, column and key; \
\\fBvsd \\-\\-check \\-\\-config\\fR \\fIFILE\\fR validates a file without starting. \
SIGHUP or \\fBvsadm \\-\\-reload\\fR applies a changed file's services. \
With \\fB\\-\\-keepalived\\fR \\fIFILE\\fR, the virtual_server blocks of an unmodified \
keepalived.conf are added to the services (see docs/keepalived.md).\n\
.PP\nThe reference below is the annotated example configuration shipped as \
\\fI/usr/share/doc/vsd/examples/demo.toml\\fR: every key, its default and its meaning.\n\
.SH REFERENCE\n.nf\n",
    );
    p.push_str(&verbatim(reference));
    p.push_str(
        ".fi\n.SH FILES\n.TP\n.I /etc/vsd/vsd.toml\nthe configuration vsd.service starts with.\n\
.SH SEE ALSO\n.BR vsd (8),\n.BR vsadm (8)\n",
    );
    p
}

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/man".into()),
    );
    std::fs::create_dir_all(&out)?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));

    let mut vsd = Vec::new();
    let cmd = vsd::cli::VsdArgs::command();
    let man = clap_mangen::Man::new(cmd).section("8");
    man.render(&mut vsd)?;
    // clap_mangen has no FILES / SEE ALSO of its own.
    vsd.extend_from_slice(
        b".SH FILES\n.TP\n.I /etc/vsd/vsd.toml\nthe configuration (vsd.toml(5)).\n\
.TP\n.I /run/vsd/vsd.sock\nthe control socket vsadm(8) talks to (default).\n\
.SH SEE ALSO\n.BR vsadm (8),\n.BR vsd.toml (5),\n.BR ipvsadm (8)\n",
    );
    std::fs::write(out.join("vsd.8"), vsd)?;
    std::fs::write(out.join("vsadm.8"), vsadm_page())?;
    let reference = std::fs::read_to_string(root.join("configs/demo.toml"))?;
    std::fs::write(out.join("vsd.toml.5"), vsd_toml_page(&reference))?;
    println!("man pages written to {}", out.display());
    Ok(())
}
