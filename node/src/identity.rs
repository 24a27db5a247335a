//! The node's persistent ed25519 identity, kept in its data directory.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context};
use libp2p::identity::Keypair;

/// Key file name inside the data directory.
pub const KEY_FILE: &str = "identity.key";

/// Loads the keypair from `dir`, creating the directory and a new key (mode 0600) on first start.
pub fn load_or_create(dir: &Path) -> anyhow::Result<Keypair> {
    fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    let path = dir.join(KEY_FILE);
    match fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes).with_context(|| {
            format!(
                "identity key {} is corrupt; move it away to create a new identity",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .context("cannot encode the new identity key")?;
            let tmp = dir.join(format!("{KEY_FILE}.tmp"));
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .with_context(|| format!("cannot write {}", tmp.display()))?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
            Ok(key)
        }
        Err(e) => bail!("cannot read identity key {}: {e}", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn identity_persists_with_private_mode() {
        let dir = std::env::temp_dir().join(format!("kadswarm-id-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let a = load_or_create(&dir).unwrap();
        let b = load_or_create(&dir).unwrap();
        assert_eq!(a.public().to_peer_id(), b.public().to_peer_id());
        let mode = fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        fs::write(dir.join(KEY_FILE), b"garbage").unwrap();
        assert!(load_or_create(&dir)
            .unwrap_err()
            .to_string()
            .contains("corrupt"));
        let _ = fs::remove_dir_all(&dir);
    }
}
