//! The run folder: one fresh directory per run holding every node's data
//! dir, log and stats file, so runs never share state and logs outlive them.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context};

/// Where runs go when `--run-dir` is not given, relative to the working directory.
pub const DEFAULT_BASE: &str = "testnet-runs";

/// Creates the run folder and returns its absolute path.
///
/// With `explicit`, that directory is used and must be absent or empty (a
/// previous run's node identities and stats would mix with this one's).
/// Otherwise a new `testnet-runs/<UTC time>-<label>` is created.
pub fn create(explicit: Option<&Path>, label: &str) -> anyhow::Result<PathBuf> {
    let dir = match explicit {
        Some(dir) => {
            if dir.exists() {
                let mut entries = std::fs::read_dir(dir).with_context(|| {
                    format!("run folder {} is not a readable directory", dir.display())
                })?;
                if entries.next().is_some() {
                    bail!(
                        "run folder {} is not empty; pick a new one or leave out --run-dir",
                        dir.display()
                    );
                }
            } else {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create run folder {}", dir.display()))?;
            }
            dir.to_path_buf()
        }
        None => {
            let base = Path::new(DEFAULT_BASE);
            std::fs::create_dir_all(base)
                .with_context(|| format!("cannot create {}", base.display()))?;
            let stamp = utc_stamp(SystemTime::now());
            let mut n = 1;
            loop {
                let name = match n {
                    1 => format!("{stamp}-{label}"),
                    _ => format!("{stamp}-{label}-{n}"),
                };
                let dir = base.join(name);
                match std::fs::create_dir(&dir) {
                    Ok(()) => break dir,
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 100 => n += 1,
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("cannot create run folder {}", dir.display()))
                    }
                }
            }
        }
    };
    dir.canonicalize()
        .with_context(|| format!("cannot resolve run folder {}", dir.display()))
}

/// Creates `<run>/<name>` for one node and returns it.
pub fn node_dir(run: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let dir = run.join(name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// `2025-11-25T22-15-30Z`: sortable and safe in file names.
fn utc_stamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}-{:02}-{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn stamps_are_utc_and_file_name_safe() {
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(utc_stamp(at(0)), "1970-01-01T00-00-00Z");
        assert_eq!(utc_stamp(at(951_782_400)), "2000-02-29T00-00-00Z");
        assert_eq!(utc_stamp(at(1_764_108_930)), "2025-11-25T22-15-30Z");
    }

    #[test]
    fn explicit_run_dir_must_be_empty() {
        let dir = std::env::temp_dir().join(format!("testnet-rundir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let made = create(Some(&dir), "x").unwrap();
        assert!(made.is_absolute());
        node_dir(&made, "node-1").unwrap();
        assert!(create(Some(&dir), "x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
