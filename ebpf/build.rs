//! Compiles `src/steer.bpf.c` (the XDP program) and `src/reuseport.bpf.c` (the UDP backend's
//! SO_REUSEPORT steering) into `$OUT_DIR/<name>.bpf.o` with clang (`-target bpf`), and the XDP
//! program a second time without receive-time metadata (`steer_nometa.bpf.o`).
//!
//! Needs the Debian packages `clang` (the compiler), `libbpf-dev` (`bpf/bpf_helpers.h`,
//! `bpf/bpf_endian.h`) and `linux-libc-dev` (the kernel UAPI headers; installed with libc6-dev).
//! A missing tool or header stops the build with a message naming the package to install.
//! `CLANG` in the environment overrides the compiler path.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SOURCES: [&str; 2] = ["steer", "reuseport"];
const INSTALL: &str = "apt-get install -y clang llvm libbpf-dev linux-libc-dev";

fn main() {
    for name in SOURCES {
        println!("cargo:rerun-if-changed=src/{name}.bpf.c");
    }
    println!("cargo:rerun-if-changed=src/rfc3074.h");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CLANG");

    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".to_owned());
    let out_dir =
        PathBuf::from(env::var_os("OUT_DIR").unwrap_or_else(|| fail("OUT_DIR is not set")));

    let version = run(Command::new(&clang).arg("--version")).unwrap_or_else(|e| {
        fail(&format!(
            "cannot run `{clang}` ({e}): the XDP program needs clang with the BPF target.\n\
             Install the Debian package `clang` ({INSTALL}) or point CLANG at a clang binary."
        ))
    });
    if !version.status.success() {
        fail(&format!(
            "`{clang} --version` failed: install the Debian package `clang` ({INSTALL})"
        ));
    }
    for name in SOURCES {
        compile(&clang, &out_dir, name, name, &[]);
    }
    // The XDP program once more without its receive-time metadata, for kernels whose verifier
    // refuses `bpf_xdp_adjust_meta` (the loader falls back to it).
    compile(
        &clang,
        &out_dir,
        "steer",
        "steer_nometa",
        &["-DTANDEM_NO_META"],
    );
}

/// Compiles `src/<name>.bpf.c` with `defines` into `<out_dir>/<object>.bpf.o`.
fn compile(clang: &str, out_dir: &Path, name: &str, object: &str, defines: &[&str]) {
    let source = format!("src/{name}.bpf.c");
    let object = out_dir.join(format!("{object}.bpf.o"));
    let mut cmd = Command::new(clang);
    cmd.args([
        "-target", "bpf", "-mcpu=v3", "-O2", "-g", "-Wall", "-Werror",
    ]);
    cmd.args(defines);
    // Debian keeps <asm/*.h> (needed by the UAPI headers) in the multiarch directory, which the
    // bpf target does not search by itself.
    if let Some(dir) = multiarch_include(clang) {
        cmd.arg("-I").arg(dir);
    }
    cmd.arg("-c").arg(&source).arg("-o").arg(&object);

    let output = run(&mut cmd).unwrap_or_else(|e| fail(&format!("cannot run `{clang}`: {e}")));
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("bpf/bpf_helpers.h") || stderr.contains("bpf/bpf_endian.h") {
            "the libbpf headers are missing: install the Debian package `libbpf-dev`".to_owned()
        } else if stderr.contains("linux/") || stderr.contains("asm/") {
            "the kernel UAPI headers are missing: install the Debian package `linux-libc-dev`"
                .to_owned()
        } else if stderr.contains("unknown target") || stderr.contains("No available targets") {
            format!("`{clang}` has no BPF target: install Debian's `clang` ({INSTALL})")
        } else {
            format!("compiling {source} failed")
        };
        fail(&format!("{hint}\n--- clang output ---\n{stderr}"));
    }
}

/// `/usr/include/<multiarch>` if it exists (`x86_64-linux-gnu` on Debian amd64).
fn multiarch_include(clang: &str) -> Option<PathBuf> {
    let from_clang = run(Command::new(clang).arg("-print-multiarch"))
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty());
    let triple = from_clang.or_else(|| {
        let arch = env::var("CARGO_CFG_TARGET_ARCH").ok()?;
        Some(format!("{arch}-linux-gnu"))
    })?;
    let dir = Path::new("/usr/include").join(triple);
    dir.is_dir().then_some(dir)
}

fn run(cmd: &mut Command) -> std::io::Result<Output> {
    cmd.output()
}

fn fail(msg: &str) -> ! {
    // A build script reports errors by failing; cargo shows this message.
    panic!("tandem-ebpf: {msg}");
}
