//! Builds the guest component (wasm32-wasip2, SIMD128, release) so the worker can embed it.
//!
//! The guest gets its own target directory, `target/guest`, because this build already holds
//! the lock on the main one; the component lands at
//! `target/guest/wasm32-wasip2/release/llorch_guest.wasm`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let host_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = host_dir.parent().expect("host/ sits inside the workspace").to_path_buf();
    for watched in ["guest/src", "guest/Cargo.toml", "wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target_dir = root.join("target").join("guest");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut build = Command::new(cargo);
    build
        .current_dir(&root)
        .args(["build", "--release", "--locked", "-p", "llorch-guest", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(&target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", "-Ctarget-feature=+simd128");
    // Settings meant for the host build must not leak into the guest's.
    for var in [
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        build.env_remove(var);
    }
    let status = build.status().expect("cargo can be started");
    if !status.success() {
        panic!("building the guest component failed; is the target installed? (rustup target add wasm32-wasip2)");
    }
    let wasm = target_dir.join("wasm32-wasip2/release/llorch_guest.wasm");
    println!("cargo:rustc-env=LLORCH_GUEST_WASM={}", wasm.display());
}
