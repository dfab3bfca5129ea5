//! Links the `ndeploy-agent` binary statically (glibc static-pie), so the
//! store path ndeploy pushes runs on any x86_64/aarch64 Linux target,
//! NixOS included, where no `/lib64/ld-linux-x86-64.so.2` exists.
//!
//! Design: Rust's `-C target-feature=+crt-static` would do it, but cargo can
//! only give rustc flags to every crate of a build (and crt-static breaks
//! proc-macro crates) unless the build is an explicit `--target` one, which
//! compiles every dependency a second time. What crt-static changes for a
//! glibc target is only the final link: the prebuilt standard library asks
//! for its C libraries (`-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc`) and
//! the linker picks their shared objects. So this script, for the agent
//! binary only (`rustc-link-arg-bin`, not the library, its tests or the
//! `ndeploy` binary):
//! - makes a directory in `OUT_DIR` where each of those names is the static
//!   archive the C compiler knows (`cc -print-file-name=libc.a`, ...), and
//!   `libgcc_s.a` a linker script for `libgcc_eh.a` + `libgcc.a` (the
//!   unwinder and helpers libgcc_s.so would give), and puts it first on the
//!   library search path: the linker searches directory by directory, so it
//!   takes these archives before the shared objects of the system directories;
//! - links with `-static-pie` (startup code that relocates itself, no
//!   program interpreter).
//!
//! The result has no PT_INTERP and no DT_NEEDED; the agent needs nothing of
//! glibc's NSS or `dlopen` (no user or host name lookups). Where the static
//! archives are missing (no `libc6-dev`-style static glibc), for other
//! targets than a host glibc Linux build, or with `NDEPLOY_AGENT_DYNAMIC=1`,
//! the binary is linked as usual with a cargo warning (push then falls back
//! to the plain push on targets where it cannot run).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The C libraries the prebuilt standard library links on glibc targets.
const STD_LIBS: [&str; 6] = ["c", "m", "rt", "dl", "util", "pthread"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=NDEPLOY_AGENT_DYNAMIC");
    if std::env::var_os("NDEPLOY_AGENT_DYNAMIC").is_some_and(|v| v == "1") {
        return;
    }
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let glibc_linux = env("CARGO_CFG_TARGET_OS") == "linux" && env("CARGO_CFG_TARGET_ENV") == "gnu";
    // Already static (RUSTFLAGS), or a cross build whose archives `cc` would not know.
    let crt_static = env("CARGO_CFG_TARGET_FEATURE").split(',').any(|f| f == "crt-static");
    if !glibc_linux || crt_static || env("HOST") != env("TARGET") {
        return;
    }
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else { return };
    match static_lib_dir(&out.join("static-libs")) {
        Ok(dir) => {
            println!("cargo:rustc-link-arg-bin=ndeploy-agent=-L{}", dir.display());
            println!("cargo:rustc-link-arg-bin=ndeploy-agent=-static-pie");
        }
        Err(why) => println!("cargo:warning=ndeploy-agent is linked dynamically (it will not run on NixOS targets): {why}"),
    }
}

/// The compiler driver rustc links with.
fn linker() -> String {
    std::env::var("RUSTC_LINKER").ok().filter(|l| !l.is_empty()).unwrap_or_else(|| "cc".to_owned())
}

/// Where the C compiler finds `name`, if it does (it prints the bare name when not).
fn print_file_name(name: &str) -> Result<PathBuf, String> {
    let cc = linker();
    let out = Command::new(&cc).arg(format!("-print-file-name={name}")).output().map_err(|e| format!("{cc}: {e}"))?;
    let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if path.is_absolute() && path.is_file() {
        Ok(path)
    } else {
        Err(format!("{cc} knows no {name} (install the static C library, e.g. libc6-dev)"))
    }
}

/// Fill `dir` with the static stand-ins of [`STD_LIBS`] and `gcc_s`.
fn static_lib_dir(dir: &Path) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let link = |target: &Path, name: &str| -> Result<(), String> {
        let at = dir.join(name);
        let _ = std::fs::remove_file(&at);
        std::os::unix::fs::symlink(target, &at).map_err(|e| format!("{}: {e}", at.display()))
    };
    for lib in STD_LIBS {
        let name = format!("lib{lib}.a");
        link(&print_file_name(&name)?, &name)?;
    }
    let (eh, gcc, c) = (print_file_name("libgcc_eh.a")?, print_file_name("libgcc.a")?, print_file_name("libc.a")?);
    let script = format!("GROUP ( \"{}\" \"{}\" \"{}\" )\n", eh.display(), gcc.display(), c.display());
    let at = dir.join("libgcc_s.a");
    std::fs::write(&at, script).map_err(|e| format!("{}: {e}", at.display()))?;
    Ok(dir.to_path_buf())
}
