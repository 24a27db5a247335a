//! The metrics text: names, types and values a scraper reads, and
//! per-content label sets that go away with their content.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::ContentId;

use super::tracker::Lookups;
use super::{Metrics, Tracker};
use crate::wire::Counters;

/// `name{labels} value` lines and `# TYPE name type` lines of an
/// OpenMetrics text, checked strictly: every sample belongs to a declared
/// family, every value is a number, and the text ends with `# EOF`.
fn parse(text: &str) -> (HashMap<String, String>, HashMap<String, f64>) {
    let mut types = HashMap::new();
    let mut samples = HashMap::new();
    let mut eof = false;
    for line in text.lines() {
        assert!(!eof, "text after # EOF: {line:?}");
        if line == "# EOF" {
            eof = true;
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("TYPE line has a type");
            assert!(
                ["counter", "gauge", "histogram", "info", "unknown"].contains(&ty),
                "unknown type in {line:?}"
            );
            types.insert(name.to_string(), ty.to_string());
            continue;
        }
        if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let name = series.split('{').next().unwrap_or(series);
        let family = types
            .keys()
            .filter(|f| name.starts_with(f.as_str()))
            .max_by_key(|f| f.len())
            .unwrap_or_else(|| panic!("sample of an undeclared family: {line:?}"));
        let suffix = &name[family.len()..];
        assert!(
            ["", "_total", "_bucket", "_sum", "_count", "_created", "_info"].contains(&suffix),
            "sample {name} does not belong to family {family}"
        );
        samples.insert(series.to_string(), value);
    }
    assert!(eof, "text does not end with # EOF");
    (types, samples)
}

fn id(n: u8) -> ContentId {
    ContentId::from_bytes([n; 32])
}

#[test]
fn text_parses_with_kadswarm_and_libp2p_families_and_current_values() {
    let counters = Arc::new(Counters::default());
    let metrics = Arc::new(Metrics::new(Default::default(), counters.clone()));
    let mut t = Tracker::new(metrics.clone());
    counters.uploaded.fetch_add(1000, Ordering::Relaxed);
    counters.downloaded.fetch_add(2500, Ordering::Relaxed);
    counters.sent.control.fetch_add(77, Ordering::Relaxed);
    t.uploaded(id(1), 600);
    t.uploaded(id(1), 400);
    t.downloaded(id(2), 2500);
    t.chunk_verified();
    t.chunk_rejected();
    t.banned();
    t.set_connected(3);

    let (types, samples) = parse(&metrics.encode());
    for (family, ty) in [
        ("kadswarm_uploaded_bytes", "counter"),
        ("kadswarm_downloaded_bytes", "counter"),
        ("kadswarm_content_uploaded_bytes", "counter"),
        ("kadswarm_content_downloaded_bytes", "counter"),
        ("kadswarm_chunks_verified", "counter"),
        ("kadswarm_chunks_rejected", "counter"),
        ("kadswarm_chunks_duplicate", "counter"),
        ("kadswarm_peers_connected", "gauge"),
        ("kadswarm_peers_unchoked", "gauge"),
        ("kadswarm_contents", "gauge"),
        ("kadswarm_bans", "counter"),
        ("kadswarm_dht_provider_lookup_first_seconds", "histogram"),
        ("kadswarm_dht_provider_lookup_seconds", "histogram"),
        ("kadswarm_wire_sent_bytes", "counter"),
        ("kadswarm_wire_received_bytes", "counter"),
        ("libp2p_swarm_dial_attempt", "counter"),
        ("libp2p_kad_query_result_get_providers_ok", "histogram"),
    ] {
        assert_eq!(types.get(family).map(String::as_str), Some(ty), "{family}");
    }
    let v = |s: &str| samples.get(s).copied();
    assert_eq!(v("kadswarm_uploaded_bytes_total"), Some(1000.0));
    assert_eq!(v("kadswarm_downloaded_bytes_total"), Some(2500.0));
    let one = format!(
        "kadswarm_content_uploaded_bytes_total{{content=\"{}\"}}",
        id(1)
    );
    let two = format!(
        "kadswarm_content_downloaded_bytes_total{{content=\"{}\"}}",
        id(2)
    );
    assert_eq!(v(&one), Some(1000.0));
    assert_eq!(v(&two), Some(2500.0));
    assert_eq!(v("kadswarm_chunks_verified_total"), Some(1.0));
    assert_eq!(v("kadswarm_chunks_rejected_total"), Some(1.0));
    assert_eq!(v("kadswarm_bans_total"), Some(1.0));
    assert_eq!(v("kadswarm_peers_connected"), Some(3.0));
    assert_eq!(
        v("kadswarm_wire_sent_bytes_total{kind=\"control\"}"),
        Some(77.0)
    );
    assert_eq!(v("kadswarm_dht_provider_lookup_seconds_count"), Some(0.0));
}

#[test]
fn a_lookup_times_its_first_result_once_and_its_end() {
    let mut l = Lookups::default();
    let t0 = Instant::now();
    l.started(7u32, t0);
    assert_eq!(l.found(&7, t0 + Duration::from_millis(250)), Some(0.25));
    assert_eq!(
        l.found(&7, t0 + Duration::from_secs(1)),
        None,
        "only the first result"
    );
    assert_eq!(l.finished(&7, t0 + Duration::from_secs(2)), Some(2.0));
    assert_eq!(l.finished(&7, t0 + Duration::from_secs(3)), None);
    assert_eq!(l.found(&8, t0), None, "a lookup never started");
    assert_eq!(l.len(), 0, "ended lookups are forgotten");
}

#[test]
fn a_dropped_content_loses_its_label_sets() {
    let metrics = Arc::new(Metrics::new(Default::default(), Default::default()));
    let mut t = Tracker::new(metrics.clone());
    t.uploaded(id(1), 10);
    t.downloaded(id(2), 20);
    let mut held: HashMap<ContentId, ()> = [(id(1), ()), (id(2), ())].into();
    t.prune_if_changed(&held);
    assert!(metrics.encode().contains(&id(1).to_string()));

    held.remove(&id(1));
    t.prune_if_changed(&held);
    let text = metrics.encode();
    assert!(!text.contains(&id(1).to_string()), "{text}");
    assert!(text.contains(&id(2).to_string()));
    let (_, samples) = parse(&text);
    assert_eq!(samples.get("kadswarm_contents"), Some(&1.0));

    held.clear();
    t.prune_if_changed(&held);
    let text = metrics.encode();
    assert!(!text.contains(&id(2).to_string()), "{text}");
    assert_eq!(parse(&text).1.get("kadswarm_contents"), Some(&0.0));
}
