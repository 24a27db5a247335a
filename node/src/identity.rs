//! The node's persistent ed25519 identity, kept in its data directory.
//!
//! Nothing here follows a link inside the data directory: the key is read
//! with O_NOFOLLOW and written through a fresh O_EXCL temp file, so a link
//! planted at either name can neither leak another file nor overwrite one.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use anyhow::{bail, Context};
use libp2p::identity::Keypair;

use crate::storage::nofollow::{
    create_new_at, open_dir_path, open_file_at, rename_at, sync_dir, unlink_at,
};

/// Key file name inside the data directory.
pub const KEY_FILE: &str = "identity.key";
const KEY_TMP: &str = "identity.key.tmp";
/// A protobuf-encoded ed25519 keypair is about 70 bytes; anything far larger is not a key.
const MAX_KEY_BYTES: u64 = 16 * 1024;

/// Loads the keypair from `dir`, creating the directory (mode 0700) and a new key (mode 0600) on first start.
pub fn load_or_create(dir: &Path) -> anyhow::Result<Keypair> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    // The data directory itself was named by the user (or is the default): opened as given.
    let dir_fd = open_dir_path(dir)
        .with_context(|| format!("cannot open data directory {}", dir.display()))?;
    let path = dir.join(KEY_FILE);
    match open_file_at(dir_fd.as_fd(), OsStr::new(KEY_FILE), false) {
        Ok(file) => {
            let mut bytes = Vec::new();
            file.take(MAX_KEY_BYTES)
                .read_to_end(&mut bytes)
                .with_context(|| format!("cannot read identity key {}", path.display()))?;
            Keypair::from_protobuf_encoding(&bytes).with_context(|| {
                format!(
                    "identity key {} is corrupt; move it away to create a new identity",
                    path.display()
                )
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .context("cannot encode the new identity key")?;
            let tmp = dir.join(KEY_TMP);
            let d = dir_fd.as_fd();
            let write = || -> io::Result<()> {
                // A temp file left by a crash (or a link planted there) is removed, not written through.
                unlink_at(d, OsStr::new(KEY_TMP))?;
                let mut f = create_new_at(d, OsStr::new(KEY_TMP), 0o600)?;
                f.write_all(&bytes)?;
                f.sync_all()?;
                rename_at(d, OsStr::new(KEY_TMP), d, OsStr::new(KEY_FILE))?;
                sync_dir(d)
            };
            if let Err(e) = write() {
                let _ = unlink_at(d, OsStr::new(KEY_TMP));
                bail!("cannot write identity key {} (via {}): {e}", path.display(), tmp.display());
            }
            Ok(key)
        }
        Err(e) => bail!(
            "cannot read identity key {}: {e}; it must be a regular file, not a link: move it away to create a new identity",
            path.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn identity_persists_with_private_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let a = load_or_create(&dir).unwrap();
        let b = load_or_create(&dir).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        let mode = fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        fs::write(dir.join(KEY_FILE), b"garbage").unwrap();
        assert!(load_or_create(&dir)
            .unwrap_err()
            .to_string()
            .contains("corrupt"));
    }

    #[test]
    fn links_in_the_data_dir_are_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let dir = tmp.path().join("data");
        fs::create_dir(&dir).unwrap();
        // A link at the temp name: the key is still written, the victim untouched.
        symlink(&victim, dir.join(KEY_TMP)).unwrap();
        let key = load_or_create(&dir).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert!(!fs::symlink_metadata(dir.join(KEY_FILE))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(
            load_or_create(&dir).unwrap().public().to_peer_id(),
            key.public().to_peer_id()
        );
        // A link at the key itself (say, to another node's key) is refused, not read.
        fs::remove_file(dir.join(KEY_FILE)).unwrap();
        symlink(&victim, dir.join(KEY_FILE)).unwrap();
        let err = load_or_create(&dir).unwrap_err().to_string();
        assert!(err.contains("link"), "{err}");
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
    }
}
