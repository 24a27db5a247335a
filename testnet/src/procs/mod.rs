//! Process supervision: starting `node` processes with stderr in a log file,
//! reading their stdout line by line, and stopping every one of them by its
//! own PID — on request, on error, on Ctrl-C and on panic.
//!
//! Teardown has three layers:
//! 1. [`Supervisor::shutdown`]: SIGTERM to each child, a grace period, then SIGKILL.
//! 2. `Drop for Supervisor` (runs on early return and panic unwind): the
//!    same, synchronously, with a short grace.
//! 3. Backstops if testnet itself dies without unwinding: tokio's
//!    `kill_on_drop`, and on Linux `PR_SET_PDEATHSIG` so the kernel sends
//!    SIGTERM to each child when its parent goes away (even on SIGKILL).
//!
//! Children run in their own process group, so a Ctrl-C in the terminal
//! reaches only testnet, which then stops them in order.
//!
//! [`blocking::Process`] starts a single child the same way for code that
//! is not async (the workspace's integration tests).

pub mod blocking;

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

/// How long [`Supervisor::shutdown`] waits after SIGTERM before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);

/// How long the `Drop` teardown waits after SIGTERM before SIGKILL.
const DROP_GRACE: Duration = Duration::from_secs(2);

/// Stdout lines buffered per child; a node prints only a few, and a full
/// queue drops lines rather than stall the node on a blocked pipe.
const LINE_QUEUE: usize = 64;

/// One line a child printed on stdout, stamped when it was read.
#[derive(Clone, Debug)]
pub struct Line {
    /// When testnet read the line (right after the child flushed it).
    pub at: Instant,
    /// The line without its newline.
    pub text: String,
}

/// Names a child within its [`Supervisor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChildId(usize);

/// Owns every node process of a run and guarantees they are stopped.
pub struct Supervisor {
    bin: PathBuf,
    children: Vec<Managed>,
    started: Vec<u32>,
}

struct Managed {
    name: String,
    log: PathBuf,
    child: Child,
    lines: mpsc::Receiver<Line>,
}

impl Supervisor {
    /// A supervisor that starts `bin` (the kadswarm `node` binary, by absolute path).
    pub fn new(bin: PathBuf) -> Self {
        Self {
            bin,
            children: Vec::new(),
            started: Vec::new(),
        }
    }

    /// Starts `bin args…` as `name`, stderr appended to `log`, stdout read line by line.
    pub fn spawn(&mut self, name: &str, args: &[OsString], log: &Path) -> anyhow::Result<ChildId> {
        let bin = self.bin.clone();
        self.spawn_program(name, &bin, &[], args, log)
    }

    /// Like [`Supervisor::spawn`], inside network namespace `netns` (root
    /// only). `ip netns exec` execs the node in place, so the PID we hold,
    /// signal and reap is the node's own.
    pub fn spawn_in_netns(
        &mut self,
        name: &str,
        netns: &str,
        args: &[OsString],
        log: &Path,
    ) -> anyhow::Result<ChildId> {
        let ip = crate::ipcmd::tool("ip")?;
        let prefix = [
            OsString::from("netns"),
            OsString::from("exec"),
            OsString::from(netns),
            self.bin.clone().into_os_string(),
        ];
        self.spawn_program(name, &ip, &prefix, args, log)
    }

    /// The `node` binary this supervisor starts.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// PIDs of every child ever started, reaped or not (for leftover checks).
    pub fn started_pids(&self) -> &[u32] {
        &self.started
    }

    /// CPU time (user + system) the running children have used so far, in
    /// seconds; children already reaped are not counted.
    pub fn cpu_seconds(&self) -> f64 {
        self.pids().into_iter().filter_map(cpu_seconds_of).sum()
    }

    /// PIDs of the children not yet reaped.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(|m| m.child.id()).collect()
    }

    fn spawn_program(
        &mut self,
        name: &str,
        program: &Path,
        prefix: &[OsString],
        args: &[OsString],
        log: &Path,
    ) -> anyhow::Result<ChildId> {
        let mut cmd = Command::from(command(program, prefix, args, log)?);
        cmd.kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name} from {}", program.display()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("{name}: stdout was not captured"))?;
        self.started.extend(child.id());
        let (tx, rx) = mpsc::channel(LINE_QUEUE);
        tokio::spawn(read_lines(stdout, tx));
        self.children.push(Managed {
            name: name.to_string(),
            log: log.to_path_buf(),
            child,
            lines: rx,
        });
        Ok(ChildId(self.children.len() - 1))
    }

    /// The name a child was started with.
    pub fn name(&self, id: ChildId) -> &str {
        &self.children[id.0].name
    }

    /// Waits for the child's next stdout line until `deadline`. `what` names
    /// the expected line for the error message ("its listen address").
    pub async fn next_line(
        &mut self,
        id: ChildId,
        deadline: tokio::time::Instant,
        what: &str,
    ) -> anyhow::Result<Line> {
        let m = &mut self.children[id.0];
        loop {
            match tokio::time::timeout_at(deadline, m.lines.recv()).await {
                Ok(Some(line)) if line.text.trim().is_empty() => continue,
                Ok(Some(line)) => return Ok(line),
                Ok(None) => {
                    // Stdout closed: the process is on its way out.
                    let status = tokio::time::timeout(Duration::from_secs(2), m.child.wait()).await;
                    let status = match status {
                        Ok(Ok(s)) => describe(s),
                        _ => "closed its stdout".to_string(),
                    };
                    bail!(
                        "{} exited ({status}) before printing {what}\n{}",
                        m.name,
                        log_tail(&m.log)
                    );
                }
                Err(_) => bail!(
                    "{} did not print {what} in time\n{}",
                    m.name,
                    log_tail(&m.log)
                ),
            }
        }
    }

    /// The child's next stdout line if one is waiting.
    pub fn try_line(&mut self, id: ChildId) -> Option<Line> {
        self.children[id.0].lines.try_recv().ok()
    }

    /// Fails if any child has exited: during a run every node is meant to stay up.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for m in &mut self.children {
            if m.child.id().is_none() {
                continue; // already reaped and reported
            }
            let status = m
                .child
                .try_wait()
                .with_context(|| format!("cannot check on {}", m.name))?;
            if let Some(status) = status {
                bail!(
                    "{} exited unexpectedly ({})\n{}",
                    m.name,
                    describe(status),
                    log_tail(&m.log)
                );
            }
        }
        Ok(())
    }

    /// Number of children not yet reaped.
    pub fn running(&self) -> usize {
        self.children
            .iter()
            .filter(|m| m.child.id().is_some())
            .count()
    }

    /// Stops every child: SIGTERM by PID, up to `grace` for them to exit (cut
    /// short when `force` completes, e.g. on a second Ctrl-C), then SIGKILL.
    /// Reports children that exited with an error. Safe to call twice.
    pub async fn shutdown(
        &mut self,
        grace: Duration,
        force: impl std::future::Future<Output = ()>,
    ) {
        // Children that already exited were reported by whoever noticed.
        let live: Vec<bool> = self
            .children
            .iter()
            .map(|m| m.child.id().is_some())
            .collect();
        for m in &self.children {
            signal_child(m, Signal::SIGTERM);
        }
        let exited = async {
            for m in &mut self.children {
                let _ = m.child.wait().await;
            }
        };
        tokio::select! {
            _ = tokio::time::timeout(grace, exited) => {}
            _ = force => eprintln!("testnet: forced stop"),
        }
        for m in &mut self.children {
            if m.child.id().is_none() || matches!(m.child.try_wait(), Ok(Some(_))) {
                continue;
            }
            eprintln!("testnet: {} did not stop after SIGTERM; killing it", m.name);
            let _ = m.child.start_kill();
            let _ = m.child.wait().await;
        }
        for (m, _) in self.children.iter_mut().zip(live).filter(|(_, live)| *live) {
            if let Ok(Some(status)) = m.child.try_wait() {
                if !stopped_cleanly(status) {
                    eprintln!(
                        "testnet: warning: {} ended with {}; see {}",
                        m.name,
                        describe(status),
                        m.log.display()
                    );
                }
            }
        }
    }
}

impl Drop for Supervisor {
    /// Last line of defence (early return, `?`, panic): stop whatever still runs.
    fn drop(&mut self) {
        let live = self.running();
        if live == 0 {
            return;
        }
        eprintln!("testnet: stopping {live} node process(es)");
        for m in &self.children {
            signal_child(m, Signal::SIGTERM);
        }
        let deadline = Instant::now() + DROP_GRACE;
        while Instant::now() < deadline
            && self
                .children
                .iter_mut()
                .any(|m| m.child.id().is_some() && matches!(m.child.try_wait(), Ok(None)))
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        for m in &mut self.children {
            if m.child.id().is_some() && matches!(m.child.try_wait(), Ok(None)) {
                let _ = m.child.start_kill();
            }
        }
        // Reap what we can; tokio's orphan queue or init reaps the rest.
        std::thread::sleep(Duration::from_millis(100));
        for m in &mut self.children {
            let _ = m.child.try_wait();
        }
    }
}

/// `program prefix… args…` set up as every child of testnet starts: stdin
/// closed, stdout piped, stderr to a new file at `log`, its own process
/// group, and (on Linux) SIGTERM when the thread that started it dies.
fn command(
    program: &Path,
    prefix: &[OsString],
    args: &[OsString],
    log: &Path,
) -> anyhow::Result<std::process::Command> {
    use std::os::unix::process::CommandExt;
    let log_file = std::fs::File::create(log)
        .with_context(|| format!("cannot create log file {}", log.display()))?;
    let mut cmd = std::process::Command::new(program);
    cmd.args(prefix)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = nix::unistd::getpid();
        // SAFETY: the closure runs between fork and exec and only makes
        // async-signal-safe syscalls (prctl, getppid); it does not allocate.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
                // The parent may have died before prctl took effect.
                if nix::unistd::getppid() != parent {
                    return Err(nix::errno::Errno::ESRCH.into());
                }
                Ok(())
            });
        }
    }
    Ok(cmd)
}

/// Whether process `pid` still runs: a zombie awaiting its reaper, or a
/// PID with no `/proc` entry, counts as gone.
pub fn is_running(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state is the first field after the command name, which may hold spaces or ')'.
    let state = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .trim_start()
        .chars()
        .next();
    !matches!(state, None | Some('Z') | Some('X'))
}

/// utime + stime of `pid` from `/proc/<pid>/stat`, in seconds (the kernel
/// reports them in USER_HZ ticks, 100 per second on Linux).
fn cpu_seconds_of(pid: u32) -> Option<f64> {
    const USER_HZ: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces), from field 3 on.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Sends `sig` to a child by its PID, only while it is unreaped: a reaped
/// child's PID may already belong to someone else.
fn signal_child(m: &Managed, sig: Signal) {
    if let Some(pid) = m.child.id() {
        if let Ok(pid) = i32::try_from(pid) {
            let _ = kill(Pid::from_raw(pid), sig);
        }
    }
}

/// Forwards stdout lines to the supervisor. Keeps draining after the
/// receiver is gone so the node never blocks on (or dies from) a full pipe.
async fn read_lines(stdout: tokio::process::ChildStdout, tx: mpsc::Sender<Line>) {
    let mut reader = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buf).trim_end().to_string();
                let _ = tx.try_send(Line {
                    at: Instant::now(),
                    text,
                });
            }
        }
    }
}

/// Exit code 0, or ended by the SIGTERM/SIGINT we sent.
fn stopped_cleanly(status: ExitStatus) -> bool {
    status.success()
        || matches!(status.signal(), Some(s) if s == Signal::SIGTERM as i32 || s == Signal::SIGINT as i32)
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by {s}"),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => status.to_string(),
    }
}

/// The last lines of a node's log, indented, for error messages.
pub fn log_tail(log: &Path) -> String {
    const LINES: usize = 12;
    const MAX_LINES: usize = 40;
    const MAX_BYTES: u64 = 16 * 1024;
    let text = match std::fs::read(log) {
        Ok(bytes) => {
            let start = (bytes.len() as u64).saturating_sub(MAX_BYTES) as usize;
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(e) => return format!("  (cannot read log {}: {e})", log.display()),
    };
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return format!("  (log {} is empty)", log.display());
    }
    // A panic message is followed by a backtrace: start at the panic so the
    // message is not cut off.
    let mut start = lines.len().saturating_sub(LINES);
    if let Some(p) = lines.iter().rposition(|l| l.contains("panicked at")) {
        start = start.min(p).max(lines.len().saturating_sub(MAX_LINES));
    }
    let mut out = format!("  last lines of {}:", log.display());
    for l in &lines[start..] {
        out.push_str("\n  | ");
        out.push_str(l);
    }
    out
}

/// SIGINT, SIGTERM and SIGHUP, caught so testnet can stop its nodes first.
pub struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers; from now on these signals no longer kill testnet outright.
    pub fn install() -> anyhow::Result<Self> {
        let ctx = "cannot install signal handler";
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).context(ctx)?,
            terminate: signal(SignalKind::terminate()).context(ctx)?,
            hangup: signal(SignalKind::hangup()).context(ctx)?,
        })
    }

    /// Waits for the next signal and returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh() -> Supervisor {
        Supervisor::new(PathBuf::from("/bin/sh"))
    }

    fn args(script: &str) -> Vec<OsString> {
        vec!["-c".into(), script.into()]
    }

    fn log(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("testnet-procs-{}-{name}.log", std::process::id()))
    }

    #[tokio::test]
    async fn reads_lines_and_reports_early_exit_with_log() {
        let mut sup = sh();
        let log = log("early");
        let id = sup
            .spawn("early", &args("echo first; echo oops >&2; exit 3"), &log)
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        assert_eq!(
            sup.next_line(id, deadline, "a line").await.unwrap().text,
            "first"
        );
        let err = sup
            .next_line(id, deadline, "a second line")
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("exit code 3"), "{err}");
        assert!(err.contains("oops"), "{err}");
        std::fs::remove_file(log).unwrap();
    }

    #[test]
    fn log_tail_keeps_the_panic_message() {
        let path = log("panic");
        let mut text =
            String::from("starting\nthread 'main' panicked at src/main.rs:1:1:\nbad flag\n");
        for i in 0..20 {
            text.push_str(&format!("  {i}: frame\n"));
        }
        std::fs::write(&path, text).unwrap();
        let tail = log_tail(&path);
        assert!(
            tail.contains("panicked at") && tail.contains("bad flag"),
            "{tail}"
        );
        assert!(!tail.contains("starting"), "{tail}");
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn reads_cpu_time_of_a_process() {
        let own = cpu_seconds_of(std::process::id()).unwrap();
        assert!(own >= 0.0);
        assert_eq!(cpu_seconds_of(u32::MAX), None);
    }

    #[tokio::test]
    async fn shutdown_terminates_and_kills_stubborn_children() {
        let mut sup = sh();
        let (l1, l2) = (log("polite"), log("stubborn"));
        let polite = sup
            .spawn("polite", &args("echo up; exec sleep 60"), &l1)
            .unwrap();
        let stubborn = sup
            .spawn(
                "stubborn",
                &args("trap '' TERM; echo up; while :; do sleep 1; done"),
                &l2,
            )
            .unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        sup.next_line(polite, deadline, "up").await.unwrap();
        sup.next_line(stubborn, deadline, "up").await.unwrap();
        sup.check_alive().unwrap();
        assert_eq!(sup.running(), 2);
        let started = Instant::now();
        sup.shutdown(Duration::from_millis(500), std::future::pending())
            .await;
        assert_eq!(sup.running(), 0);
        assert!(started.elapsed() < Duration::from_secs(5));
        std::fs::remove_file(l1).unwrap();
        std::fs::remove_file(l2).unwrap();
    }

    #[tokio::test]
    async fn drop_stops_children() {
        let log = log("dropped");
        let pid;
        {
            let mut sup = sh();
            let id = sup
                .spawn("dropped", &args("echo up; exec sleep 60"), &log)
                .unwrap();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            sup.next_line(id, deadline, "up").await.unwrap();
            pid = sup.children[0].child.id().unwrap();
        }
        // Gone, or at worst a zombie awaiting reaping.
        assert!(!is_running(pid), "child {pid} still running");
        std::fs::remove_file(log).unwrap();
    }
}
