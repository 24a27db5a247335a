//! Running the `ip` and `tc` tools (iproute2) for namespace testbeds: found
//! by absolute path, exit codes checked, failures reported with the command
//! line and what the tool said.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

/// Where iproute2 usually lives; searched after `PATH`, which for a
/// non-login root shell may lack the sbin directories.
const SBIN_DIRS: [&str; 4] = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// The absolute path of `tool` (`ip` or `tc`), or an error saying how to get it.
pub fn tool(name: &str) -> anyhow::Result<PathBuf> {
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    path_dirs
        .into_iter()
        .chain(SBIN_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| {
            format!("`{name}` not found: namespace mode needs iproute2 (apt-get install iproute2)")
        })
}

/// Runs `tool args…`, returns its stdout; fails with the command line and its
/// stderr when it exits non-zero.
pub fn run<I, S>(tool_name: &str, args: I) -> anyhow::Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let bin = tool(tool_name)?;
    let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    let shown = command_line(&bin, &args);
    let out = Command::new(&bin)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {shown}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!("`{shown}` failed ({}): {}", out.status, stderr.trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip …`.
pub fn ip<I, S>(args: I) -> anyhow::Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run("ip", args)
}

/// `tc …`.
pub fn tc<I, S>(args: I) -> anyhow::Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run("tc", args)
}

fn command_line(bin: &Path, args: &[std::ffi::OsString]) -> String {
    let name = bin.file_name().unwrap_or(bin.as_os_str()).to_string_lossy();
    let mut s = name.into_owned();
    for a in args {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_name_the_command_and_its_stderr() {
        // `ip` is absent on some dev machines: the error then says how to install it.
        match run("ip", ["link", "show", "dev", "kswt-no-such-link"]) {
            Ok(out) => panic!("expected a failure, got {out:?}"),
            Err(e) => {
                let e = format!("{e:#}");
                assert!(
                    e.contains("ip link show dev kswt-no-such-link") || e.contains("iproute2"),
                    "{e}"
                );
            }
        }
    }
}
