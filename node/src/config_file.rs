//! `<data-dir>/config.toml`: defaults for the command-line flags. A flag
//! given on the command line wins over the file.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use libp2p::Multiaddr;
use serde::Deserialize;

/// The file's name in the data directory.
pub const CONFIG_FILE: &str = "config.toml";
/// Largest config file read.
const MAX_BYTES: u64 = 1 << 20;

/// Every key the file may hold; unknown keys are an error, so typos show.
#[derive(Deserialize, Default, Debug, Clone, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Addresses to listen on (like repeated `--listen`).
    #[serde(default, deserialize_with = "multiaddrs")]
    pub listen: Vec<Multiaddr>,
    /// Peers to join the DHT through (like repeated `--bootstrap`).
    #[serde(default, deserialize_with = "multiaddrs")]
    pub bootstrap: Vec<Multiaddr>,
    /// Upload cap, e.g. "8mbit" (like `--max-upload`).
    pub max_upload: Option<String>,
    /// Download cap (like `--max-download`).
    pub max_download: Option<String>,
    /// Never upload (like `--no-upload`).
    #[serde(default)]
    pub no_upload: bool,
    /// Prometheus metrics address, e.g. "127.0.0.1:9898" (like `--metrics`).
    pub metrics: Option<String>,
    /// Run a relay v2 server with the default limits (like a bare `--relay`).
    #[serde(default)]
    pub relay_server: bool,
    /// Relays to reserve a slot on (like repeated `--relay ADDR`).
    #[serde(default, deserialize_with = "multiaddrs")]
    pub relays: Vec<Multiaddr>,
    /// Addresses others reach us at (like repeated `--external`).
    #[serde(default, deserialize_with = "multiaddrs")]
    pub external: Vec<Multiaddr>,
}

fn multiaddrs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Multiaddr>, D::Error> {
    let texts = Vec::<String>::deserialize(d)?;
    texts
        .iter()
        .map(|t| {
            t.parse()
                .map_err(|e| serde::de::Error::custom(format!("{t:?} is not a multiaddr: {e}")))
        })
        .collect()
}

impl FileConfig {
    /// Reads `config.toml` from `data_dir`; the defaults if there is none.
    pub fn load(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join(CONFIG_FILE);
        let mut f = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let meta = f
            .metadata()
            .with_context(|| format!("cannot read {}", path.display()))?;
        let uid = rustix::process::geteuid().as_raw();
        if !meta.is_file() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
            bail!(
                "{} must be a regular file of this user that others cannot write (chmod 644)",
                path.display()
            );
        }
        let mut text = String::new();
        Read::by_ref(&mut f)
            .take(MAX_BYTES + 1)
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read {} as UTF-8 text", path.display()))?;
        if text.len() as u64 > MAX_BYTES {
            bail!("{} is larger than {MAX_BYTES} bytes", path.display());
        }
        Self::parse(&text).with_context(|| format!("invalid {}", path.display()))
    }

    /// Parses the TOML text of a config file.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_key_parses() {
        let c = FileConfig::parse(
            r#"
            listen = ["/ip4/127.0.0.1/tcp/4001"]
            bootstrap = ["/ip4/127.0.0.1/tcp/4002"]
            max_upload = "8mbit"
            max_download = "4MiB"
            no_upload = true
            metrics = "127.0.0.1:9898"
            relay_server = true
            relays = ["/ip4/192.0.2.1/tcp/4001/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"]
            external = ["/ip4/192.0.2.2/tcp/4001"]
            "#,
        )
        .unwrap();
        assert_eq!(c.listen.len(), 1);
        assert_eq!(c.bootstrap.len(), 1);
        assert_eq!(c.max_upload.as_deref(), Some("8mbit"));
        assert_eq!(c.max_download.as_deref(), Some("4MiB"));
        assert!(c.no_upload);
        assert_eq!(c.metrics.as_deref(), Some("127.0.0.1:9898"));
        assert!(c.relay_server);
        assert_eq!(c.relays.len(), 1);
        assert_eq!(c.external.len(), 1);
    }

    #[test]
    fn typos_and_bad_values_are_errors() {
        let e = FileConfig::parse("max_uplaod = \"8mbit\"").unwrap_err();
        assert!(format!("{e:#}").contains("max_uplaod"), "{e:#}");
        assert!(FileConfig::parse("listen = [\"not an address\"]").is_err());
        assert!(FileConfig::parse("no_upload = \"yes\"").is_err());
    }

    #[test]
    fn no_file_means_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(FileConfig::load(dir.path()).unwrap(), FileConfig::default());
    }
}
