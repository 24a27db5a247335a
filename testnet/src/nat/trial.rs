//! One trial: fresh namespaces, the control checks, a relay/bootstrap node
//! on the internet segment, a NATed seeder and its leechers; the copies'
//! SHA-256 and what every node's stats file says about reservations,
//! direct connections and bytes by path. Everything the trial created is
//! gone when it returns, whatever happened.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde::Deserialize;

use super::probe::{self, ControlReport};
use super::topo::{Host, Lab, NatKind};
use super::Topology;
use crate::datagen;
use crate::loopback::{Args, NodeFiles, STARTUP_TIMEOUT};
use crate::procs::{self, ChildId, Supervisor};
use crate::units::ByteSize;

/// How long the seeder may take to reserve a relay slot before leechers start anyway.
const RESERVE_WAIT: Duration = Duration::from_secs(20);

/// Time after the last leecher is done for the nodes' final stats writes
/// (they rewrite their stats file every 500 ms).
const SETTLE: Duration = Duration::from_millis(1500);

/// What every trial shares.
#[derive(Clone, Debug)]
pub struct TrialConfig {
    /// The file the seeder shares.
    pub source: PathBuf,
    /// Its SHA-256 (lowercase hex).
    pub source_sha256: String,
    /// Its size.
    pub size: ByteSize,
    /// NATed leechers in the swarm topology (plus one public one).
    pub swarm_nated: usize,
    /// Give up on leechers not done this long after they started.
    pub timeout: Duration,
}

/// The `nat` object of a node's `--stats-file` (absent fields read as 0/empty).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct NatStats {
    /// `public`, `private` or `unknown`.
    pub reachability: String,
    /// Relays the node holds a slot on.
    pub reservations: Vec<String>,
    /// Connections not over a relay.
    pub conns_direct: u64,
    /// Connections over a relay.
    pub conns_relayed: u64,
    /// Hole punches attempted.
    pub punches_tried: u64,
    /// Hole punches that gave a direct connection.
    pub punches_ok: u64,
    /// Ms from the first relayed connection to the first direct one.
    pub first_direct_ms: Option<u64>,
    /// Session bytes (sent + received) over relayed connections.
    pub bytes_relayed: u64,
    /// Session bytes over direct connections.
    pub bytes_direct: u64,
}

/// The parts of a stats file the lab reads.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
struct StatsView {
    have: u64,
    total: u64,
    nat: Option<NatStats>,
}

/// Reads a node's stats file; `None` when it is missing or unreadable.
fn read_stats(path: &Path) -> Option<StatsView> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// One leecher's result in one trial: a line of `nat.csv`.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// The trial's topology.
    pub topology: String,
    /// Trial number, from 1.
    pub trial: u32,
    /// The leecher's name.
    pub leecher: String,
    /// The seeder's NAT.
    pub seeder_nat: String,
    /// The leecher's NAT.
    pub leecher_nat: String,
    /// The seeder held a relay reservation.
    pub reserved: bool,
    /// The leecher held one too.
    pub leecher_reserved: bool,
    /// The leecher got a direct (hole-punched) connection.
    pub direct: bool,
    /// Ms from its first relayed connection to its first direct one.
    pub time_to_direct_ms: Option<u64>,
    /// Its copy arrived and matched the source's SHA-256.
    pub transfer_ok: bool,
    /// Ms from starting the leechers to this one printing its copy's path.
    pub transfer_ms: Option<u64>,
    /// The leecher's session bytes over relayed connections.
    pub bytes_relayed: u64,
    /// Its session bytes over direct connections.
    pub bytes_direct: u64,
    /// Hole punches it attempted.
    pub punches_tried: u64,
    /// Hole punches of its that succeeded.
    pub punches_ok: u64,
    /// The leecher's reachability verdict.
    pub reachability: String,
    /// Whether the node reported a `nat` object at all.
    pub nat_reported: bool,
    /// What went wrong, if anything (empty otherwise).
    pub error: String,
}

/// What a trial measured and what it had created (for leftover checks).
#[derive(Debug)]
pub struct TrialOutcome {
    /// One row per leecher.
    pub rows: Vec<Row>,
    /// The lab's namespace prefix; nothing by that prefix exists any more.
    pub prefix: String,
    /// Every node process started; all have been stopped.
    pub pids: Vec<u32>,
    /// What the control checks saw.
    pub control: ControlReport,
}

/// Runs trial `trial` of `topology` with its files under `dir` (created,
/// must be new). Node failures (a transfer that did not finish) are in the
/// rows; an error means the lab itself failed (setup, control checks, the
/// relay or the seeder not starting) and the figures would mean nothing.
pub async fn run(
    bin: &Path,
    dir: &Path,
    topology: Topology,
    trial: u32,
    cfg: &TrialConfig,
) -> anyhow::Result<TrialOutcome> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Declared before the supervisor so it is dropped after it: nodes
    // stop first, then their namespaces go.
    let mut lab = Lab::create(&dir.join("lab"))?;
    let prefix = lab.prefix().to_string();
    let mut sup = Supervisor::new(bin.to_path_buf());
    let result = body(&mut lab, &mut sup, dir, topology, trial, cfg).await;
    if sup.running() > 0 {
        sup.shutdown(procs::GRACE, std::future::pending()).await;
    }
    let pids = sup.started_pids().to_vec();
    drop(sup);
    let teardown = lab.teardown();
    let (rows, control) = result?;
    teardown?;
    Ok(TrialOutcome {
        rows,
        prefix,
        pids,
        control,
    })
}

/// A leecher while the trial runs.
struct Leecher {
    host: Host,
    id: ChildId,
    files: NodeFiles,
    out: PathBuf,
}

async fn body(
    lab: &mut Lab,
    sup: &mut Supervisor,
    dir: &Path,
    topology: Topology,
    trial: u32,
    cfg: &TrialConfig,
) -> anyhow::Result<(Vec<Row>, ControlReport)> {
    let (seeder_kind, leecher_roles) = topology.roles(cfg.swarm_nated);
    let relay = lab.add_host("relay", NatKind::None)?;
    let seeder = lab.add_host("seeder", seeder_kind)?;
    let mut hosts = vec![seeder.clone()];
    for (name, kind) in &leecher_roles {
        hosts.push(lab.add_host(name, *kind)?);
    }
    let control = probe::control_checks(&relay, &hosts)
        .await
        .context("control checks failed: the lab does not behave as a NAT should")?;

    // The relay and bootstrap node: public, with its address confirmed as
    // external (relay v2 only offers the hop protocol with one).
    let files = NodeFiles::create(dir, "relay")?;
    let args = Args::new(["join"])
        .opt("--listen", relay.listen_addr())
        .opt("--external", relay.listen_addr())
        .opt("--data-dir", &files.data)
        .opt("--stats-file", &files.stats)
        .flag("--relay");
    let relay_id = spawn(sup, &relay, &args, &files)?;
    let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
    let line = sup
        .next_line(relay_id, deadline, "its listen address")
        .await?;
    let relay_addr = own_addr(&relay, &line.text)?;

    // The seeder behind its NAT.
    let files = NodeFiles::create(dir, "seeder")?;
    let args = Args::new([OsString::from("share"), cfg.source.clone().into()])
        .opt("--listen", seeder.listen_addr())
        .opt("--data-dir", &files.data)
        .opt("--bootstrap", &relay_addr)
        .opt("--relay", &relay_addr)
        .opt("--stats-file", &files.stats);
    let seeder_id = spawn(sup, &seeder, &args, &files)?;
    let hashing = Duration::from_secs_f64(cfg.size.0 as f64 / 10e6);
    let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT + hashing;
    let line = sup.next_line(seeder_id, deadline, "the content ID").await?;
    let content_id: protocol::ContentId = line
        .text
        .parse()
        .with_context(|| format!("the seeder printed {:?} instead of a content ID", line.text))?;
    wait_reserved(sup, &files.stats).await?;
    let seeder_stats = files.stats.clone();

    let started = Instant::now();
    let mut leechers = Vec::new();
    for host in hosts.iter().skip(1) {
        let files = NodeFiles::create(dir, &host.name)?;
        let out = files.dir.join("out");
        std::fs::create_dir_all(&out)
            .with_context(|| format!("cannot create {}", out.display()))?;
        let args = Args::new(["get".to_string(), content_id.to_string()])
            .flag("--no-seed")
            .opt("--out", &out)
            .opt("--listen", host.listen_addr())
            .opt("--data-dir", &files.data)
            .opt("--bootstrap", &relay_addr)
            .opt("--stats-file", &files.stats);
        // A public peer is given no relay, as its user would not give one:
        // it reaches a NATed seeder through the seeder's relayed address.
        let args = match host.kind {
            NatKind::None => args,
            NatKind::Cone | NatKind::Symmetric => args.opt("--relay", &relay_addr),
        };
        let id = spawn(sup, host, &args, &files)?;
        leechers.push(Leecher {
            host: host.clone(),
            id,
            files,
            out,
        });
    }

    // Every leecher prints its copy's path and exits (`--no-seed`), or fails.
    let deadline = tokio::time::Instant::now() + cfg.timeout;
    let mut done = Vec::new();
    for l in &leechers {
        let r = sup.next_line(l.id, deadline, "the path of its copy").await;
        done.push(r.map(|line| (line.at.saturating_duration_since(started), line.text)));
    }
    tokio::time::sleep(SETTLE).await;
    let seeder_view = read_stats(&seeder_stats).unwrap_or_default();

    let mut rows = Vec::new();
    for (l, done) in leechers.iter().zip(done) {
        let view = read_stats(&l.files.stats).unwrap_or_default();
        let nat = view.nat.clone().unwrap_or_default();
        let seeder_nat = seeder_view.nat.clone().unwrap_or_default();
        let mut row = Row {
            topology: topology.to_string(),
            trial,
            leecher: l.host.name.clone(),
            seeder_nat: seeder_kind.to_string(),
            leecher_nat: l.host.kind.to_string(),
            reserved: !seeder_nat.reservations.is_empty(),
            leecher_reserved: !nat.reservations.is_empty(),
            direct: nat.punches_ok > 0 || nat.first_direct_ms.is_some(),
            time_to_direct_ms: nat.first_direct_ms,
            bytes_relayed: nat.bytes_relayed,
            bytes_direct: nat.bytes_direct,
            punches_tried: nat.punches_tried,
            punches_ok: nat.punches_ok,
            reachability: nat.reachability.clone(),
            nat_reported: view.nat.is_some(),
            ..Row::default()
        };
        match done {
            Ok((at, path)) => {
                row.transfer_ms = Some(at.as_millis() as u64);
                match verify(&path, &l.out, &cfg.source_sha256).await {
                    Ok(()) => row.transfer_ok = true,
                    Err(e) => row.error = format!("{e:#}"),
                }
            }
            Err(e) => {
                row.error = format!("{e:#} ({} of {} chunks)", view.have, view.total);
            }
        }
        rows.push(row);
    }
    Ok((rows, control))
}

/// Checks that `path` lies in `out` and hashes to `want`; removes the copy
/// when it does (copies are bulky and the hash says all).
async fn verify(path: &str, out: &Path, want: &str) -> anyhow::Result<()> {
    let path = PathBuf::from(path.trim());
    if !path.starts_with(out) {
        bail!(
            "the leecher reported its copy at {}, outside its --out dir {}",
            path.display(),
            out.display()
        );
    }
    let p = path.clone();
    let got = tokio::task::spawn_blocking(move || datagen::sha256_file(&p))
        .await
        .context("hashing task failed")??;
    if got != want {
        bail!(
            "copy {} has SHA-256 {got}, the source {want}",
            path.display()
        );
    }
    if let Err(e) = std::fs::remove_file(&path) {
        eprintln!("testnet: warning: cannot remove {}: {e}", path.display());
    }
    Ok(())
}

/// Waits until the seeder's stats list a relay reservation, up to
/// [`RESERVE_WAIT`]. A node that reports no `nat` object at all (built
/// without NAT support) is waited for only until its first stats write.
async fn wait_reserved(sup: &mut Supervisor, stats: &Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + RESERVE_WAIT;
    while Instant::now() < deadline {
        sup.check_alive()?;
        match read_stats(stats) {
            Some(StatsView { nat: None, .. }) => {
                eprintln!(
                    "testnet: the seeder reports no `nat` stats; not waiting for a reservation"
                );
                return Ok(());
            }
            Some(StatsView { nat: Some(n), .. }) if !n.reservations.is_empty() => return Ok(()),
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "testnet: the seeder holds no relay reservation after {RESERVE_WAIT:?}; starting leechers anyway"
    );
    Ok(())
}

/// Checks that a printed multiaddr is `host`'s own listen address with `/p2p/<id>`.
fn own_addr(host: &Host, printed: &str) -> anyhow::Result<String> {
    let printed = printed.trim();
    let prefix = format!("{}/p2p/", host.listen_addr());
    match printed.strip_prefix(&prefix) {
        Some(peer) if !peer.is_empty() && !peer.contains(['/', ' ']) => Ok(printed.to_string()),
        _ => bail!(
            "{} printed {printed:?}, not an address starting with {prefix}",
            host.name
        ),
    }
}

fn spawn(
    sup: &mut Supervisor,
    host: &Host,
    args: &Args,
    files: &NodeFiles,
) -> anyhow::Result<ChildId> {
    sup.spawn_in_netns(&host.name, &host.netns, args.as_slice(), &files.log)
}
