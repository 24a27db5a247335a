//! Network flags shared by every command, and starting an embedded node from them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use libp2p::Multiaddr;
use node::units::parse_rate;
use node::{Client, NodeConfig};

/// Flags every command takes: where to listen, whom to bootstrap through, caps.
#[derive(Args, Clone)]
pub struct NetArgs {
    /// Peer to join the DHT through (multiaddr, with or without /p2p/<id>); repeatable.
    #[arg(long)]
    pub bootstrap: Vec<Multiaddr>,
    /// Address to listen on; repeatable. Default: TCP and QUIC on all interfaces, OS-chosen ports.
    #[arg(long)]
    pub listen: Vec<Multiaddr>,
    /// Where the identity key and state live (default: $XDG_DATA_HOME/kadswarm or ~/.local/share/kadswarm).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Upload cap, e.g. 8mbit or 2MiB (per second).
    #[arg(long)]
    pub max_upload: Option<String>,
    /// Download cap, e.g. 8mbit or 2MiB (per second).
    #[arg(long)]
    pub max_download: Option<String>,
    /// Never upload chunks to anyone (client-server experiments).
    #[arg(long)]
    pub no_upload: bool,
    /// Rewrite this file every 500 ms with JSON counters (for scripts).
    #[arg(long)]
    pub stats_file: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g. 127.0.0.1:9898. No authentication: keep it on loopback.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
}

/// The data dir's lock, held by a process that runs a node.
static NODE_LOCK: std::sync::OnceLock<node::daemon::lock::DaemonLock> = std::sync::OnceLock::new();

/// Commands that only talk to a daemon need just its data directory.
#[derive(Args, Clone)]
pub struct DirArgs {
    /// The daemon's data dir (default: $XDG_DATA_HOME/kadswarm or ~/.local/share/kadswarm).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl DirArgs {
    /// The daemon running on this data dir, or an error saying how to start one.
    pub async fn remote(&self) -> anyhow::Result<super::remote::Remote> {
        let dir = dir_or_default(self.data_dir.as_deref());
        super::remote::Remote::find(&dir).await?.with_context(|| {
            format!(
                "no node daemon runs on data dir {}; start one with `node join --data-dir {}`",
                dir.display(),
                dir.display()
            )
        })
    }
}

/// The data directory: `--data-dir`, else the XDG data home.
pub fn data_dir(net: &NetArgs) -> PathBuf {
    dir_or_default(net.data_dir.as_deref())
}

fn dir_or_default(dir: Option<&Path>) -> PathBuf {
    if let Some(d) = dir {
        return d.to_path_buf();
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("kadswarm")
}

/// Starts an embedded node from the flags; waits for the bootstrap peers.
pub async fn start(net: &NetArgs, find_timeout: Option<Duration>) -> anyhow::Result<Client> {
    let dir = data_dir(net);
    let keypair = node::identity::load_or_create(&dir)?;
    // Held until the process exits: one node per identity.
    let lock = node::daemon::lock::DaemonLock::acquire(&dir)?;
    if NODE_LOCK.set(lock).is_err() {
        anyhow::bail!("a node was already started in this process");
    }
    // Flags win; config.toml in the data dir supplies the rest.
    let file = node::config_file::FileConfig::load(&dir)?;
    let mut config = NodeConfig::loopback();
    config.listen = if !net.listen.is_empty() {
        net.listen.clone()
    } else if !file.listen.is_empty() {
        file.listen.clone()
    } else {
        vec![
            "/ip4/0.0.0.0/tcp/0".parse()?,
            "/ip4/0.0.0.0/udp/0/quic-v1".parse()?,
        ]
    };
    let rate = |flag: &str, v: Option<&String>| -> anyhow::Result<Option<u64>> {
        match v {
            Some(v) => parse_rate(v).map_err(|e| anyhow::anyhow!("invalid {flag}: {e}")),
            None => Ok(None),
        }
    };
    config.net.max_upload = rate(
        "--max-upload",
        net.max_upload.as_ref().or(file.max_upload.as_ref()),
    )?;
    config.net.max_download = rate(
        "--max-download",
        net.max_download.as_ref().or(file.max_download.as_ref()),
    )?;
    config.engine.bootstrap = if net.bootstrap.is_empty() {
        file.bootstrap.clone()
    } else {
        net.bootstrap.clone()
    };
    config.engine.transfer.upload_enabled = !(net.no_upload || file.no_upload);
    if let Some(t) = find_timeout {
        config.engine.find_timeout = t;
    }
    let config_bootstrap_empty = config.engine.bootstrap.is_empty();
    let (client, _task) = node::spawn(keypair, config)?;
    let metrics = match (net.metrics, &file.metrics) {
        (Some(a), _) => Some(a),
        (None, Some(text)) => Some(text.parse().with_context(|| {
            format!("invalid metrics = {text:?} in config.toml: give ADDR:PORT")
        })?),
        (None, None) => None,
    };
    if let Some(addr) = metrics {
        let (bound, _server) = node::metrics::start_metrics_server(addr, client.clone()).await?;
        eprintln!("serving metrics on http://{bound}/metrics");
    }
    if !config_bootstrap_empty {
        let n = tokio::time::timeout(Duration::from_secs(20), client.bootstrapped())
            .await
            .context("timed out reaching the bootstrap peers")??;
        tracing::info!("connected to {n} bootstrap peers");
    }
    Ok(client)
}

/// Fails early if files cannot be created in `dir` (the probe never follows a link or truncates anything).
pub fn check_writable(dir: &Path) -> anyhow::Result<()> {
    node::storage::check_writable(dir).with_context(|| {
        format!(
            "output directory {} is not writable; choose another --out",
            dir.display()
        )
    })
}

/// Prints each listen address on stdout.
pub async fn print_listen_addrs(client: &Client) -> anyhow::Result<()> {
    for a in client.listen_addrs().await? {
        println!("{a}");
    }
    let _ = std::io::stdout().flush();
    Ok(())
}
