//! One distribution in a namespace testbed (root only): a bootstrap node, a
//! seeder capped at u_s and N leechers capped at u (and d_min), each in its
//! own network namespace; the clock runs from starting the leechers' `get`
//! until the last one has printed the path of its verified copy. Everything
//! the run created is removed before it returns, whatever happens.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};
use protocol::ContentId;

use crate::loopback::{Args, NodeFiles, STARTUP_TIMEOUT};
use crate::netns::{Caps, NodeCaps, Shaping, Slot, TbfStats, Testbed};
use crate::procs::{self, Supervisor};
use crate::report::Report;
use crate::stats::StatsFile;
use crate::swarm::{self, Leecher};
use crate::tcpstats::TcpSummary;
use crate::timeline::Timeline;
use crate::units::{self, ByteSize, Rate};

/// Who serves the leechers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Every leecher uploads to the others too.
    P2p,
    /// Only the seeder serves (leechers run with `--no-upload`).
    ClientServer,
}

impl Mode {
    /// `p2p` or `cs`, as in the CSV and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::P2p => "p2p",
            Mode::ClientServer => "cs",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "p2p" => Ok(Mode::P2p),
            "cs" | "client-server" => Ok(Mode::ClientServer),
            other => Err(format!("unknown mode {other:?} (use p2p or cs)")),
        }
    }
}

/// Parameters of one run.
#[derive(Clone, Debug)]
pub struct NsRunConfig {
    /// Number of leechers N.
    pub leechers: usize,
    /// P2P or client-server.
    pub mode: Mode,
    /// The file the seeder shares.
    pub source: PathBuf,
    /// Its size F.
    pub size: ByteSize,
    /// `node share --chunk-size` (`None`: the node's default).
    pub chunk_size: Option<ByteSize>,
    /// `node --threads` for every node (`None`: the node's default).
    pub node_threads: Option<u16>,
    /// Seeder upload cap u_s.
    pub server_upload: Rate,
    /// Each leecher's upload cap u.
    pub upload: Rate,
    /// Each leecher's download cap d_min (`None`: uncapped).
    pub download: Option<Rate>,
    /// tbf burst and latency.
    pub shaping: Shaping,
    /// Give up when the leechers are not all done after this long.
    pub timeout: Duration,
}

/// What a run measured and what it had created (for leftover checks).
#[derive(Debug)]
pub struct NsRunOutcome {
    /// Time, byte counts, SHA-256 of every copy (not yet compared: the caller knows the source's).
    pub report: Report,
    /// The testbed's namespace prefix; nothing by that prefix exists any more.
    pub prefix: String,
    /// Every node process started; all have been stopped and reaped.
    pub pids: Vec<u32>,
    /// CPU seconds all nodes had used when the last leecher finished: on a
    /// small machine a swarm can be CPU-bound rather than link-bound.
    pub cpu_seconds: f64,
    /// The tbf caps' counters when the last leecher finished.
    pub caps: CapsSummary,
    /// TCP's segment counters when the last leecher finished.
    pub tcp: TcpSummary,
}

/// The tbf counters of a run, summed by role.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CapsSummary {
    /// The seeder's uplink.
    pub seeder_up: TbfStats,
    /// All leechers' uplinks together.
    pub leechers_up: TbfStats,
    /// All leechers' downlinks together (zero when downloads are uncapped).
    pub leechers_down: TbfStats,
}

impl CapsSummary {
    /// Sums per-node counters by role (the bootstrap node is uncapped and not counted).
    pub fn of(per_node: &[NodeCaps]) -> Self {
        let add = |a: &mut TbfStats, b: TbfStats| {
            a.sent_bytes += b.sent_bytes;
            a.dropped += b.dropped;
        };
        let mut sum = Self::default();
        for n in per_node {
            if n.name == "seeder" {
                add(&mut sum.seeder_up, n.up);
            } else if n.name.starts_with("leecher-") {
                add(&mut sum.leechers_up, n.up);
                add(&mut sum.leechers_down, n.down);
            }
        }
        sum
    }

    /// Bytes sent on every capped uplink, the seeder's included.
    pub fn uplink_bytes(&self) -> u64 {
        self.seeder_up.sent_bytes + self.leechers_up.sent_bytes
    }
}

/// The flags every node of a run gets beyond the testbed's own (listen
/// address, data dir, bootstrap, stats file, output dir): the run's
/// deviations from the node's defaults.
fn common_flags(cfg: &NsRunConfig) -> Vec<(&'static str, String)> {
    let mut flags = Vec::new();
    if let Some(n) = cfg.node_threads {
        flags.push(("--threads", n.to_string()));
    }
    flags
}

/// Every flag a run passed to its nodes that the node would not have
/// chosen itself, for the CSV: `--threads=1 seeder:--chunk-size=262144
/// leechers:--no-upload`; empty when every node ran at its defaults.
pub fn flags_label(cfg: &NsRunConfig) -> String {
    let mut words: Vec<String> = common_flags(cfg)
        .into_iter()
        .map(|(f, v)| format!("{f}={v}"))
        .collect();
    if let Some(c) = cfg.chunk_size {
        words.push(format!("seeder:--chunk-size={}", c.0));
    }
    if cfg.mode == Mode::ClientServer {
        words.push("leechers:--no-upload".to_string());
    }
    words.join(" ")
}

/// Adds the run's common flags to a node's arguments.
fn with_common(args: Args, cfg: &NsRunConfig) -> Args {
    common_flags(cfg)
        .into_iter()
        .fold(args, |args, (flag, value)| args.opt(flag, value))
}

/// Runs one distribution in `run` (a folder for node dirs and logs) with the
/// `node` binary `bin`; `source_sha256` is the source file's hash. Node logs
/// follow testnet's own `RUST_LOG`, which the nodes inherit.
pub async fn run(
    bin: &Path,
    run: &Path,
    cfg: &NsRunConfig,
    source_sha256: &str,
) -> anyhow::Result<NsRunOutcome> {
    if cfg.leechers == 0 {
        bail!("at least one leecher is needed");
    }
    // Declared before the supervisor so it is dropped after it: nodes stop
    // first, then their namespaces go.
    let mut bed = Testbed::create(cfg.shaping)?;
    let prefix = bed.prefix().to_string();
    let mut sup = Supervisor::new(bin.to_path_buf());
    let mut at_finish = AtFinish::default();
    let result = distribute(&mut bed, &mut sup, run, cfg, source_sha256, &mut at_finish).await;
    if sup.running() > 0 {
        sup.shutdown(procs::GRACE, std::future::pending()).await;
    }
    let pids = sup.started_pids().to_vec();
    drop(sup);
    let teardown = bed.teardown();
    let report = result?;
    teardown?;
    Ok(NsRunOutcome {
        report,
        prefix,
        pids,
        cpu_seconds: at_finish.cpu_seconds,
        caps: at_finish.caps,
        tcp: at_finish.tcp,
    })
}

/// What is read the moment the last leecher finishes, before the nodes'
/// seeding afterwards adds to it.
#[derive(Debug, Default)]
struct AtFinish {
    cpu_seconds: f64,
    caps: CapsSummary,
    tcp: TcpSummary,
}

impl AtFinish {
    fn read(sup: &Supervisor, bed: &Testbed) -> Self {
        let cpu_seconds = sup.cpu_seconds();
        let caps = match bed.caps_stats() {
            Ok(per_node) => CapsSummary::of(&per_node),
            Err(e) => {
                eprintln!("testnet: warning: cannot read tbf statistics: {e:#}");
                CapsSummary::default()
            }
        };
        let tcp = match bed.tcp_stats() {
            Ok(per_node) => TcpSummary::of(per_node.iter().map(|(n, c)| (n.as_str(), *c))),
            Err(e) => {
                eprintln!("testnet: warning: cannot read TCP counters: {e:#}");
                TcpSummary::default()
            }
        };
        Self {
            cpu_seconds,
            caps,
            tcp,
        }
    }
}

async fn distribute(
    bed: &mut Testbed,
    sup: &mut Supervisor,
    run: &Path,
    cfg: &NsRunConfig,
    source_sha256: &str,
    at_finish: &mut AtFinish,
) -> anyhow::Result<Report> {
    // Bootstrap: uncapped, it only answers DHT queries.
    let slot = bed.add_node("bootstrap", Caps::default())?;
    let files = NodeFiles::create(run, "bootstrap")?;
    let args = Args::new(["join"])
        .opt("--listen", slot.listen_addr())
        .opt("--data-dir", &files.data);
    let args = with_common(args, cfg);
    let boot_id = spawn(sup, &slot, &args, &files)?;
    let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
    let line = sup
        .next_line(boot_id, deadline, "its listen address")
        .await?;
    let boot = slot.check_addr(&line.text)?;

    // Seeder, capped at u_s.
    let slot = bed.add_node(
        "seeder",
        Caps {
            upload: Some(cfg.server_upload),
            download: None,
        },
    )?;
    let files = NodeFiles::create(run, "seeder")?;
    let args = Args::new([OsString::from("share"), cfg.source.clone().into()])
        .opt("--listen", slot.listen_addr())
        .opt("--data-dir", &files.data)
        .opt("--bootstrap", &boot)
        .opt("--stats-file", &files.stats);
    let args = with_common(args, cfg);
    let args = match cfg.chunk_size {
        Some(c) => args.opt("--chunk-size", c.0.to_string()),
        None => args,
    };
    let seeder = spawn(sup, &slot, &args, &files)?;
    let hashing = Duration::from_secs_f64(cfg.size.0 as f64 / 10e6);
    let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT + hashing;
    let line = sup.next_line(seeder, deadline, "the content ID").await?;
    let content_id: ContentId = line
        .text
        .parse()
        .with_context(|| format!("the seeder printed {:?} instead of a content ID", line.text))?;
    let mut seeder_stats = StatsFile::new(files.stats.clone());
    swarm::wait_connected(sup, &mut seeder_stats).await?;

    // Every leecher's namespace first, so wiring is not timed.
    let caps = Caps {
        upload: Some(cfg.upload),
        download: cfg.download,
    };
    let mut slots = Vec::with_capacity(cfg.leechers);
    for k in 1..=cfg.leechers {
        slots.push(bed.add_node(&format!("leecher-{k}"), caps)?);
    }
    eprintln!(
        "testnet: {} mode, {} leechers, {} at {} each (seeder {}, downloads {})",
        cfg.mode,
        cfg.leechers,
        cfg.size,
        cfg.upload,
        cfg.server_upload,
        cfg.download
            .map_or("uncapped".to_string(), |d| d.to_string())
    );
    let mut leechers = Vec::with_capacity(cfg.leechers);
    let started = Instant::now();
    let mut timeline = Timeline::create(&run.join("timeline.csv"), started)?;
    for slot in &slots {
        let files = NodeFiles::create(run, &slot.name)?;
        let out = files.dir.join("out");
        std::fs::create_dir_all(&out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        let mut args = Args::new(["get".to_string(), content_id.to_string()])
            .opt("--out", &out)
            .opt("--listen", slot.listen_addr())
            .opt("--data-dir", &files.data)
            .opt("--bootstrap", &boot)
            .opt("--stats-file", &files.stats);
        args = with_common(args, cfg);
        if cfg.mode == Mode::ClientServer {
            args = args.flag("--no-upload");
        }
        let id = spawn(sup, slot, &args, &files)?;
        leechers.push(Leecher::new(slot.name.clone(), id, files.stats, out));
    }

    let distribution = swarm::watch(
        sup,
        &mut seeder_stats,
        &mut leechers,
        started,
        cfg.timeout,
        &mut timeline,
    )
    .await?;
    let finished_at = SystemTime::now();
    *at_finish = AtFinish::read(sup, bed);
    eprintln!(
        "testnet: all {} leechers done in {}",
        cfg.leechers,
        units::secs(distribution)
    );
    swarm::settle_stats(&mut seeder_stats, &mut leechers, finished_at).await;
    sup.shutdown(procs::GRACE, std::future::pending()).await;
    let nodes = swarm::collect(&seeder_stats, &leechers).await?;
    let report = Report {
        size: cfg.size,
        distribution,
        nodes,
        source_sha256: source_sha256.to_string(),
    };
    // Copies are bulky (N·F); keep them only when one is wrong.
    if report.mismatches() == 0 {
        for l in &leechers {
            if let Err(e) = std::fs::remove_dir_all(&l.out) {
                eprintln!("testnet: warning: cannot remove {}: {e}", l.out.display());
            }
        }
    }
    Ok(report)
}

fn spawn(
    sup: &mut Supervisor,
    slot: &Slot,
    args: &Args,
    files: &NodeFiles,
) -> anyhow::Result<procs::ChildId> {
    sup.spawn_in_netns(&slot.name, &slot.netns, args.as_slice(), &files.log)
}
