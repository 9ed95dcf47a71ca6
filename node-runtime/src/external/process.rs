//! An engine's process: started in a process group of its own with the
//! model's environment, its output kept in a [`LogRing`], killed with the
//! node even when the node is killed with SIGKILL, and stopped politely.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use super::logs::LogRing;

/// How long a stopped engine has between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// A running engine.
#[derive(Debug)]
pub struct EngineProcess {
    pid: u32,
    child: Mutex<Child>,
    /// The threads reading its output into the ring.
    readers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

type SpawnJob = Box<dyn FnOnce() + Send>;

/// The thread every engine is started from. The parent-death signal fires
/// when the *thread* that forked the child exits, not the process, so
/// engines must not be forked from pooled threads that come and go; this
/// one lives as long as the node.
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnJob>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        let started = std::thread::Builder::new().name("engine-spawner".into()).spawn(move || {
            for job in rx {
                job();
            }
        });
        if let Err(e) = started {
            tracing::error!(error = %e, "Could not start the engine spawner thread");
        }
        Mutex::new(tx)
    })
}

impl EngineProcess {
    /// Starts `argv` with `env` added to the node's environment, its
    /// output read into `logs`.
    ///
    /// # Errors
    /// When the program cannot be started.
    pub fn spawn(argv: &[String], env: &BTreeMap<String, String>, logs: &LogRing) -> std::io::Result<Self> {
        let (program, args) = argv.split_first().ok_or_else(|| std::io::Error::other("an empty command line"))?;
        let mut command = Command::new(program);
        command.args(args).envs(env).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        {
            use std::os::unix::process::CommandExt;
            // Its own group: stopping the engine stops what it started too.
            command.process_group(0);
            let parent = std::process::id();
            #[allow(unsafe_code)]
            // SAFETY: between fork and exec only async-signal-safe calls
            // (prctl, getppid, _exit) run, touching no memory of the parent.
            unsafe {
                command.pre_exec(move || {
                    // Killed with the node, whatever kills the node.
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    // The node may have died before the signal was armed.
                    if libc::getppid() as u32 != parent {
                        libc::_exit(1);
                    }
                    Ok(())
                });
            }
        }
        let (tx, rx) = mpsc::channel();
        let job: SpawnJob = Box::new(move || {
            let _ = tx.send(command.spawn());
        });
        spawner()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(job)
            .map_err(|_| std::io::Error::other("the engine spawner thread is gone"))?;
        let mut child = rx.recv().map_err(|_| std::io::Error::other("the engine spawner thread is gone"))??;
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.extend(logs.follow(out, "stdout"));
        }
        if let Some(err) = child.stderr.take() {
            readers.extend(logs.follow(err, "stderr"));
        }
        Ok(Self { pid: child.id(), child: Mutex::new(child), readers: Mutex::new(readers) })
    }

    /// Waits (at most `limit`) for the output it wrote before it exited to
    /// reach the ring: a child it left holding its pipes may keep them open.
    pub fn drain_output(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let readers = std::mem::take(&mut *self.readers.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        while readers.iter().any(|r| !r.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// How it ended, if it has: `exit status 1`, `signal 9`.
    pub fn exited(&self) -> Option<String> {
        let mut child = self.child.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match child.try_wait() {
            Ok(Some(status)) => Some(describe(status)),
            Ok(None) => None,
            Err(e) => Some(format!("cannot be waited for: {e}")),
        }
    }

    /// SIGTERM to its whole group, then SIGKILL after `grace`; returns once it is gone.
    pub fn stop(&self, grace: Duration) {
        self.signal_group(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.exited().is_some() {
                // Children it left behind in its group go too.
                self.signal_group(libc::SIGKILL);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(pid = self.pid, "Engine ignored SIGTERM; killing it");
        self.signal_group(libc::SIGKILL);
        let mut child = self.child.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = child.wait();
    }

    fn signal_group(&self, signal: libc::c_int) {
        let Ok(group) = libc::pid_t::try_from(self.pid) else { return };
        #[allow(unsafe_code)]
        // SAFETY: kill(2) with a negative pid signals the process group the
        // engine leads (it was started with process_group(0)); no memory is touched.
        unsafe {
            libc::kill(-group, signal);
        }
    }

    /// The live processes of its group: the engine and what it started
    /// (vLLM runs its model in a child process, for one).
    pub fn group(&self) -> Vec<u32> {
        group_members(self.pid)
    }

    /// Resident memory of its whole group, in bytes (Linux `/proc`).
    pub fn resident_bytes(&self) -> Option<u64> {
        let members = self.group();
        if members.is_empty() {
            return None;
        }
        Some(members.into_iter().filter_map(resident_bytes).sum())
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.stop(STOP_GRACE);
        }
    }
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

/// The processes in process group `group`, zombies left out.
pub fn group_members(group: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
            // After the command name (which may hold spaces): state, ppid, pgrp.
            let fields: Vec<&str> = stat.rsplit_once(')').map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
            fields.first().is_some_and(|state| *state != "Z")
                && fields.get(2).and_then(|g| g.parse().ok()) == Some(group)
        })
        .collect()
}

/// `VmRSS` of a process, in bytes.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["/bin/sh".into(), "-c".into(), script.into()]
    }

    /// The pid the shell under test prints (its background child's).
    fn printed_pid(logs: &LogRing) -> u32 {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = logs.last(1).first().and_then(|l| l.parse::<u32>().ok()) {
                return pid;
            }
            assert!(Instant::now() < deadline, "the shell never printed its child");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn output_is_kept_and_the_exit_described() {
        let logs = LogRing::default();
        let p = EngineProcess::spawn(
            &sh("echo \"hello $GT_X\"; echo oops >&2; exit 3"),
            &BTreeMap::from([("GT_X".into(), "there".into())]),
            &logs,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.exited().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(p.exited().as_deref(), Some("exit status 3"));
        p.drain_output(Duration::from_secs(5));
        let lines = logs.last(10);
        assert!(lines.contains(&"hello there".to_owned()) && lines.contains(&"oops".to_owned()), "{lines:?}");
    }

    #[test]
    fn stop_ends_the_whole_group_even_when_sigterm_is_ignored() {
        let logs = LogRing::default();
        // A shell that ignores SIGTERM, with a child of its own in its group.
        let p = EngineProcess::spawn(&sh("trap '' TERM; sleep 300 & echo $!; wait"), &BTreeMap::new(), &logs)
            .unwrap_or_else(|e| panic!("{e}"));
        let grandchild = printed_pid(&logs);
        let started = Instant::now();
        p.stop(Duration::from_millis(300));
        assert!(started.elapsed() >= Duration::from_millis(300), "it waited for the grace period");
        assert!(p.exited().is_some());
        std::thread::sleep(Duration::from_millis(100));
        let alive = std::fs::read_to_string(format!("/proc/{grandchild}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|state| state != "Z"));
        assert!(!alive, "the engine's own child was left running");
    }

    #[test]
    fn the_group_holds_the_engine_and_its_children() {
        let logs = LogRing::default();
        let p = EngineProcess::spawn(&sh("sleep 300 & echo $!; wait"), &BTreeMap::new(), &logs)
            .unwrap_or_else(|e| panic!("{e}"));
        let child = printed_pid(&logs);
        let mut group = p.group();
        group.sort_unstable();
        let mut expected = vec![p.pid(), child];
        expected.sort_unstable();
        assert_eq!(group, expected);
        assert!(p.resident_bytes().is_some_and(|b| b > 0));
        p.stop(Duration::from_secs(5));
        assert!(p.group().is_empty());
    }

    #[test]
    fn a_missing_program_is_an_error() {
        let err = EngineProcess::spawn(&["/no/such/engine".into()], &BTreeMap::new(), &LogRing::default());
        assert!(err.is_err());
    }
}
