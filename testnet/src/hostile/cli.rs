//! Command-line faces of the hostile peer: `testnet hostile` (the
//! measurement) and the hidden `testnet hostile-peer` (one attacker process).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use libp2p::Multiaddr;
use protocol::ContentId;

use super::measure::{self, HostileConfig};
use super::{Attack, Config, Hostile};
use crate::procs::{Signals, Supervisor};
use crate::units::ByteSize;

/// Flags of `testnet hostile`.
#[derive(Clone, Debug, clap::Args)]
pub struct MeasureArgs {
    /// Attacks to run, in order (attacks on a seeder only).
    #[arg(long, value_delimiter = ',', num_args = 1..,
          default_values_t = Attack::AGAINST_SEEDERS.to_vec())]
    pub attacks: Vec<Attack>,
    /// Attacker processes per attack, each its own identity.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    pub attackers: u16,
    /// Honest downloads per measurement; the median counts.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=20))]
    pub runs: u16,
    /// Size of the shared file.
    #[arg(long, default_value = "64MiB")]
    pub size: ByteSize,
    /// Empty files shared beside it, so the manifest is as large as a real
    /// directory share's (10,000 make ~2 MB); 0 shares the file alone.
    #[arg(long, default_value_t = 10_000)]
    pub empty_files: usize,
    /// Chunk size of the seeder (`node share --chunk-size`). Default: the node's own choice.
    #[arg(long)]
    pub chunk_size: Option<ByteSize>,
    /// How wide each attacker runs: asks in flight on its session, or
    /// session streams open at once. Default: each attack's own (2 to 256).
    #[arg(long, visible_alias = "streams")]
    pub width: Option<usize>,
    /// Seconds an attacker holds a stalled session before reopening it.
    #[arg(long, default_value_t = 20, value_name = "SECS")]
    pub hold: u64,
    /// Seconds of attack before the first honest download.
    #[arg(long, default_value_t = 2, value_name = "SECS")]
    pub ramp: u64,
    /// Seconds of quiet before the seeder's RSS is read again.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub settle: u64,
    /// Seconds after which one honest download counts as failed.
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    pub get_timeout: u64,
    /// Seed of the file's contents.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

/// Flags of `testnet hostile-peer`.
#[derive(Clone, Debug, clap::Args)]
pub struct PeerArgs {
    /// The attack.
    #[arg(long)]
    pub attack: Attack,
    /// Client attacks: the victim. Server attacks: the bootstrap node to
    /// announce through. A 127.0.0.1 multiaddr ending in /p2p/<peer id>.
    #[arg(long)]
    pub target: Multiaddr,
    /// Content ID to ask for or to claim (all but noncanonical-manifest).
    #[arg(long)]
    pub content: Option<ContentId>,
    /// Asks in flight on the session, or session streams open at once.
    /// Default: the attack's own.
    #[arg(long, visible_alias = "streams")]
    pub width: Option<usize>,
    /// Seconds a stalled session is held before it is reopened.
    #[arg(long, default_value_t = 20, value_name = "SECS")]
    pub hold: u64,
    /// An honest seeder of the content to relay from (wrong-chunks, lying-seeder).
    #[arg(long)]
    pub upstream: Option<Multiaddr>,
    /// The file noncanonical-manifest shares.
    #[arg(long)]
    pub file: Option<std::path::PathBuf>,
}

/// `testnet hostile-peer`: runs one attack until SIGINT/SIGTERM. Prints
/// `attacking <target> as <peer id>` once connected (and, for server
/// attacks, `content <id>` and `listen <addr>` lines), then its counters
/// on stderr every 5 s.
pub async fn run_peer(args: &PeerArgs) -> anyhow::Result<ExitCode> {
    let mut signals = Signals::install()?;
    let cfg = Config {
        attack: args.attack,
        target: args.target.clone(),
        content: args.content,
        width: args.width,
        hold: Duration::from_secs(args.hold),
        upstream: args.upstream.clone(),
        file: args.file.clone(),
    };
    let hostile = Hostile::start(cfg).await?;
    {
        let mut out = std::io::stdout().lock();
        if let Some(id) = hostile.content() {
            if args.attack.is_server() {
                writeln!(out, "content {id}")?;
            }
        }
        for a in hostile.listen_addrs() {
            writeln!(out, "listen {a}")?;
        }
        writeln!(out, "attacking {} as {}", args.target, hostile.peer_id())?;
        out.flush()?;
    }
    let mut every = tokio::time::interval(Duration::from_secs(5));
    every.tick().await;
    loop {
        tokio::select! {
            _ = every.tick() => eprintln!("hostile {}: {}", args.attack, hostile.stats()),
            sig = signals.recv() => {
                eprintln!("hostile {}: {sig}; stopping after {}", args.attack, hostile.stats());
                break;
            }
        }
    }
    hostile.stop().await;
    Ok(ExitCode::SUCCESS)
}

/// `testnet hostile`: runs the measurement, prints the table, writes hostile.csv.
pub async fn run_measure(
    sup: &mut Supervisor,
    run_dir: &Path,
    args: &MeasureArgs,
) -> anyhow::Result<ExitCode> {
    let cfg = HostileConfig {
        attacks: args.attacks.clone(),
        attackers: usize::from(args.attackers),
        runs: usize::from(args.runs),
        size: args.size,
        empty_files: args.empty_files,
        chunk_size: args.chunk_size,
        width: args.width,
        hold: Duration::from_secs(args.hold),
        ramp: Duration::from_secs(args.ramp),
        settle: Duration::from_secs(args.settle),
        get_timeout: Duration::from_secs(args.get_timeout),
        seed: args.seed,
        attacker_bin: std::env::current_exe().context("cannot locate the testnet executable")?,
    };
    let outcome = measure::run(sup, run_dir, &cfg).await?;
    let csv = run_dir.join("hostile.csv");
    std::fs::write(&csv, outcome.csv())
        .with_context(|| format!("cannot write {}", csv.display()))?;
    print!("\n{}", outcome.render());
    eprintln!(
        "testnet: figures in {}; logs in {}",
        csv.display(),
        run_dir.display()
    );
    Ok(if outcome.all_pass() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
