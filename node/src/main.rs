//! The `node` command: join the DHT, share content, get content.

mod cli;

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use cli::net::{data_dir, print_listen_addrs, start, DhtRole, DirArgs, NetArgs};
use cli::remote::Remote;
use cli::serve::run_until_signal;
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
    /// Run the long-lived node (the daemon): join the DHT, serve the control
    /// API on loopback for `share`, `get`, `ls`, `status`, `stop` and
    /// `peers` on the same --data-dir, and resume the shares and downloads it
    /// kept.
    Join {
        #[command(flatten)]
        net: NetArgs,
    },
    /// Share a file or directory: print its content ID and seed it. With a
    /// daemon on --data-dir, hand it to the daemon and return; otherwise
    /// seed from this process until interrupted.
    Share {
        /// File or directory to share.
        path: PathBuf,
        /// Chunk size: a power of two from 16KiB to 4MiB, or `auto` (about
        /// 512 chunks, 16KiB to 1MiB). The same content with another chunk
        /// size has another ID.
        #[arg(long, default_value = "auto")]
        chunk_size: String,
        /// Print one JSON object per event on stdout instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        net: NetArgs,
    },
    /// Fetch content by ID (hex or kadswarm:<hex>), verify it, print its
    /// path, then seed. With a daemon on --data-dir, the daemon fetches and
    /// seeds it; otherwise this process does, until interrupted.
    Get {
        /// Content ID.
        id: String,
        /// Directory to write the content into.
        #[arg(long, default_value = ".")]
        out: PathBuf,
        /// Exit as soon as everything is verified on disk instead of seeding.
        #[arg(long)]
        no_seed: bool,
        /// Give up if no provider is found within this many seconds (embedded
        /// runs; a daemon keeps looking).
        #[arg(long, default_value_t = 60)]
        find_timeout: u64,
        /// With a daemon: return once it has the download instead of following it.
        #[arg(long)]
        detach: bool,
        /// Print one JSON object per event on stdout instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        net: NetArgs,
    },
    /// List the daemon's shares and downloads.
    Ls {
        /// One JSON object per item.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: DirArgs,
    },
    /// The daemon's peer ID, addresses, traffic, then its items.
    Status {
        /// One JSON object for the node, then one per item.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: DirArgs,
    },
    /// Stop sharing or fetching a content (verified data stays on disk).
    Stop {
        /// Content ID.
        id: String,
        #[command(flatten)]
        dir: DirArgs,
    },
    /// The daemon's connected peers.
    Peers {
        /// One JSON object per peer.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        dir: DirArgs,
    },
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
            let dir = data_dir(&net);
            let client = start(&net, None, DhtRole::Server).await?;
            let api = node::daemon::server::start(client.clone(), &dir).await?;
            print_listen_addrs(&client).await?;
            eprintln!(
                "control API on {} (token in {})",
                api.url,
                dir.join(node::daemon::CONTROL_FILE).display()
            );
            let r = run_until_signal(&client, &net, None).await;
            api.stop().await;
            r
        }
        Cmd::Share {
            path,
            chunk_size,
            json,
            net,
        } => match Remote::find(&data_dir(&net)).await? {
            Some(remote) => {
                let chunk_size = cli::share::parse_chunk_size(&chunk_size)?;
                cli::remote_cmds::share(&remote, path, chunk_size, json).await
            }
            None => cli::share::share(path, chunk_size, net, json).await,
        },
        Cmd::Get {
            id,
            out,
            no_seed,
            find_timeout,
            detach,
            json,
            net,
        } => match Remote::find(&data_dir(&net)).await? {
            Some(remote) => {
                if no_seed {
                    bail!("--no-seed is for a get without a daemon; the daemon seeds what it fetches (stop it with `node stop ID`)");
                }
                let id: ContentId = id
                    .parse()
                    .with_context(|| format!("invalid content ID {id:?}"))?;
                cli::remote_cmds::get(&remote, id, out, detach, json).await
            }
            None => {
                if detach {
                    bail!("--detach needs a daemon: start `node join --data-dir DIR` first");
                }
                cli::get::get(id, out, no_seed, find_timeout, net, json).await
            }
        },
        Cmd::Ls { json, dir } => cli::remote_cmds::ls(&dir.remote().await?, json).await,
        Cmd::Status { json, dir } => cli::remote_cmds::status(&dir.remote().await?, json).await,
        Cmd::Stop { id, dir } => {
            let id: ContentId = id
                .parse()
                .with_context(|| format!("invalid content ID {id:?}"))?;
            cli::remote_cmds::stop(&dir.remote().await?, id).await
        }
        Cmd::Peers { json, dir } => cli::remote_cmds::peers(&dir.remote().await?, json).await,
    }
}
