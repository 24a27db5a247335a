//! One node per data directory (a daemon, or a share/get without one): an
//! exclusive `flock` on `daemon.lock`, held for the node's life and released
//! by the kernel when it exits. Two nodes with one identity would each dial
//! the other as itself.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context};
use rustix::fs::{flock, FlockOperation};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "daemon.lock";

/// Held while the node runs.
pub struct DaemonLock {
    _file: File,
}

impl DaemonLock {
    /// Takes the lock of `data_dir`, or says that another node holds it.
    pub fn acquire(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Self { _file: file }),
            Err(e) if io::Error::from(e).kind() == io::ErrorKind::WouldBlock => bail!(
                "another node is already running on data dir {}: a daemon (`node join`; \
                 talk to it with `node ls/share/get --data-dir {}`) or a share/get \
                 without one; give this node its own --data-dir",
                data_dir.display(),
                data_dir.display()
            ),
            Err(e) => {
                Err(io::Error::from(e)).with_context(|| format!("cannot lock {}", path.display()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_daemon_on_the_same_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = DaemonLock::acquire(dir.path()).unwrap();
        let err = DaemonLock::acquire(dir.path()).err().unwrap();
        assert!(err.to_string().contains("already running"), "{err}");
        drop(first);
        DaemonLock::acquire(dir.path()).unwrap();
    }
}
