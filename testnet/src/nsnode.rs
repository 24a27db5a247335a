//! Nodes of the namespace experiments that start and stop peers one by one
//! (`churn`, `incentives`): each node process has a [`Supervisor`] of its own,
//! so one can leave (SIGTERM, then SIGKILL after a grace period) while the
//! others run, and the bootstrap node and seeder are started the way
//! [`crate::nsrun`] starts them.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use protocol::ContentId;

use crate::loopback::{Args, NodeFiles, STARTUP_TIMEOUT};
use crate::netns::{Caps, Slot, Testbed};
use crate::procs::{self, ChildId, Line, Supervisor};
use crate::stats::StatsFile;
use crate::units::{ByteSize, Rate};

/// One running node process, stoppable on its own.
pub struct NodeProc {
    sup: Supervisor,
    id: ChildId,
}

impl NodeProc {
    /// Starts `node args…` as `slot.name` inside the slot's namespace, stderr appended to `log`.
    pub fn spawn(bin: &Path, slot: &Slot, args: &Args, log: &Path) -> anyhow::Result<Self> {
        let mut sup = Supervisor::new(bin.to_path_buf());
        let id = sup.spawn_in_netns(&slot.name, &slot.netns, args.as_slice(), log)?;
        Ok(Self { sup, id })
    }

    /// Its next stdout line until `deadline`; `what` names it for the error.
    pub async fn next_line(
        &mut self,
        deadline: tokio::time::Instant,
        what: &str,
    ) -> anyhow::Result<Line> {
        self.sup.next_line(self.id, deadline, what).await
    }

    /// Its next stdout line if one is waiting.
    pub fn try_line(&mut self) -> Option<Line> {
        self.sup.try_line(self.id)
    }

    /// An error (with the log's tail) if the process has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.sup.check_alive()
    }

    /// CPU seconds it has used so far (0 once reaped).
    pub fn cpu_seconds(&self) -> f64 {
        self.sup.cpu_seconds()
    }

    /// Stops it: SIGTERM (the node saves its resume state and exits), SIGKILL after [`procs::GRACE`].
    pub async fn stop(mut self) {
        self.sup
            .shutdown(procs::GRACE, std::future::pending())
            .await;
    }
}

/// Flags every node of an experiment gets beyond the testbed's own, e.g. `--choke unchoke-all`.
pub type NodeFlags = Vec<(String, String)>;

/// Adds `flags` to a node's arguments.
pub fn with_flags(args: Args, flags: &NodeFlags) -> Args {
    flags
        .iter()
        .fold(args, |args, (flag, value)| args.opt(flag, value))
}

/// Starts the uncapped bootstrap node; returns it and its address.
pub async fn start_bootstrap(
    bin: &Path,
    bed: &mut Testbed,
    run: &Path,
    flags: &NodeFlags,
) -> anyhow::Result<(NodeProc, String)> {
    let slot = bed.add_node("bootstrap", Caps::default())?;
    let files = NodeFiles::create(run, "bootstrap")?;
    let args = Args::new(["join"])
        .opt("--listen", slot.listen_addr())
        .opt("--data-dir", &files.data);
    let mut p = NodeProc::spawn(bin, &slot, &with_flags(args, flags), &files.log)?;
    let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT;
    let line = p.next_line(deadline, "its listen address").await?;
    let addr = slot.check_addr(&line.text)?;
    Ok((p, addr))
}

/// The running seeder.
pub struct Seeder {
    /// Its process.
    pub proc: NodeProc,
    /// Its `--stats-file`.
    pub stats: StatsFile,
    /// What it shares.
    pub content_id: ContentId,
}

/// What the seeder shares, and how fast.
#[derive(Clone, Copy, Debug)]
pub struct Share<'a> {
    /// The file.
    pub source: &'a Path,
    /// Its size (for the hashing time allowed).
    pub size: ByteSize,
    /// The seeder's upload cap.
    pub upload: Rate,
}

/// Starts `node share` as `share` says and waits for its content ID and its
/// first connected peer.
pub async fn start_seeder(
    bin: &Path,
    bed: &mut Testbed,
    run: &Path,
    share: Share<'_>,
    boot: &str,
    flags: &NodeFlags,
) -> anyhow::Result<Seeder> {
    let Share {
        source,
        size,
        upload,
    } = share;
    let slot = bed.add_node(
        "seeder",
        Caps {
            upload: Some(upload),
            download: None,
        },
    )?;
    let files = NodeFiles::create(run, "seeder")?;
    let args = Args::new([OsString::from("share"), source.into()])
        .opt("--listen", slot.listen_addr())
        .opt("--data-dir", &files.data)
        .opt("--bootstrap", boot)
        .opt("--stats-file", &files.stats);
    let mut proc = NodeProc::spawn(bin, &slot, &with_flags(args, flags), &files.log)?;
    let hashing = Duration::from_secs_f64(size.0 as f64 / 10e6);
    let deadline = tokio::time::Instant::now() + STARTUP_TIMEOUT + hashing;
    let line = proc.next_line(deadline, "the content ID").await?;
    let content_id: ContentId = line
        .text
        .parse()
        .with_context(|| format!("the seeder printed {:?} instead of a content ID", line.text))?;
    let mut stats = StatsFile::new(files.stats.clone());
    // Leechers started before the seeder reached the DHT would find no provider.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        proc.check_alive()?;
        let _ = stats.refresh();
        if stats.stats().is_some_and(|s| s.peers > 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(Seeder {
        proc,
        stats,
        content_id,
    })
}

/// The `get` command line of a leecher in `slot` writing into `out`.
pub fn get_args(
    slot: &Slot,
    files: &NodeFiles,
    out: &Path,
    id: &ContentId,
    boot: &str,
    flags: &NodeFlags,
) -> Args {
    let args = Args::new(["get".to_string(), id.to_string()])
        .opt("--out", out)
        .opt("--listen", slot.listen_addr())
        .opt("--data-dir", &files.data)
        .opt("--bootstrap", boot)
        .opt("--stats-file", &files.stats);
    with_flags(args, flags)
}

/// Creates `<dir>/out` for a leecher's copy.
pub fn out_dir(files: &NodeFiles) -> anyhow::Result<PathBuf> {
    let out = files.dir.join("out");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    Ok(out)
}
