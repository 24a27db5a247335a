//! One child process driven from plain, non-async code, as test harnesses
//! need: started like every [`super::Supervisor`] child (stderr to a log
//! file, stdout read line by line, its own process group, SIGTERM if the
//! starting thread dies), waited on with timeouts, and killed (SIGKILL) and
//! reaped when dropped.
//!
//! It reports what happened (a line, an exit status, nothing in time) and
//! leaves the policy to the caller: a test panics with the whole log, a tool
//! would return an error.

use std::ffi::OsString;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

/// Stdout lines kept until read. Far more than a node prints (a few lines,
/// or one JSON event a second); beyond it lines are counted and dropped
/// so the child never blocks on a full pipe.
const LINE_QUEUE: usize = 4096;

/// How long to wait for the reader to deliver the last lines once the child has exited.
const DRAIN: Duration = Duration::from_secs(5);

/// A running child process; killed (SIGKILL) and reaped on drop.
#[derive(Debug)]
pub struct Process {
    name: String,
    log: PathBuf,
    child: std::process::Child,
    lines: Receiver<String>,
    dropped: Arc<AtomicUsize>,
}

impl Process {
    /// Starts `program args…` as `name` with `envs` added to its
    /// environment; its stderr goes to a new file at `log`.
    ///
    /// The child gets SIGTERM when the calling *thread* ends (Linux's
    /// parent-death signal follows threads), so start it from a thread that
    /// outlives it, not from `spawn_blocking` or a helper thread.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[OsString],
        envs: &[(&str, &str)],
        log: &Path,
    ) -> anyhow::Result<Self> {
        let mut cmd = super::command(program, &[], args, log)?;
        cmd.envs(envs.iter().copied());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} from {}", program.display()))?;
        let stdout = match child.stdout.take() {
            Some(stdout) => stdout,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(anyhow!("{name}: stdout was not captured"));
            }
        };
        let (tx, lines) = mpsc::sync_channel(LINE_QUEUE);
        let dropped = Arc::new(AtomicUsize::new(0));
        let counter = dropped.clone();
        std::thread::spawn(move || read_lines(stdout, tx, &counter));
        Ok(Self {
            name: name.to_string(),
            log: log.to_path_buf(),
            child,
            lines,
            dropped,
        })
    }

    /// The name it was started with.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where its stderr goes.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Its stderr so far (empty if the log cannot be read).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process ID (for signals and for reading its use from /proc).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next stdout line, or None if none came within `timeout` or the
    /// process closed its stdout.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// All stdout lines printed so far and not yet read; once the process
    /// has exited, every line up to its end (the reader thread may lag).
    pub fn remaining_lines(&mut self) -> Vec<String> {
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            return self.lines.try_iter().collect();
        }
        let mut all = Vec::new();
        let deadline = Instant::now() + DRAIN;
        // The channel closes when the reader thread reaches end of output.
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => all.push(line),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        all
    }

    /// Lines dropped because nobody read them and the queue was full.
    pub fn lines_dropped(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits up to `timeout` for the process to exit; None if it still runs.
    pub fn wait_timeout(&mut self, timeout: Duration) -> std::io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills it with SIGKILL (no chance to save state) and reaps it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Forwards stdout lines; keeps draining when the queue is full or the
/// receiver is gone, so the child never blocks on (or dies from) its pipe.
fn read_lines(stdout: std::process::ChildStdout, tx: SyncSender<String>, dropped: &AtomicUsize) {
    let mut reader = std::io::BufReader::new(stdout);
    let mut buf = Vec::new();
    let mut receiver_gone = false;
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) if receiver_gone => {}
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf)
                    .trim_end_matches(['\n', '\r'])
                    .to_string();
                match tx.try_send(line) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(TrySendError::Disconnected(_)) => receiver_gone = true,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "testnet-blocking-{}-{name}.log",
            std::process::id()
        ))
    }

    fn sh(name: &str, script: &str) -> (Process, PathBuf) {
        let log = log(name);
        let args = [OsString::from("-c"), OsString::from(script)];
        let p = Process::spawn(
            name,
            Path::new("/bin/sh"),
            &args,
            &[("GREETING", "hi")],
            &log,
        )
        .unwrap();
        (p, log)
    }

    #[test]
    fn reads_lines_exit_status_and_log() {
        let (mut p, log) = sh(
            "lines",
            "echo \"$GREETING\"; echo second; echo oops >&2; exit 3",
        );
        assert_eq!(p.next_line(Duration::from_secs(10)).as_deref(), Some("hi"));
        let status = p.wait_timeout(Duration::from_secs(10)).unwrap().unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(p.remaining_lines(), ["second"]);
        assert_eq!(p.next_line(Duration::from_millis(100)), None);
        assert!(p.log_text().contains("oops"));
        assert_eq!(p.lines_dropped(), 0);
        drop(p);
        std::fs::remove_file(log).unwrap();
    }

    #[test]
    fn a_child_that_runs_on_is_reported_then_killed_on_drop() {
        let (mut p, log) = sh("sleeper", "echo up; exec sleep 60");
        assert_eq!(p.next_line(Duration::from_secs(10)).as_deref(), Some("up"));
        assert_eq!(p.wait_timeout(Duration::from_millis(200)).unwrap(), None);
        let pid = p.pid();
        assert!(super::super::is_running(pid));
        drop(p);
        assert!(!super::super::is_running(pid), "child {pid} still running");
        std::fs::remove_file(log).unwrap();
    }

    #[test]
    fn a_missing_program_is_an_error_naming_it() {
        let err = Process::spawn(
            "ghost",
            Path::new("/nonexistent/node"),
            &[],
            &[],
            &log("ghost"),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("/nonexistent/node"), "{err:#}");
        let _ = std::fs::remove_file(log("ghost"));
    }
}
