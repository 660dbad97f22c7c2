//! Generates bindings to the system DPDK with bindgen and compiles the C
//! shims: `static inline` functions (through bindgen's `wrap_static_fns`) and
//! the few macros vsd needs as functions (`helpers.c`).
//!
//! Linking is dynamic: the binaries link the shared `librte_*` libraries that
//! pkg-config names, and the EAL loads poll-mode drivers at start-up from its
//! plugin directory (Debian: /usr/lib/x86_64-linux-gnu/dpdk/pmds-23.0).

use std::env;
use std::path::PathBuf;

fn main() {
    let lib = pkg_config::Config::new()
        .atleast_version("22.11")
        .probe("libdpdk")
        .expect("DPDK 22.11 not found through pkg-config (apt-get install libdpdk-dev)");

    // DPDK's cflags carry -include rte_config.h and -march: keep them for both
    // bindgen and cc so struct layouts and inline code match the library.
    let cflags: Vec<String> = {
        let out = std::process::Command::new("pkg-config")
            .args(["--cflags", "libdpdk"])
            .output()
            .expect("pkg-config --cflags libdpdk");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    };

    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR"));
    let wrap_c = out_dir.join("static_fns.c");

    let mut builder = bindgen::Builder::default()
        .header("csrc/wrapper.h")
        .clang_args(&cflags)
        .clang_arg("-Icsrc")
        .allowlist_function("rte_.*|vsd_.*")
        .allowlist_type("rte_.*")
        .allowlist_var("RTE_.*")
        // packed + aligned structs bindgen cannot lay out
        .opaque_type("rte_arp_hdr")
        .opaque_type("rte_arp_ipv4")
        .opaque_type("rte_l2tpv2_.*")
        .opaque_type("rte_gtp_.*")
        .opaque_type("rte_flow_item_l2tpv2")
        .opaque_type("rte_flow_item_gtp.*")
        .blocklist_function("rte_.*_vlog")
        .blocklist_function("rte_vlog")
        .derive_default(true)
        .layout_tests(true)
        .generate_comments(false)
        .prepend_enum_name(false)
        .wrap_static_fns(true)
        .wrap_static_fns_path(out_dir.join("static_fns"))
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for p in &lib.include_paths {
        builder = builder.clang_arg(format!("-I{}", p.display()));
    }
    let bindings = builder.generate().expect("bindgen failed on DPDK headers");
    bindings
        .write_to_file(out_dir.join("bindings.rs"))
        .expect("write bindings.rs");

    let mut cc = cc::Build::new();
    cc.file(&wrap_c)
        .file("csrc/helpers.c")
        .include("csrc")
        .include(env::current_dir().expect("cwd"))
        .warnings(false)
        .opt_level(3);
    for f in &cflags {
        cc.flag(f);
    }
    // the generated wrapper includes wrapper.h by its path
    cc.compile("dpdk_shims");

    println!("cargo:rerun-if-changed=csrc");
    println!("cargo:rerun-if-changed=build.rs");
}
