//! The `node` command: join the DHT, share content, get content.

mod cli;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use cli::net::{print_listen_addrs, start, NetArgs};
use cli::serve::run_until_signal;

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
        /// Print one JSON object per event on stdout instead of text.
        #[arg(long)]
        json: bool,
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
        /// Print one JSON object per event on stdout instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        net: NetArgs,
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
            let client = start(&net, None).await?;
            print_listen_addrs(&client).await?;
            run_until_signal(&client, &net, None).await
        }
        Cmd::Share {
            path,
            chunk_size,
            json,
            net,
        } => cli::share::share(path, chunk_size, net, json).await,
        Cmd::Get {
            id,
            out,
            no_seed,
            find_timeout,
            json,
            net,
        } => cli::get::get(id, out, no_seed, find_timeout, net, json).await,
    }
}
