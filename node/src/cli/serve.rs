//! Keeping an embedded node running until a signal, then stopping it cleanly.

use std::io::Write;
use std::time::Duration;

use node::Client;

use super::net::NetArgs;
use super::stats_file::write_stats;

/// Prints listen addresses as they appear, keeps stats fresh, and stops cleanly on a signal.
pub async fn run_until_signal(
    client: &Client,
    net: &NetArgs,
    progress: Option<(u32, u32)>,
) -> anyhow::Result<()> {
    let mut printed = std::collections::HashSet::new();
    let print_addrs = net.stats_file.is_none() || progress.is_none();
    // A node with content refreshes its stats often; a bare `join` node has
    // little to report, and many of them share one machine in testnets.
    let every = if progress.is_some() { 500 } else { 2000 };
    let mut tick = tokio::time::interval(Duration::from_millis(every));
    let mut trim = tokio::time::interval(Duration::from_secs(5));
    trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = trim.tick() => node::memory::release_free_heap(),
            _ = tick.tick() => {
                if print_addrs && progress.is_none() {
                    if let Ok(addrs) = client.listen_addrs().await {
                        for a in addrs {
                            if printed.insert(a.clone()) && printed.len() > 1 {
                                println!("{a}");
                                let _ = std::io::stdout().flush();
                            }
                        }
                    }
                }
                write_stats(client, net, progress).await;
            }
        }
    }
    eprintln!("stopping: saving state");
    let stop = client.shutdown();
    tokio::select! {
        r = stop => r,
        _ = shutdown_signal() => {
            eprintln!("second interrupt: exiting now");
            std::process::exit(130);
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
