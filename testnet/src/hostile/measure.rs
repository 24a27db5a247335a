//! `testnet hostile`: what each attack costs an honest download and the
//! seeder's memory, on 127.0.0.1.
//!
//! Every round (the baseline, then each attack) gets fresh nodes: a
//! bootstrap node and a seeder at default flags sharing a generated file
//! (plus, by default, 10,000 empty files, so the manifest is ~2 MB as in a
//! real directory share and manifest requests cost what they cost there).
//! Fresh nodes keep one attack's leftovers (memory, provider records of
//! earlier getters) out of the next one's figures.
//!
//! The baseline: honest `get --no-seed` runs one after another with no
//! attackers, then the seeder's RSS once it has been quiet for the settle
//! time. Each attack: N attacker processes (`testnet hostile-peer`, one
//! identity each) against the seeder, a ramp-up, the same honest runs while
//! the seeder's RSS is sampled every 100 ms for its peak, the attackers
//! stopped, and its RSS after the settle time. Every honest copy's SHA-256
//! is checked.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use protocol::ContentId;

use super::rss::{self, PeakSampler};
use super::{victim, Attack};
use crate::datagen;
use crate::loopback::{self, Args, LoopbackAddr, NodeFiles};
use crate::procs::{self, Supervisor};
use crate::units::{self, ByteSize};

/// Honest time under attack over honest time without: at most this.
pub const MAX_RATIO: f64 = 1.5;
/// The seeder's RSS while attacked: at most this many bytes.
pub const MAX_PEAK_RSS: u64 = 128 * 1024 * 1024;
/// The seeder's RSS after the attackers left, over its baseline: at most this.
pub const MAX_AFTER_FACTOR: f64 = 1.2;

/// Parameters of one `testnet hostile` run.
#[derive(Clone, Debug)]
pub struct HostileConfig {
    /// Attacks to run, in order.
    pub attacks: Vec<Attack>,
    /// Attacker processes per attack, each its own identity.
    pub attackers: usize,
    /// Honest downloads per measurement (the median counts).
    pub runs: usize,
    /// Size of the shared file.
    pub size: ByteSize,
    /// Empty files shared beside it (0: share the file alone).
    pub empty_files: usize,
    /// `node share --chunk-size`; None leaves the node's default.
    pub chunk_size: Option<ByteSize>,
    /// Asks in flight or streams per attacker; None takes each attack's default.
    pub width: Option<usize>,
    /// How long attackers hold a stalled session.
    pub hold: Duration,
    /// Attack time before the first honest download.
    pub ramp: Duration,
    /// Quiet time before an RSS reading that should be back at baseline.
    pub settle: Duration,
    /// Give up on one honest download after this long (it counts as failed
    /// and the attack's remaining runs are skipped).
    pub get_timeout: Duration,
    /// Seed of the file's contents.
    pub seed: u64,
    /// The executable that runs `hostile-peer` (testnet itself).
    pub attacker_bin: PathBuf,
}

/// One attack's figures.
#[derive(Clone, Debug)]
pub struct Row {
    /// The attack; None for the baseline.
    pub attack: Option<Attack>,
    /// Honest download times; None for one that did not finish.
    pub times: Vec<Option<Duration>>,
    /// RSS of the seeder when the attack started.
    pub start_rss: u64,
    /// Peak RSS of the seeder during the measurement.
    pub peak_rss: u64,
    /// RSS of the seeder `settle` after the attackers stopped.
    pub after_rss: u64,
    /// Every finished copy had the source's SHA-256.
    pub copies_ok: bool,
    /// What went wrong besides the figures (attackers that did not start…).
    pub notes: Vec<String>,
}

impl Row {
    /// Median honest time, None if any run did not finish.
    pub fn median(&self) -> Option<Duration> {
        let mut t: Vec<Duration> = self.times.iter().copied().collect::<Option<_>>()?;
        if t.is_empty() {
            return None;
        }
        t.sort();
        Some(t[t.len() / 2])
    }
}

/// The whole measurement.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Honest runs without attackers.
    pub baseline: Row,
    /// The seeder's RSS after the baseline runs and the settle time.
    pub baseline_rss: u64,
    /// One row per attack.
    pub rows: Vec<Row>,
}

impl Outcome {
    /// Honest time under attack over the baseline's, when both finished.
    pub fn ratio(&self, row: &Row) -> Option<f64> {
        Some(row.median()?.as_secs_f64() / self.baseline.median()?.as_secs_f64().max(1e-3))
    }

    /// The bars `row` misses; empty when it passes.
    pub fn failures(&self, row: &Row) -> Vec<String> {
        let mut out = row.notes.clone();
        match self.ratio(row) {
            Some(r) if r <= MAX_RATIO => {}
            Some(r) => out.push(format!("honest time {r:.2}x > {MAX_RATIO}x")),
            None => out.push("honest download did not finish".into()),
        }
        if row.peak_rss > MAX_PEAK_RSS {
            out.push(format!(
                "peak RSS {} > {}",
                units::bytes(row.peak_rss),
                units::bytes(MAX_PEAK_RSS)
            ));
        }
        let limit = self.baseline_rss as f64 * MAX_AFTER_FACTOR;
        if row.after_rss as f64 > limit {
            out.push(format!(
                "RSS after {} > {MAX_AFTER_FACTOR} x baseline {}",
                units::bytes(row.after_rss),
                units::bytes(self.baseline_rss)
            ));
        }
        if !row.copies_ok {
            out.push("a copy differs from the source".into());
        }
        out
    }

    /// True when every attack passes.
    pub fn all_pass(&self) -> bool {
        self.rows.iter().all(|r| self.failures(r).is_empty())
    }

    /// The table printed at the end.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let time = |d: Option<Duration>| match d {
            Some(d) => format!("{:.2} s", d.as_secs_f64()),
            None => "timeout".into(),
        };
        let _ = writeln!(
            s,
            "no attack: honest download {} (median), seeder RSS {} at rest, {} peak{}",
            time(self.baseline.median()),
            units::bytes(self.baseline_rss),
            units::bytes(self.baseline.peak_rss),
            if self.baseline.copies_ok {
                ""
            } else {
                "; A COPY DIFFERS"
            }
        );
        let _ = writeln!(
            s,
            "{:<15} {:>10} {:>7} {:>11} {:>11} {:>11}  verdict",
            "attack", "honest", "ratio", "RSS start", "peak RSS", "RSS after"
        );
        for row in &self.rows {
            let fails = self.failures(row);
            let verdict = if fails.is_empty() {
                "PASS".to_string()
            } else {
                format!("FAIL: {}", fails.join("; "))
            };
            let _ = writeln!(
                s,
                "{:<15} {:>10} {:>7} {:>11} {:>11} {:>11}  {verdict}",
                row.attack.map_or("(none)", Attack::as_str),
                time(row.median()),
                self.ratio(row).map_or("-".into(), |r| format!("{r:.2}")),
                units::bytes(row.start_rss),
                units::bytes(row.peak_rss),
                units::bytes(row.after_rss),
            );
        }
        let _ = writeln!(
            s,
            "bars: honest time <= {MAX_RATIO}x the no-attack median, peak RSS <= {}, RSS after the attackers left <= {MAX_AFTER_FACTOR} x the RSS at rest",
            units::bytes(MAX_PEAK_RSS)
        );
        s
    }

    /// `hostile.csv`: one line per measurement, times in seconds, memory in bytes.
    pub fn csv(&self) -> String {
        let mut s = String::from(
            "attack,times_s,median_s,ratio,start_rss_bytes,peak_rss_bytes,after_rss_bytes,baseline_rss_bytes,copies_ok,pass,notes\n",
        );
        for (row, is_base) in
            std::iter::once((&self.baseline, true)).chain(self.rows.iter().map(|r| (r, false)))
        {
            let times: Vec<String> = row
                .times
                .iter()
                .map(|t| t.map_or("timeout".into(), |d| format!("{:.3}", d.as_secs_f64())))
                .collect();
            let fails = if is_base {
                Vec::new()
            } else {
                self.failures(row)
            };
            let _ = writeln!(
                s,
                "{},{},{},{},{},{},{},{},{},{},\"{}\"",
                row.attack.map_or("baseline", Attack::as_str),
                times.join(";"),
                row.median()
                    .map_or(String::new(), |d| format!("{:.3}", d.as_secs_f64())),
                if is_base {
                    "1.000".into()
                } else {
                    self.ratio(row).map_or(String::new(), |r| format!("{r:.3}"))
                },
                row.start_rss,
                row.peak_rss,
                row.after_rss,
                self.baseline_rss,
                row.copies_ok,
                fails.is_empty(),
                fails.join("; ").replace('"', "'")
            );
        }
        s
    }
}

/// Runs the measurement in `run` (an empty folder). `sup` names the node
/// binary; every round starts and stops its own nodes.
pub async fn run(sup: &mut Supervisor, run: &Path, cfg: &HostileConfig) -> anyhow::Result<Outcome> {
    if cfg.runs == 0 || cfg.attackers == 0 {
        bail!("--runs and --attackers must be at least 1");
    }
    if cfg.size.0 == 0 {
        bail!("--size must be at least 1 byte");
    }
    let source = make_source(run, cfg).await?;
    let bin = sup.bin().to_path_buf();

    eprintln!(
        "testnet: baseline: {} honest download(s), no attackers",
        cfg.runs
    );
    let mut victim = Victim::start(&bin, &run.join("baseline"), cfg, &source).await?;
    let sampler = PeakSampler::start(victim.pid);
    let mut baseline = honest_runs(&bin, &victim, cfg).await?;
    baseline.peak_rss = sampler.peak();
    drop(sampler);
    tokio::time::sleep(cfg.settle).await;
    let baseline_rss =
        rss::rss_bytes(victim.pid).context("the seeder is gone after the baseline")?;
    baseline.after_rss = baseline_rss;
    victim.stop().await;
    eprintln!(
        "testnet: baseline {} (median), seeder RSS {} at rest",
        baseline.median().map_or("timeout".into(), units::secs),
        units::bytes(baseline_rss)
    );

    let mut rows = Vec::new();
    for &attack in &cfg.attacks {
        // Fresh nodes per round: no memory kept from the last attack, and no
        // provider records of earlier honest getters (gone, but listed for
        // 30 min) that later rounds would have to wade through.
        let mut victim = Victim::start(&bin, &run.join(attack.as_str()), cfg, &source).await?;
        let mut row = attack_round(cfg, attack, &bin, &victim).await?;
        if let Err(e) = victim.seeder.check_alive() {
            eprintln!("testnet: the seeder died during {attack}: {e:#}");
            row.notes.push("the seeder died".into());
        }
        victim.stop().await;
        rows.push(row);
    }
    Ok(Outcome {
        baseline,
        baseline_rss,
        rows,
    })
}

/// The shared content: what to share, and how to check a getter's copy.
struct Source {
    /// The file or folder the seeder shares.
    share: PathBuf,
    /// Path of the big file relative to a getter's `--out`.
    file_in_out: PathBuf,
    /// Its SHA-256.
    sha256: String,
}

/// One round's bootstrap node and seeder, each under its own supervisor so
/// the seeder's PID is known for RSS readings.
struct Victim {
    dir: PathBuf,
    bootstrap: Supervisor,
    boot: LoopbackAddr,
    seeder: Supervisor,
    pid: u32,
    addr: libp2p::Multiaddr,
    id: ContentId,
    file_in_out: PathBuf,
    sha256: String,
}

impl Victim {
    /// Starts both in `dir` and waits until the seeder has announced the content.
    async fn start(
        bin: &Path,
        dir: &Path,
        cfg: &HostileConfig,
        source: &Source,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut bootstrap = Supervisor::new(bin.to_path_buf());
        let (_, boot) = loopback::start_join(&mut bootstrap, dir, "bootstrap", None).await?;

        let files = NodeFiles::create(dir, "seeder")?;
        let port = victim::free_loopback_port()?;
        let mut args = Args::new([OsString::from("share"), source.share.clone().into()])
            .opt("--listen", victim::listen_arg(port))
            .opt("--data-dir", &files.data)
            .opt("--bootstrap", boot.to_string())
            .opt("--stats-file", &files.stats);
        if let Some(cs) = cfg.chunk_size {
            args = args.opt("--chunk-size", cs.0.to_string());
        }
        let mut seeder = Supervisor::new(bin.to_path_buf());
        let child = seeder.spawn("seeder", args.as_slice(), &files.log)?;
        let pid = *seeder
            .pids()
            .first()
            .context("the seeder exited right after starting")?;
        let hashing = Duration::from_secs_f64(cfg.size.0 as f64 / 10e6);
        let deadline = tokio::time::Instant::now() + loopback::STARTUP_TIMEOUT + hashing;
        let line = seeder.next_line(child, deadline, "the content ID").await?;
        let id: ContentId = line.text.parse().with_context(|| {
            format!("the seeder printed {:?} instead of a content ID", line.text)
        })?;
        let peer = victim::peer_id_from_stats(&files.stats, Duration::from_secs(20)).await?;
        let addr = victim::addr(port, peer);
        eprintln!("testnet: seeder {addr} (pid {pid}) shares {id}");
        // Let the provider record land before the first honest search.
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok(Self {
            dir: dir.to_path_buf(),
            bootstrap,
            boot,
            seeder,
            pid,
            addr,
            id,
            file_in_out: source.file_in_out.clone(),
            sha256: source.sha256.clone(),
        })
    }

    async fn stop(&mut self) {
        self.seeder
            .shutdown(procs::GRACE, std::future::pending())
            .await;
        self.bootstrap
            .shutdown(procs::GRACE, std::future::pending())
            .await;
    }
}

/// Generates the share: `<run>/source/hostile-share/{data.bin, empty/…}`, or
/// the file alone. Returns what to share, where the big file lands under a
/// getter's `--out`, and its SHA-256.
async fn make_source(run: &Path, cfg: &HostileConfig) -> anyhow::Result<Source> {
    if cfg.empty_files == 0 {
        let name = format!("hostile-{}.bin", cfg.size);
        let (_, file, sha256) = datagen::generate_source(run, &name, cfg.size.0, cfg.seed).await?;
        return Ok(Source {
            share: file,
            file_in_out: PathBuf::from(name),
            sha256,
        });
    }
    let top = run.join("source").join("hostile-share");
    let empty = top.join("empty");
    std::fs::create_dir_all(&empty)
        .with_context(|| format!("cannot create {}", empty.display()))?;
    eprintln!(
        "testnet: generating data.bin ({}) and {} empty files",
        cfg.size, cfg.empty_files
    );
    let data = top.join("data.bin");
    let (size, seed, n) = (cfg.size.0, cfg.seed, cfg.empty_files);
    let sha = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
        for k in 0..n {
            let p = empty.join(format!("empty-{k:06}"));
            std::fs::write(&p, b"").with_context(|| format!("cannot create {}", p.display()))?;
        }
        datagen::generate(&data, size, seed)
    })
    .await??;
    Ok(Source {
        share: top,
        file_in_out: PathBuf::from("hostile-share").join("data.bin"),
        sha256: sha,
    })
}

/// One attack: start the attackers, ramp up, honest runs with RSS sampling,
/// stop the attackers, settle, RSS again.
async fn attack_round(
    cfg: &HostileConfig,
    attack: Attack,
    node_bin: &Path,
    victim: &Victim,
) -> anyhow::Result<Row> {
    eprintln!("testnet: {attack}: starting {} attacker(s)", cfg.attackers);
    let start_rss = rss::rss_bytes(victim.pid).unwrap_or(0);
    let sampler = PeakSampler::start(victim.pid);
    let mut asup = Supervisor::new(cfg.attacker_bin.clone());
    let mut notes = Vec::new();
    let mut ids = Vec::new();
    for k in 1..=cfg.attackers {
        let mut args: Vec<OsString> = [
            "hostile-peer",
            "--attack",
            attack.as_str(),
            "--target",
            &victim.addr.to_string(),
            "--content",
            &victim.id.to_string(),
            "--hold",
            &cfg.hold.as_secs().to_string(),
        ]
        .iter()
        .map(OsString::from)
        .collect();
        if let Some(n) = cfg.width {
            args.push("--width".into());
            args.push(n.to_string().into());
        }
        let name = format!("attacker-{k}");
        let log = victim.dir.join(format!("{name}.log"));
        ids.push(asup.spawn(&name, &args, &log)?);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for id in ids {
        if let Err(e) = asup.next_line(id, deadline, "that it is attacking").await {
            eprintln!("testnet: {attack}: an attacker did not start: {e:#}");
            notes.push("an attacker did not start".to_string());
        }
    }
    tokio::time::sleep(cfg.ramp).await;
    let mut row = honest_runs(node_bin, victim, cfg).await?;
    row.attack = Some(attack);
    row.start_rss = start_rss;
    row.notes.extend(notes);
    eprintln!("testnet: {attack}: stopping the attackers");
    asup.shutdown(Duration::from_secs(2), std::future::pending())
        .await;
    report_attackers(&victim.dir, cfg.attackers);
    row.peak_rss = sampler.peak();
    drop(sampler);
    tokio::time::sleep(cfg.settle).await;
    row.after_rss = rss::rss_bytes(victim.pid).unwrap_or(0);
    eprintln!(
        "testnet: {attack}: honest {} (median), seeder peak {}, {} after {}",
        row.median().map_or("timeout".into(), units::secs),
        units::bytes(row.peak_rss),
        units::bytes(row.after_rss),
        units::secs(cfg.settle)
    );
    Ok(row)
}

/// Prints each attacker's last stats line, so a run shows the attack really ran.
fn report_attackers(dir: &Path, n: usize) {
    for k in 1..=n {
        let log = dir.join(format!("attacker-{k}.log"));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(last) = text.lines().rev().find(|l| l.contains("streams,")) {
            eprintln!("testnet:   attacker-{k}: {}", last.trim());
        }
    }
}

/// `cfg.runs` honest downloads one after another; stops after the first that
/// does not finish in time.
async fn honest_runs(node_bin: &Path, victim: &Victim, cfg: &HostileConfig) -> anyhow::Result<Row> {
    let mut row = Row {
        attack: None,
        times: Vec::new(),
        start_rss: 0,
        peak_rss: 0,
        after_rss: 0,
        copies_ok: true,
        notes: Vec::new(),
    };
    for k in 1..=cfg.runs {
        let name = format!("get-{k}");
        let (time, ok) = honest_get(node_bin, victim, &name, cfg.get_timeout).await?;
        row.copies_ok &= ok;
        row.times.push(time);
        match time {
            Some(t) => eprintln!("testnet:   {name}: {}", units::secs(t)),
            None => {
                eprintln!(
                    "testnet:   {name}: not done after {}; skipping the remaining runs",
                    units::secs(cfg.get_timeout)
                );
                break;
            }
        }
    }
    Ok(row)
}

/// One `get --no-seed`: its time from start to printed path (None on
/// timeout) and whether its copy matches the source (true when none came).
async fn honest_get(
    node_bin: &Path,
    victim: &Victim,
    name: &str,
    timeout: Duration,
) -> anyhow::Result<(Option<Duration>, bool)> {
    let files = NodeFiles::create(&victim.dir, name)?;
    let out = files.dir.join("out");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let args = Args::new(["get".to_string(), victim.id.to_string()])
        .opt("--out", &out)
        .loopback(&files, Some(&victim.boot))
        .opt("--stats-file", &files.stats)
        .flag("--no-seed");
    let mut gsup = Supervisor::new(node_bin.to_path_buf());
    let started = Instant::now();
    let id = gsup.spawn(name, args.as_slice(), &files.log)?;
    let far = tokio::time::Instant::now() + timeout + Duration::from_secs(60);
    let line = tokio::time::timeout(timeout, gsup.next_line(id, far, "the path of its copy")).await;
    let result = match line {
        Err(_) => (None, true),
        Ok(Err(e)) => {
            gsup.shutdown(Duration::from_secs(2), std::future::pending())
                .await;
            return Err(e.context(format!("honest download {name} failed")));
        }
        Ok(Ok(line)) => {
            let took = line.at.duration_since(started);
            let copy = out.join(&victim.file_in_out);
            let sha = {
                let copy = copy.clone();
                tokio::task::spawn_blocking(move || datagen::sha256_file(&copy)).await?
            };
            let ok = match sha {
                Ok(sha) => sha == victim.sha256,
                Err(e) => {
                    eprintln!("testnet:   {name}: cannot hash {}: {e:#}", copy.display());
                    false
                }
            };
            if !ok {
                eprintln!(
                    "testnet:   {name}: {} DIFFERS from the source",
                    copy.display()
                );
            }
            (Some(took), ok)
        }
    };
    gsup.shutdown(Duration::from_secs(5), std::future::pending())
        .await;
    if result.1 {
        // 64 MiB per run adds up; keep only copies that differ, for inspection.
        let _ = std::fs::remove_dir_all(&out);
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(attack: Option<Attack>, secs: &[f64], peak: u64, after: u64) -> Row {
        Row {
            attack,
            times: secs
                .iter()
                .map(|s| Some(Duration::from_secs_f64(*s)))
                .collect(),
            start_rss: after,
            peak_rss: peak,
            after_rss: after,
            copies_ok: true,
            notes: Vec::new(),
        }
    }

    #[test]
    fn bars_are_applied_to_the_median_and_the_baseline_rss() {
        const MIB: u64 = 1024 * 1024;
        let out = Outcome {
            baseline: row(None, &[1.0, 1.2, 0.9], 40 * MIB, 30 * MIB),
            baseline_rss: 30 * MIB,
            rows: vec![
                row(Some(Attack::Garbage), &[1.1, 9.0, 1.3], 60 * MIB, 33 * MIB),
                row(
                    Some(Attack::SlowReader),
                    &[2.0, 2.0, 2.0],
                    60 * MIB,
                    33 * MIB,
                ),
                row(
                    Some(Attack::ManifestFlood),
                    &[1.0, 1.0, 1.0],
                    3000 * MIB,
                    40 * MIB,
                ),
            ],
        };
        assert_eq!(out.baseline.median(), Some(Duration::from_secs_f64(1.0)));
        assert!(
            out.failures(&out.rows[0]).is_empty(),
            "{:?}",
            out.failures(&out.rows[0])
        );
        assert_eq!(out.failures(&out.rows[1]).len(), 1);
        assert_eq!(out.failures(&out.rows[2]).len(), 2);
        assert!(!out.all_pass());
        let mut timed_out = row(Some(Attack::ChunkFlood), &[1.0], 0, 0);
        timed_out.times.push(None);
        assert_eq!(timed_out.median(), None);
        assert!(!out.failures(&timed_out).is_empty());
        assert_eq!(out.csv().lines().count(), 1 + 1 + 3);
    }
}
