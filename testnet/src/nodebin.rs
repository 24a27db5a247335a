//! Finding the kadswarm `node` binary — by path, never through `PATH`,
//! where `node` is usually Node.js — and building it when it is missing.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Resolves the `node` binary to an absolute path.
///
/// 1. `explicit` (`--node-bin`), which must be an existing file.
/// 2. `node` next to the testnet executable (both live in `target/<profile>/`).
///    When testnet runs under `cargo run` the node sources may have changed
///    since that binary was built, so `cargo build --release -p node` runs first
///    (a no-op when it is fresh).
/// 3. Missing: `cargo build --release -p node` into testnet's target dir.
pub async fn resolve(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!(
                "--node-bin {}: no such file (give the path of the kadswarm node binary, e.g. target/release/node)",
                path.display()
            );
        }
        // Absolute, so Command never looks it up on PATH.
        return path
            .canonicalize()
            .with_context(|| format!("cannot resolve --node-bin {}", path.display()));
    }
    let exe = std::env::current_exe().context("cannot locate the testnet executable")?;
    let exe_dir = exe
        .parent()
        .context("the testnet executable has no parent directory")?;
    let beside = exe_dir.join("node");
    let under_cargo = std::env::var_os("CARGO").is_some();
    if beside.is_file() && !under_cargo {
        return Ok(beside);
    }
    let Some(manifest) = workspace_manifest() else {
        if beside.is_file() {
            return Ok(beside);
        }
        bail!(
            "the kadswarm node binary is not at {} and the kadswarm sources are not here to build it; \
             pass --node-bin PATH",
            beside.display()
        );
    };
    let target_dir = target_dir_of(exe_dir);
    build(&manifest, &target_dir).await?;
    let built = target_dir.join("release").join("node");
    if !built.is_file() {
        bail!("cargo build succeeded but {} is missing", built.display());
    }
    Ok(built)
}

/// `target/release` → `target`; test binaries live one level deeper in `deps/`.
fn target_dir_of(exe_dir: &Path) -> PathBuf {
    let profile_dir = if exe_dir.ends_with("deps") {
        exe_dir.parent().unwrap_or(exe_dir)
    } else {
        exe_dir
    };
    profile_dir.parent().unwrap_or(profile_dir).to_path_buf()
}

/// Variables cargo sets for the package it runs (`cargo run`, `cargo test`).
///
/// A nested `cargo build` must not inherit them: build scripts that watch
/// them (ring's) would see them change and rebuild the whole libp2p stack.
pub fn package_env_vars() -> Vec<std::ffi::OsString> {
    std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| {
            let k = k.to_string_lossy();
            [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
            ]
            .iter()
            .any(|p| k.starts_with(p))
                || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "OUT_DIR"].contains(&&*k)
        })
        .collect()
}

/// A cargo profile the node binary is built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// `target/debug/node`.
    Debug,
    /// `target/release/node`.
    Release,
}

impl Profile {
    /// The profile this crate was compiled with: what a test harness built
    /// alongside it should run.
    pub fn current() -> Self {
        if cfg!(debug_assertions) {
            Profile::Debug
        } else {
            Profile::Release
        }
    }

    fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

/// Builds the workspace's node binary with `profile` into the target
/// directory the running executable lives in, blocking, and returns its path.
///
/// For test harnesses (which run from `target/<profile>/deps/`): cargo
/// makes it a no-op when the binary is fresh.
pub fn build_blocking(profile: Profile) -> anyhow::Result<PathBuf> {
    let manifest = workspace_manifest()
        .context("the kadswarm sources are not here to build the node binary")?;
    let exe = std::env::current_exe().context("cannot locate the running executable")?;
    let exe_dir = exe
        .parent()
        .context("the running executable has no parent directory")?;
    let target_dir = target_dir_of(exe_dir);
    let status = cargo_build(&manifest, &target_dir, profile)
        .status()
        .context("cannot run cargo to build the node binary")?;
    if !status.success() {
        bail!("building the node binary failed ({status}); fix the build");
    }
    let built = target_dir.join(profile.dir()).join("node");
    if !built.is_file() {
        bail!("cargo build succeeded but {} is missing", built.display());
    }
    Ok(built)
}

/// The workspace's Cargo.toml, if these sources are still where they were built.
fn workspace_manifest() -> Option<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|p| p.join("Cargo.toml"))
        .filter(|p| p.is_file())
}

/// `cargo build -p node` of `profile`, without the variables of the package cargo is running.
fn cargo_build(manifest: &Path, target_dir: &Path, profile: Profile) -> std::process::Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    for k in package_env_vars() {
        cmd.env_remove(k);
    }
    cmd.args(["build", "-p", "node", "--bin", "node", "--manifest-path"])
        .arg(manifest)
        .arg("--target-dir")
        .arg(target_dir);
    if profile == Profile::Release {
        cmd.arg("--release");
    }
    cmd
}

async fn build(manifest: &Path, target_dir: &Path) -> anyhow::Result<()> {
    eprintln!("testnet: building the node binary (cargo build --release -p node)");
    let mut cmd =
        tokio::process::Command::from(cargo_build(manifest, target_dir, Profile::Release));
    let status = cmd
        .kill_on_drop(true)
        .status()
        .await
        .context("cannot run cargo to build the node binary")?;
    if !status.success() {
        bail!("building the node binary failed ({status}); fix the build or pass --node-bin PATH");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_dir_from_exe_dir() {
        assert_eq!(
            target_dir_of(Path::new("/w/target/release")),
            Path::new("/w/target")
        );
        assert_eq!(
            target_dir_of(Path::new("/w/target/debug/deps")),
            Path::new("/w/target")
        );
    }
}
