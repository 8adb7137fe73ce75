//! Builds the policy guest crates to wasm32 and encodes them as components, so a plain
//! `cargo build` / `cargo test` is all a newcomer types. The built-ins are embedded with
//! `include_bytes!`; the hostile test guests and the example policies are only used by the tests.
//!
//! The guests are built by a nested cargo in their own target directory (next to this build's)
//! so it never waits on the outer build's lock, and optimised (profile `guest`) because
//! policies run on every decision.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

// The runtime engine's configuration: an artifact only loads into an engine configured alike.
#[path = "src/policy/engine_config.rs"]
mod engine_config;

/// Built-ins shipped in the binary; each is also precompiled (`<name>.cwasm`).
const BUILTINS: &[&str] = &["tank-mode", "single-backup"];

/// (package, file stem of the component written to OUT_DIR)
const GUESTS: &[&str] = &[
    "tank-mode",
    "single-backup",
    "hostile-policy",
    "legacy-v01-policy",
    "retry-trap-policy",
    "backups-first",
    "no-kit",
];
const TARGET: &str = "wasm32-unknown-unknown";
/// The workspace profile for guests (see the root Cargo.toml).
const PROFILE: &str = "guest";

fn main() {
    if let Err(e) = run() {
        // A build script's panic is the clearest way to stop the build with a message.
        panic!("building the policy components failed: {e}");
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let workspace = manifest_dir
        .parent()
        .ok_or("host crate has no parent directory")?
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    for watched in [
        "policies",
        "wit",
        "tests/guests",
        "examples/policies",
        "Cargo.lock",
    ] {
        println!(
            "cargo:rerun-if-changed={}",
            workspace.join(watched).display()
        );
    }

    let guest_target = guest_target_dir(&out_dir, &workspace);
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&workspace)
        .args([
            "build",
            "--profile",
            PROFILE,
            "--target",
            TARGET,
            "--target-dir",
        ])
        .arg(&guest_target);
    for guest in GUESTS {
        cmd.args(["-p", guest]);
    }
    // Flags meant for the host build (coverage, clippy, sanitizers) must not leak into guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
    ] {
        cmd.env_remove(var);
    }
    let output = cmd
        .output()
        .map_err(|e| format!("cannot run cargo for the guests: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("may not be installed")
            || stderr.contains("can't find crate for `core`")
        {
            "\nhint: the wasm32 target is missing: run `rustup target add wasm32-unknown-unknown`"
        } else {
            ""
        };
        return Err(format!("cargo build of the guests failed:\n{stderr}{hint}"));
    }

    // Tests and the worked example (docs/policies/worked-example.md) use the raw core modules too.
    println!(
        "cargo:rustc-env=PINWARDEN_GUEST_MODULES={}",
        guest_target.join(TARGET).join(PROFILE).display()
    );
    for guest in GUESTS {
        let module_path = guest_target
            .join(TARGET)
            .join(PROFILE)
            .join(format!("{}.wasm", guest.replace('-', "_")));
        let module = std::fs::read(&module_path)
            .map_err(|e| format!("cannot read {}: {e}", module_path.display()))?;
        let component = wit_component::ComponentEncoder::default()
            .module(&module)
            .and_then(|enc| enc.validate(true).encode())
            .map_err(|e| format!("cannot encode {guest} as a component: {e:#}"))?;
        if BUILTINS.contains(guest) {
            precompile(guest, &component, &out_dir)?;
        }
        let dest = out_dir.join(format!("{guest}.wasm"));
        std::fs::write(&dest, component)
            .map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    }
    Ok(())
}

/// Compiles a built-in ahead of time, so no `pinwarden` process pays cranelift for it.
fn precompile(guest: &str, component: &[u8], out_dir: &Path) -> Result<(), String> {
    let engine = wasmtime::Engine::new(&engine_config::config())
        .map_err(|e| format!("cannot start wasmtime to precompile {guest}: {e:#}"))?;
    let artifact = engine
        .precompile_component(component)
        .map_err(|e| format!("cannot precompile {guest}: {e:#}"))?;
    let dest = out_dir.join(format!("{guest}.cwasm"));
    std::fs::write(&dest, artifact).map_err(|e| format!("cannot write {}: {e}", dest.display()))
}

/// `<target>/wasm-guests`, where `<target>` is this build's target directory (found from
/// OUT_DIR = `<target>/[<triple>/]<profile>/build/<pkg>/out`).
fn guest_target_dir(out_dir: &Path, workspace: &Path) -> PathBuf {
    out_dir
        .ancestors()
        .find(|p| p.file_name().is_some_and(|n| n == "build"))
        .and_then(|build| build.parent())
        .and_then(|profile| profile.parent())
        .map(|target| target.join("wasm-guests"))
        .unwrap_or_else(|| workspace.join("target").join("wasm-guests"))
}
