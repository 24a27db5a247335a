//! What `testnet incentives` measured: a row per leecher and run, the mean
//! download time per class in each run, and the median of those means over
//! the rounds per class and policy; as a CSV and as a table.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;

use super::{class_label, IncentivesConfig};
use crate::units::Rate;

/// One leecher in one run.
#[derive(Clone, Debug)]
pub struct LeecherRow {
    /// Round, from 1.
    pub round: usize,
    /// `--choke` of every node in the run.
    pub policy: String,
    /// `leecher-<k>`.
    pub name: String,
    /// Class label (`8 Mbit/s`, `free rider`).
    pub class: String,
    /// Upload cap (`None`: free rider, `--no-upload`).
    pub upload: Option<Rate>,
    /// From the common start to its verified copy.
    pub download_s: f64,
    /// Chunk bytes it uploaded.
    pub uploaded: u64,
    /// Chunk bytes it downloaded.
    pub downloaded: u64,
    /// Its copy's SHA-256 matched the source's.
    pub verified: bool,
}

/// One class under one policy, over the rounds.
#[derive(Clone, Debug)]
pub struct ClassMean {
    /// `--choke` value.
    pub policy: String,
    /// Class label.
    pub class: String,
    /// Leechers in the class per run.
    pub peers: usize,
    /// The class's mean download time in each round, in round order.
    pub per_round: Vec<f64>,
}

impl ClassMean {
    /// The median of the per-round means (the mean of the middle two for an even count).
    pub fn median(&self) -> f64 {
        let mut v = self.per_round.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }
}

/// Class means for every policy (in `cfg`'s order) and class (slowest upload first, free riders last).
pub fn means(cfg: &IncentivesConfig, rows: &[LeecherRow]) -> Vec<ClassMean> {
    let mut classes: Vec<(String, usize)> = Vec::new();
    for (label, _) in cfg.leechers() {
        match classes.iter_mut().find(|(c, _)| *c == label) {
            Some(c) => c.1 += 1,
            None => classes.push((label, 1)),
        }
    }
    let mut out = Vec::new();
    for policy in &cfg.policies {
        for (class, peers) in &classes {
            let mut per_round = Vec::new();
            for round in 1..=cfg.runs {
                let times: Vec<f64> = rows
                    .iter()
                    .filter(|r| r.round == round && &r.policy == policy && &r.class == class)
                    .map(|r| r.download_s)
                    .collect();
                if !times.is_empty() {
                    per_round.push(times.iter().sum::<f64>() / times.len() as f64);
                }
            }
            out.push(ClassMean {
                policy: policy.clone(),
                class: class.clone(),
                peers: *peers,
                per_round,
            });
        }
    }
    out
}

/// A table: one line per class, a column per policy (median of the rounds' means, then each round).
pub fn render(cfg: &IncentivesConfig, means: &[ClassMean]) -> String {
    let mut out = String::new();
    let _ = write!(out, "{:<12} {:>5}", "class", "peers");
    for p in &cfg.policies {
        let _ = write!(out, "  {:>30}", format!("{p}: median (rounds) s"));
    }
    out.push('\n');
    let classes: Vec<&ClassMean> = means
        .iter()
        .filter(|m| Some(&m.policy) == cfg.policies.first())
        .collect();
    for c in classes {
        let _ = write!(out, "{:<12} {:>5}", c.class, c.peers);
        for p in &cfg.policies {
            if let Some(m) = means.iter().find(|m| &m.policy == p && m.class == c.class) {
                let rounds: Vec<String> = m.per_round.iter().map(|t| format!("{t:.1}")).collect();
                let _ = write!(
                    out,
                    "  {:>30}",
                    format!("{:.2} ({})", m.median(), rounds.join(", "))
                );
            }
        }
        out.push('\n');
    }
    out
}

/// One line per leecher and run.
pub fn csv_text(cfg: &IncentivesConfig, rows: &[LeecherRow]) -> String {
    let mut out = String::from(
        "round,policy,leecher,class,upload_bps,free_rider,download_s,uploaded_bytes,downloaded_bytes,verified,size_bytes,server_upload_bps,leave_when_done,free_rider_upload_bps\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{:.3},{},{},{},{},{},{},{}",
            r.round,
            r.policy,
            r.name,
            r.class,
            r.upload.map_or(String::new(), |u| u.0.to_string()),
            r.upload.is_none(),
            r.download_s,
            r.uploaded,
            r.downloaded,
            r.verified,
            cfg.size.0,
            cfg.server_upload.0,
            cfg.leave_when_done,
            cfg.free_rider_upload.0,
        );
    }
    out
}

/// Writes [`csv_text`] to `path`.
pub fn write_csv(path: &Path, cfg: &IncentivesConfig, rows: &[LeecherRow]) -> anyhow::Result<()> {
    std::fs::write(path, csv_text(cfg, rows))
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The class labels in chart order.
pub fn class_order(cfg: &IncentivesConfig) -> Vec<String> {
    let mut v: Vec<String> = cfg
        .classes
        .iter()
        .map(|c| class_label(Some(c.upload)))
        .collect();
    v.dedup();
    if cfg.free_riders > 0 {
        v.push(class_label(None));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::super::Class;
    use super::*;
    use crate::netns::Shaping;
    use crate::units::ByteSize;
    use std::time::Duration;

    #[test]
    fn means_are_per_class_and_policy_with_the_median_over_rounds() {
        let cfg = IncentivesConfig {
            classes: vec![
                Class {
                    count: 1,
                    upload: Rate(2_000_000),
                },
                Class {
                    count: 2,
                    upload: Rate(8_000_000),
                },
            ],
            free_riders: 1,
            free_rider_upload: Rate(8_000_000),
            server_upload: Rate(16_000_000),
            size: ByteSize(1 << 20),
            policies: vec!["tit-for-tat".into(), "unchoke-all".into()],
            runs: 3,
            leave_when_done: false,
            shaping: Shaping::default(),
            seed: 1,
            timeout: Duration::from_secs(60),
        };
        let row = |round, policy: &str, class: &str, t| LeecherRow {
            round,
            policy: policy.into(),
            name: "leecher-1".into(),
            class: class.into(),
            upload: None,
            download_s: t,
            uploaded: 0,
            downloaded: 0,
            verified: true,
        };
        let rows = vec![
            row(1, "tit-for-tat", "8 Mbit/s", 10.0),
            row(1, "tit-for-tat", "8 Mbit/s", 12.0),
            row(2, "tit-for-tat", "8 Mbit/s", 30.0),
            row(3, "tit-for-tat", "8 Mbit/s", 5.0),
            row(1, "unchoke-all", "free rider", 9.0),
        ];
        let m = means(&cfg, &rows);
        assert_eq!(m.len(), 6, "3 classes x 2 policies");
        let tft8 = m
            .iter()
            .find(|m| m.policy == "tit-for-tat" && m.class == "8 Mbit/s")
            .unwrap();
        assert_eq!(tft8.per_round, vec![11.0, 30.0, 5.0]);
        assert_eq!(tft8.median(), 11.0);
        assert_eq!(tft8.peers, 2);
        assert_eq!(
            class_order(&cfg),
            vec!["2 Mbit/s", "8 Mbit/s", "free rider"]
        );
        let text = render(&cfg, &m);
        assert!(text.contains("11.00 (11.0, 30.0, 5.0)"), "{text}");
        let csv = csv_text(&cfg, &rows);
        assert_eq!(csv.lines().count(), 6);
        assert!(csv
            .lines()
            .nth(5)
            .unwrap()
            .starts_with("1,unchoke-all,leecher-1,free rider,,true,9.000,"));
    }
}
