//! Links libiscsi, and with the `bindgen` feature regenerates the bindings.
//!
//! Linking asks pkg-config first (Debian ships `libiscsi.pc`) so a
//! non-default prefix works, and falls back to plain `-liscsi`.
//!
//! With `--features bindgen`, the bindings are generated from the installed
//! headers (`wrapper.h`) with the allowlist in `allowlist.txt` into
//! `$OUT_DIR/bindings.rs`, and the crate uses those instead of the committed
//! `src/bindings.rs`. Needs libclang (Debian `libclang-dev`).

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

    #[cfg(feature = "bindgen")]
    generate::bindings();
}

#[cfg(feature = "bindgen")]
mod generate {
    use std::path::PathBuf;

    pub fn bindings() {
        println!("cargo:rerun-if-changed=allowlist.txt");
        println!("cargo:rerun-if-changed=wrapper.h");
        let allowlist = std::fs::read_to_string("allowlist.txt").expect("read allowlist.txt");
        let mut builder = bindgen::Builder::default()
            .header("wrapper.h")
            .use_core()
            .ctypes_prefix("::core::ffi")
            .prepend_enum_name(false)
            .default_enum_style(bindgen::EnumVariation::Consts)
            .generate_comments(false);
        for line in allowlist.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            builder = match line.split_once(' ') {
                Some(("function", name)) => builder.allowlist_function(name.trim()),
                Some(("type", name)) => builder.allowlist_type(name.trim()),
                Some(("var", pattern)) => builder.allowlist_var(pattern.trim()),
                _ => panic!("allowlist.txt: cannot read {line:?}"),
            };
        }
        let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
        builder
            .generate()
            .expect("bindgen could not generate the bindings (is libclang-dev installed?)")
            .write_to_file(out.join("bindings.rs"))
            .expect("write $OUT_DIR/bindings.rs");
    }
}
