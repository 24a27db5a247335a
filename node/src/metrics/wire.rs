//! Byte totals read at scrape time from the session wire's counters: the
//! same atomics `Client::stats` and the stats file report, so a scrape and
//! the stats file never disagree, and the wire pays nothing extra.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Unit;

use crate::wire::{Counters, WireBytes};

/// The kinds `WireBytes::snapshot` returns, in its order.
const KINDS: [&str; 4] = ["payload", "proofs", "control", "framing"];

/// Collects `uploaded_bytes_total`, `downloaded_bytes_total` and the session
/// bytes by kind.
#[derive(Debug)]
pub(super) struct Totals(pub(super) Arc<Counters>);

impl Collector for Totals {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let c = &self.0;
        for (name, help, value) in [
            (
                "uploaded",
                "Chunk payload bytes sent to peers, all contents.",
                &c.uploaded,
            ),
            (
                "downloaded",
                "Chunk payload bytes received from peers, all contents, verified or not.",
                &c.downloaded,
            ),
        ] {
            let counter = ConstCounter::new(value.load(Ordering::Relaxed));
            let metric =
                encoder.encode_descriptor(name, help, Some(&Unit::Bytes), counter.metric_type())?;
            counter.encode(metric)?;
        }
        encode_kinds(
            &mut encoder,
            "wire_sent",
            "Session stream bytes sent, by kind.",
            &c.sent,
        )?;
        encode_kinds(
            &mut encoder,
            "wire_received",
            "Session stream bytes received, by kind.",
            &c.received,
        )
    }
}

fn encode_kinds(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    bytes: &WireBytes,
) -> Result<(), std::fmt::Error> {
    let mut metric =
        encoder.encode_descriptor(name, help, Some(&Unit::Bytes), MetricType::Counter)?;
    for (kind, value) in KINDS.into_iter().zip(bytes.snapshot()) {
        let labels = [("kind", kind)];
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}
