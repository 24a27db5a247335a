//! The `node` command: join the DHT, share content, get content.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use libp2p::Multiaddr;
use node::ratelimit::parse_rate;
use node::{Client, GetEvent, NodeConfig};
use protocol::ContentId;

/// Runtime worker threads unless `--threads` says otherwise.
const DEFAULT_THREADS: u16 = 1;

/// kadswarm: trackerless BitTorrent-style file distribution over a Kademlia DHT.
#[derive(Parser)]
#[command(name = "node", version, about)]
struct Cli {
    /// Worker threads of the async runtime (default 1: the event loop and
    /// the session streams on one thread, disk work on a blocking pool).
    /// Measured on 2 cores, one thread was as fast in a 31-node swarm and
    /// faster one to one; more may help a node serving many fast peers on
    /// a machine of its own.
    #[arg(long, global = true, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a long-lived node that joins the DHT and serves it.
    Join {
        #[command(flatten)]
        net: NetArgs,
    },
    /// Share a file or directory: print its content ID, announce it, and seed until interrupted.
    Share {
        /// File or directory to share.
        path: PathBuf,
        /// Chunk size: a power of two from 16KiB to 4MiB, or `auto` (about
        /// 512 chunks, 16KiB to 1MiB). The same content with another chunk
        /// size has another ID.
        #[arg(long, default_value = "auto")]
        chunk_size: String,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Fetch content by ID (hex or kadswarm:<hex>), verify it, then seed until interrupted.
    Get {
        /// Content ID.
        id: String,
        /// Directory to write the content into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Exit as soon as everything is verified on disk instead of seeding.
        #[arg(long)]
        no_seed: bool,
        /// Give up if no provider is found within this many seconds.
        #[arg(long, default_value_t = 60)]
        find_timeout: u64,
        #[command(flatten)]
        net: NetArgs,
    },
}

#[derive(Args, Clone)]
struct NetArgs {
    /// Peer to join the DHT through (multiaddr, with or without /p2p/<id>); repeatable.
    #[arg(long)]
    bootstrap: Vec<Multiaddr>,
    /// Address to listen on; repeatable. Default: TCP and QUIC on all interfaces, OS-chosen ports.
    #[arg(long)]
    listen: Vec<Multiaddr>,
    /// Where the identity key and state live (default: $XDG_DATA_HOME/kadswarm or ~/.local/share/kadswarm).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Upload cap, e.g. 8mbit or 2MiB (per second).
    #[arg(long)]
    max_upload: Option<String>,
    /// Download cap, e.g. 8mbit or 2MiB (per second).
    #[arg(long)]
    max_download: Option<String>,
    /// Never upload chunks to anyone (client-server experiments).
    #[arg(long)]
    no_upload: bool,
    /// Rewrite this file every 500 ms with JSON counters (for scripts).
    #[arg(long)]
    stats_file: Option<PathBuf>,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.worker_threads(usize::from(cli.threads.unwrap_or(DEFAULT_THREADS)));
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Join { net } => {
            let client = start(&net, None).await?;
            print_listen_addrs(&client).await?;
            run_until_signal(&client, &net, None).await
        }
        Cmd::Share {
            path,
            chunk_size,
            net,
        } => {
            let chunk_size = parse_chunk_size(&chunk_size)?;
            let path = path.canonicalize().with_context(|| {
                format!("cannot share {}: no such file or directory", path.display())
            })?;
            let started = Instant::now();
            let scan_path = path.clone();
            let scanned = tokio::task::spawn_blocking(move || {
                let mut last = Instant::now();
                node::scan::scan_share(&scan_path, chunk_size, &mut |done, total| {
                    if last.elapsed() > Duration::from_millis(500) {
                        last = Instant::now();
                        eprintln!("hashing: {} / {}", human(done), human(total));
                    }
                })
            })
            .await
            .context("hashing task failed")??;
            let node::scan::Scanned {
                manifest,
                tree,
                files,
            } = scanned;
            let id = manifest.id();
            println!("{id}");
            let _ = std::io::stdout().flush();
            eprintln!(
                "hashed {} ({} in {} chunks) in {:.1}s; link: {}",
                manifest.name,
                human(manifest.total_length()),
                manifest.chunk_count(),
                started.elapsed().as_secs_f64(),
                id.to_link()
            );
            // Served only while each file is the one just hashed (no link, no swap).
            let storage = node::storage::Storage::open_share(&manifest, &path, &files)?;
            let total = manifest.chunk_count();
            let client = start(&net, None).await?;
            client.share(manifest, tree, storage).await?;
            run_until_signal(&client, &net, Some((total, total))).await
        }
        Cmd::Get {
            id,
            out,
            no_seed,
            find_timeout,
            net,
        } => {
            let launched = Instant::now();
            let id: ContentId = id
                .parse()
                .with_context(|| format!("invalid content ID {id:?}"))?;
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create output directory {}", out.display()))?;
            check_writable(&out)?;
            let client = start(&net, Some(Duration::from_secs(find_timeout))).await?;
            eprintln!("searching the DHT for providers of {id} (giving up after {find_timeout} s)");
            let node::Download {
                mut events,
                mut done,
            } = client.get(id, out).await?;
            let mut progress = (0u32, 0u32);
            let mut last_print = Instant::now();
            let started = Instant::now();
            let mut found_providers = false;
            // One signal future for the whole loop, so a signal arriving mid-event is not lost.
            let signal = shutdown_signal();
            tokio::pin!(signal);
            let mut events_open = true;
            loop {
                let ev = tokio::select! {
                    // Progress may be dropped when we fall behind; the outcome never is.
                    biased;
                    outcome = &mut done => {
                        let path = match outcome {
                            Ok(Ok(path)) => path,
                            Ok(Err(e)) => bail!("{e}"),
                            Err(_) => bail!("the node stopped unexpectedly"),
                        };
                        let stats = client.stats().await.unwrap_or_default();
                        progress = (progress.1.max(progress.0), progress.1.max(progress.0));
                        println!("{}", path.display());
                        let _ = std::io::stdout().flush();
                        eprintln!(
                            "complete: {} in {:.1}s ({} received)",
                            path.display(),
                            started.elapsed().as_secs_f64(),
                            human(stats.downloaded)
                        );
                        break;
                    }
                    ev = events.recv(), if events_open => ev,
                    _ = &mut signal => {
                        eprintln!("interrupted: saving progress");
                        client.shutdown().await?;
                        return Ok(());
                    }
                };
                match ev {
                    Some(GetEvent::ProvidersFound(n)) => {
                        if !found_providers && n > 0 {
                            found_providers = true;
                            eprintln!(
                                "found {n} provider(s) {:.0} ms after start",
                                launched.elapsed().as_secs_f64() * 1000.0
                            );
                        }
                    }
                    Some(GetEvent::Manifest(m)) => eprintln!(
                        "fetching {} ({} in {} chunks)",
                        m.name,
                        human(m.total_length()),
                        m.chunk_count()
                    ),
                    Some(GetEvent::Progress { have, total, peers }) => {
                        progress = (have, total);
                        write_stats(&client, &net, Some(progress)).await;
                        if last_print.elapsed() >= Duration::from_secs(1) && total > 0 {
                            last_print = Instant::now();
                            let stats = client.stats().await.unwrap_or_default();
                            let secs = started.elapsed().as_secs_f64().max(0.001);
                            eprintln!(
                                "[{:3}%] {have}/{total} chunks, {peers} peers, {} received ({}/s)",
                                u64::from(have) * 100 / u64::from(total),
                                human(stats.downloaded),
                                human((stats.downloaded as f64 / secs) as u64)
                            );
                        }
                    }
                    // The engine dropped the progress channel; the outcome still comes.
                    None => events_open = false,
                }
            }
            if no_seed {
                write_stats(&client, &net, Some(progress)).await;
                client.shutdown().await?;
                return Ok(());
            }
            eprintln!("seeding; press Ctrl-C to stop");
            run_until_signal(&client, &net, Some(progress)).await
        }
    }
}

/// `auto` → None (chosen from the content's size), else the size in bytes.
fn parse_chunk_size(s: &str) -> anyhow::Result<Option<u32>> {
    if s.eq_ignore_ascii_case("auto") {
        return Ok(None);
    }
    let bytes = parse_rate(s)
        .map_err(|e| anyhow::anyhow!("invalid chunk size: {e}"))?
        .context("invalid chunk size: give a size such as 256KiB, or auto")?;
    u32::try_from(bytes)
        .map(Some)
        .context("chunk size too large")
}

fn data_dir(net: &NetArgs) -> PathBuf {
    if let Some(d) = &net.data_dir {
        return d.clone();
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("kadswarm")
}

async fn start(net: &NetArgs, find_timeout: Option<Duration>) -> anyhow::Result<Client> {
    let dir = data_dir(net);
    let keypair = node::identity::load_or_create(&dir)?;
    let mut config = NodeConfig::loopback();
    config.listen = if net.listen.is_empty() {
        vec![
            "/ip4/0.0.0.0/tcp/0".parse()?,
            "/ip4/0.0.0.0/udp/0/quic-v1".parse()?,
        ]
    } else {
        net.listen.clone()
    };
    let rate = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<u64>> {
        match v {
            Some(v) => parse_rate(v).map_err(|e| anyhow::anyhow!("invalid {flag}: {e}")),
            None => Ok(None),
        }
    };
    config.net.max_upload = rate("--max-upload", &net.max_upload)?;
    config.net.max_download = rate("--max-download", &net.max_download)?;
    config.engine.bootstrap = net.bootstrap.clone();
    config.engine.transfer.upload_enabled = !net.no_upload;
    if let Some(t) = find_timeout {
        config.engine.find_timeout = t;
    }
    let (client, _task) = node::spawn(keypair, config)?;
    if !net.bootstrap.is_empty() {
        let n = tokio::time::timeout(Duration::from_secs(20), client.bootstrapped())
            .await
            .context("timed out reaching the bootstrap peers")??;
        tracing::info!("connected to {n} bootstrap peers");
    }
    Ok(client)
}

/// Fails early if files cannot be created in `dir` (the probe never follows a link or truncates anything).
fn check_writable(dir: &Path) -> anyhow::Result<()> {
    node::storage::check_writable(dir).with_context(|| {
        format!(
            "output directory {} is not writable; choose another --out",
            dir.display()
        )
    })
}

async fn print_listen_addrs(client: &Client) -> anyhow::Result<()> {
    for a in client.listen_addrs().await? {
        println!("{a}");
    }
    let _ = std::io::stdout().flush();
    Ok(())
}

/// Prints listen addresses as they appear, keeps stats fresh, and stops cleanly on a signal.
async fn run_until_signal(
    client: &Client,
    net: &NetArgs,
    progress: Option<(u32, u32)>,
) -> anyhow::Result<()> {
    let mut printed = std::collections::HashSet::new();
    let print_addrs = net.stats_file.is_none() || progress.is_none();
    // A node with content refreshes its stats often; a bare `join` node has
    // little to report, and many of them share one machine in testnets.
    let every = if progress.is_some() { 500 } else { 2000 };
    let mut tick = tokio::time::interval(Duration::from_millis(every));
    let mut trim = tokio::time::interval(Duration::from_secs(5));
    trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = trim.tick() => node::memory::release_free_heap(),
            _ = tick.tick() => {
                if print_addrs && progress.is_none() {
                    if let Ok(addrs) = client.listen_addrs().await {
                        for a in addrs {
                            if printed.insert(a.clone()) && printed.len() > 1 {
                                println!("{a}");
                                let _ = std::io::stdout().flush();
                            }
                        }
                    }
                }
                write_stats(client, net, progress).await;
            }
        }
    }
    eprintln!("stopping: saving state");
    let stop = client.shutdown();
    tokio::select! {
        r = stop => r,
        _ = shutdown_signal() => {
            eprintln!("second interrupt: exiting now");
            std::process::exit(130);
        }
    }
}

async fn write_stats(client: &Client, net: &NetArgs, progress: Option<(u32, u32)>) {
    let Some(path) = &net.stats_file else {
        return;
    };
    let Ok(s) = client.stats().await else {
        return;
    };
    let (have, total) = progress.unwrap_or((0, 0));
    // Peer IDs are base58: safe inside JSON strings as they are.
    let banned: Vec<String> = s.banned.iter().map(|p| format!("\"{p}\"")).collect();
    let kinds = |b: [u64; 4]| {
        format!(
            "{{\"payload\":{},\"proofs\":{},\"control\":{},\"framing\":{}}}",
            b[0], b[1], b[2], b[3]
        )
    };
    let json = format!(
        "{{\"peer_id\":\"{}\",\"uploaded\":{},\"downloaded\":{},\"have\":{have},\"total\":{total},\"peers\":{},\"banned\":[{}],\"wire_sent\":{},\"wire_received\":{}}}\n",
        client.peer_id(),
        s.uploaded,
        s.downloaded,
        s.connected_peers,
        banned.join(","),
        kinds(s.wire_sent),
        kinds(s.wire_received)
    );
    // An idle node rewrites nothing: many nodes on one machine stay idle.
    static LAST: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    if *last == json {
        return;
    }
    let tmp = path.with_extension("tmp");
    if write_new_file(&tmp, json.as_bytes()).is_ok() && std::fs::rename(&tmp, path).is_ok() {
        *last = json;
    }
}

/// Writes `bytes` to a file that this call creates: a link or file another
/// user planted at `path` is removed, never followed or truncated (rename
/// then replaces only the name at the final path, not what a link there names).
fn write_new_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // O_EXCL: fails rather than follow a link planted since the removal.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    f.write_all(bytes)
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
