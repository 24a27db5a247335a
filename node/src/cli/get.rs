//! `node get` run embedded: find providers, fetch, verify, then seed or exit.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use node::GetEvent;
use protocol::ContentId;

use super::human::human;
use super::net::{check_writable, start, NetArgs};
use super::serve::{run_until_signal, shutdown_signal};
use super::stats_file::write_stats;

/// Fetches `id` into `out` with a node of its own; seeds afterwards unless `no_seed`.
pub async fn get(
    id: String,
    out: PathBuf,
    no_seed: bool,
    find_timeout: u64,
    net: NetArgs,
) -> anyhow::Result<()> {
    let launched = Instant::now();
    let id: ContentId = id
        .parse()
        .with_context(|| format!("invalid content ID {id:?}"))?;
    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create output directory {}", out.display()))?;
    check_writable(&out)?;
    let client = start(&net, Some(Duration::from_secs(find_timeout))).await?;
    eprintln!("searching the DHT for providers of {id} (giving up after {find_timeout} s)");
    let node::Download {
        mut events,
        mut done,
    } = client.get(id, out).await?;
    let mut progress = (0u32, 0u32);
    let mut last_print = Instant::now();
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
                println!("{}", path.display());
                let _ = std::io::stdout().flush();
                eprintln!(
                    "complete: {} in {:.1}s ({} received)",
                    path.display(),
                    started.elapsed().as_secs_f64(),
                    human(stats.downloaded)
                );
                break;
            }
            ev = events.recv(), if events_open => ev,
            _ = &mut signal => {
                eprintln!("interrupted: saving progress");
                client.shutdown().await?;
                return Ok(());
            }
        };
        match ev {
            Some(GetEvent::ProvidersFound(n)) => {
                if !found_providers && n > 0 {
                    found_providers = true;
                    eprintln!(
                        "found {n} provider(s) {:.0} ms after start",
                        launched.elapsed().as_secs_f64() * 1000.0
                    );
                }
            }
            Some(GetEvent::Manifest(m)) => eprintln!(
                "fetching {} ({} in {} chunks)",
                m.name,
                human(m.total_length()),
                m.chunk_count()
            ),
            Some(GetEvent::Progress { have, total, peers }) => {
                progress = (have, total);
                write_stats(&client, &net, Some(progress)).await;
                if last_print.elapsed() >= Duration::from_secs(1) && total > 0 {
                    last_print = Instant::now();
                    let stats = client.stats().await.unwrap_or_default();
                    let secs = started.elapsed().as_secs_f64().max(0.001);
                    eprintln!(
                        "[{:3}%] {have}/{total} chunks, {peers} peers, {} received ({}/s)",
                        u64::from(have) * 100 / u64::from(total),
                        human(stats.downloaded),
                        human((stats.downloaded as f64 / secs) as u64)
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
    eprintln!("seeding; press Ctrl-C to stop");
    run_until_signal(&client, &net, Some(progress)).await
}
