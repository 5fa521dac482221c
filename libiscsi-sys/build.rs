//! Links libiscsi. Asks pkg-config first (Debian ships `libiscsi.pc`) so a
//! non-default prefix works; falls back to plain `-liscsi`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PKG_CONFIG_PATH");
    println!("cargo:rerun-if-changed=build.rs");

    let from_pkg_config = Command::new("pkg-config")
        .args(["--libs", "libiscsi"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok());

    match from_pkg_config {
        Some(flags) => {
            for flag in flags.split_whitespace() {
                if let Some(dir) = flag.strip_prefix("-L") {
                    println!("cargo:rustc-link-search=native={dir}");
                } else if let Some(lib) = flag.strip_prefix("-l") {
                    println!("cargo:rustc-link-lib={lib}");
                }
            }
        }
        None => println!("cargo:rustc-link-lib=iscsi"),
    }
}
