//! `node get` run embedded: find providers, fetch, verify, then seed or exit.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use node::GetEvent;
use protocol::ContentId;

use super::net::{check_writable, start, DhtRole, NetArgs};
use super::output::Output;
use super::serve::{run_until_signal, shutdown_signal};
use super::stats_file::write_stats;

/// How often progress reaches the output (each asks the engine for its byte count).
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// Fetches `id` into `out` with a node of its own; seeds afterwards unless
/// `no_seed`. `json`: events as JSON lines on stdout (see cli::output).
pub async fn get(
    id: String,
    out: PathBuf,
    no_seed: bool,
    find_timeout: u64,
    net: NetArgs,
    json: bool,
) -> anyhow::Result<()> {
    let mut output = Output::new(json);
    let r = fetch(id, out, no_seed, find_timeout, net, &mut output).await;
    if let Err(e) = &r {
        output.failed(&format!("{e:#}"));
    }
    r
}

async fn fetch(
    id: String,
    out: PathBuf,
    no_seed: bool,
    find_timeout: u64,
    net: NetArgs,
    output: &mut Output,
) -> anyhow::Result<()> {
    let launched = Instant::now();
    let id: ContentId = id
        .parse()
        .with_context(|| format!("invalid content ID {id:?}"))?;
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create output directory {}", out.display()))?;
    check_writable(&out)?;
    // A download is a short job on a machine that may not stay: it uses the
    // DHT but leaves serving it to `join` and `share` nodes.
    let client = start(
        &net,
        Some(Duration::from_secs(find_timeout)),
        DhtRole::Client,
    )
    .await?;
    output.searching(&id.to_string(), Some(find_timeout));
    let node::Download {
        mut events,
        mut done,
    } = client.get(id, out).await?;
    let mut progress = (0u32, 0u32);
    let mut last_shown: Option<Instant> = None;
    let started = Instant::now();
    let mut found_providers = false;
    // One signal future for the whole loop, so a signal arriving mid-event is not lost.
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut events_open = true;
    loop {
        let ev = tokio::select! {
            // Progress may be dropped when we fall behind; the outcome never is.
            biased;
            outcome = &mut done => {
                let path = match outcome {
                    Ok(Ok(path)) => path,
                    Ok(Err(e)) => bail!("{e}"),
                    Err(_) => bail!("the node stopped unexpectedly"),
                };
                let stats = client.stats().await.unwrap_or_default();
                progress = (progress.1.max(progress.0), progress.1.max(progress.0));
                output.complete(&path, started.elapsed().as_secs_f64(), Some(stats.downloaded));
                break;
            }
            ev = events.recv(), if events_open => ev,
            _ = &mut signal => {
                output.interrupted();
                client.shutdown().await?;
                return Ok(());
            }
        };
        match ev {
            Some(GetEvent::ProvidersFound(n)) => {
                if !found_providers && n > 0 {
                    found_providers = true;
                    output.providers(n, launched.elapsed().as_millis() as u64);
                }
            }
            Some(GetEvent::Manifest(m)) => {
                // A fast download may end before any progress event: the total is known now.
                progress.1 = m.chunk_count();
                output.manifest(&m.name, m.total_length(), m.chunk_count())
            }
            Some(GetEvent::Progress {
                have,
                total,
                peers,
                availability,
            }) => {
                progress = (have, total);
                write_stats(&client, &net, Some(progress)).await;
                if last_shown.is_none_or(|t| t.elapsed() >= PROGRESS_EVERY) {
                    last_shown = Some(Instant::now());
                    let stats = client.stats().await.unwrap_or_default();
                    output.progress(
                        have,
                        total,
                        peers,
                        Some(stats.downloaded),
                        Some(&availability),
                    );
                }
            }
            // The engine dropped the progress channel; the outcome still comes.
            None => events_open = false,
        }
    }
    if no_seed {
        write_stats(&client, &net, Some(progress)).await;
        client.shutdown().await?;
        return Ok(());
    }
    output.seeding();
    run_until_signal(&client, &net, Some(progress)).await
}
