//! A real etcd v3 cluster for the fleet tests: [`EtcdCluster`] starts 1 or 3 `etcd` members on
//! loopback ports in a temp dir (plain, or with client TLS and client-certificate auth, see
//! [`certs`]), waits until they answer, kills and restarts members on demand, and reads and
//! writes keys (`kv.rs`) through etcd's JSON gateway ([`wire`]) so a test can set up or check
//! what the daemons see. Members are killed on drop, and die with the test thread that spawned them.
//!
//! Timings are cut for tests (50 ms heartbeats, 500 ms election timeout): a new leader is
//! elected within about a second of a leader's death.

pub mod certs;
mod kv;
pub mod wire;

use std::fs::{self, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use wire::{b64, unb64};

/// How long a fresh cluster may take to answer.
const START: Duration = Duration::from_secs(30);
/// How long a restarted cluster may take to regain a quorum, or a leader to be elected.
const HEAL: Duration = Duration::from_secs(20);
/// Attempts at a fresh cluster when a member finds its port taken (ports are picked free, then
/// released, so another process can take one in between).
const PORT_ATTEMPTS: usize = 3;

/// Is the `etcd` server installed? When not, prints `SKIP: etcd is not installed ({why})`.
pub fn etcd_or_skip(why: &str) -> bool {
    let ok = Command::new("etcd")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIP: etcd is not installed ({why})");
    }
    ok
}

/// One member: its ports, its data dir and log, and its process while it runs.
struct Member {
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Its member id (a decimal u64 as etcd's JSON prints it), once asked.
    id: Option<String>,
}

/// A running etcd cluster in a temp dir; every member is killed on drop.
pub struct EtcdCluster {
    dir: tempfile::TempDir,
    token: String,
    members: Vec<Member>,
    tls: Option<certs::Certs>,
}

impl EtcdCluster {
    /// A fresh cluster of `n` members (1 or 3) on plain HTTP, answering on every member.
    pub fn start(n: usize) -> EtcdCluster {
        Self::start_with(n, false)
    }

    /// A fresh cluster of `n` members whose client URLs are HTTPS with client-certificate auth
    /// ([`ca_path`](Self::ca_path), [`client_cert_path`](Self::client_cert_path), ...). Peer
    /// traffic stays plain HTTP.
    pub fn start_tls(n: usize) -> EtcdCluster {
        Self::start_with(n, true)
    }

    fn start_with(n: usize, tls: bool) -> EtcdCluster {
        assert!(
            n == 1 || n == 3,
            "an EtcdCluster has 1 or 3 members, not {n}"
        );
        let mut failures = Vec::new();
        for _ in 0..PORT_ATTEMPTS {
            let mut cluster = Self::spawn_new(n, tls);
            match cluster.wait_all_answer() {
                Ok(()) => return cluster,
                Err(e) if e.contains("address already in use") => failures.push(e),
                Err(e) => panic!("etcd cluster did not start: {e}\n{}", cluster.logs_tail()),
            }
        }
        panic!(
            "etcd members kept finding their ports taken:\n{}",
            failures.join("\n")
        );
    }

    /// Lay out a fresh cluster and spawn every member.
    fn spawn_new(n: usize, tls: bool) -> EtcdCluster {
        let dir = tempfile::tempdir().expect("tmp");
        let tls = tls.then(|| certs::make(&dir.path().join("certs")));
        let members = (0..n)
            .map(|i| Member {
                client_port: super::free_port(),
                peer_port: super::free_port(),
                data_dir: dir.path().join(format!("m{i}")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
                id: None,
            })
            .collect();
        let mut cluster = EtcdCluster {
            token: unique_token(),
            dir,
            members,
            tls,
        };
        for i in 0..n {
            cluster.spawn(i, "new");
        }
        cluster
    }

    /// Spawn member `i` with its flags and `--initial-cluster-state state`, its stdout and
    /// stderr appended to its log.
    fn spawn(&mut self, i: usize, state: &str) {
        assert!(
            self.members[i].child.is_none(),
            "etcd member {i} already runs"
        );
        let initial_cluster = (0..self.members.len())
            .map(|j| format!("m{j}=http://127.0.0.1:{}", self.members[j].peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let m = &self.members[i];
        let client_url = self.endpoint(i);
        let peer_url = format!("http://127.0.0.1:{}", m.peer_port);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("open the member's log");
        let mut cmd = Command::new("etcd");
        cmd.arg("--name")
            .arg(format!("m{i}"))
            .arg("--data-dir")
            .arg(&m.data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &initial_cluster])
            .args(["--initial-cluster-state", state])
            .args(["--initial-cluster-token", &self.token])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .args(["--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log"))
            .stderr(log);
        if let Some(c) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&c.server_cert)
                .arg("--key-file")
                .arg(&c.server_key)
                .arg("--trusted-ca-file")
                .arg(&c.ca)
                .arg("--client-cert-auth");
        }
        // SAFETY: prctl is async-signal-safe, and the closure touches nothing else. A member
        // outlives no test: it gets SIGKILL when the thread that spawned it ends, even if the
        // test process is killed before Drop runs.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .expect("spawn etcd (Debian: apt-get install etcd-server)");
        self.members[i].child = Some(child);
    }

    /// Wait until every member answers a linearizable range; an early exit of a member is an
    /// error at once, with its log.
    fn wait_all_answer(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START;
        loop {
            for i in 0..self.members.len() {
                if let Some(e) = self.exited(i) {
                    return Err(e);
                }
            }
            let errors: Vec<String> = (0..self.members.len())
                .filter_map(|i| self.range_on(i, "kinfra-fixture-probe").err())
                .collect();
            if errors.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "not every member answered within {START:?}: {}",
                    errors.join("; ")
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `Some(why)` when member `i` was started and has exited since (reaped here).
    fn exited(&mut self, i: usize) -> Option<String> {
        let m = &mut self.members[i];
        let status = m.child.as_mut()?.try_wait().ok()??;
        m.child = None;
        let log = fs::read_to_string(&m.log).unwrap_or_default();
        Some(format!(
            "etcd member {i} exited ({status}):\n{}",
            tail(&log, 20)
        ))
    }

    /// How many members the cluster has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// The temp dir: data dirs `m{i}/`, logs `m{i}.log`, certificates `certs/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Every member's client URL (`http://127.0.0.1:P`, or `https://` for a TLS cluster).
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    /// Member `i`'s client URL.
    pub fn endpoint(&self, i: usize) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.members[i].client_port)
    }

    /// Is member `i`'s process running (as far as this fixture started and killed it)?
    pub fn is_running(&mut self, i: usize) -> bool {
        self.exited(i).is_none() && self.members[i].child.is_some()
    }

    fn certs(&self) -> &certs::Certs {
        self.tls
            .as_ref()
            .expect("a TLS cluster (EtcdCluster::start_tls)")
    }

    /// The CA that signed the members' and the client's certificates (TLS clusters only).
    pub fn ca_path(&self) -> &Path {
        &self.certs().ca
    }

    /// A client certificate the members accept.
    pub fn client_cert_path(&self) -> &Path {
        &self.certs().client_cert
    }

    pub fn client_key_path(&self) -> &Path {
        &self.certs().client_key
    }

    /// A client certificate signed by another CA: the members must refuse it.
    pub fn rogue_cert_path(&self) -> &Path {
        &self.certs().rogue_cert
    }

    pub fn rogue_key_path(&self) -> &Path {
        &self.certs().rogue_key
    }

    /// POST `body` to member `i`'s JSON gateway at `path` (`/v3/kv/range`, ...): the JSON answer
    /// of a 200, else an error that says what happened. Never waits much longer than etcd's own
    /// request timeout (about 6 s with these flags).
    pub fn post(&self, i: usize, path: &str, body: &Value) -> Result<Value, String> {
        match &self.tls {
            None => wire::post_plain(self.members[i].client_port, path, body),
            Some(c) => self.post_as(i, path, body, &c.client_cert, &c.client_key),
        }
    }

    /// [`post`](Self::post) to a TLS member with the client certificate and key given.
    pub fn post_as(
        &self,
        i: usize,
        path: &str,
        body: &Value,
        cert: &Path,
        key: &Path,
    ) -> Result<Value, String> {
        wire::post_curl(&self.endpoint(i), path, body, &self.certs().ca, cert, key)
    }

    /// A linearizable range of `key` on member `i`.
    fn range_on(&self, i: usize, key: &str) -> Result<Value, String> {
        self.post(i, "/v3/kv/range", &json!({ "key": b64(key) }))
    }

    /// Member `i`'s own member id.
    pub fn member_id(&mut self, i: usize) -> Result<String, String> {
        if let Some(id) = &self.members[i].id {
            return Ok(id.clone());
        }
        let status = self.post(i, "/v3/maintenance/status", &json!({}))?;
        let id = status["header"]["member_id"]
            .as_str()
            .ok_or_else(|| format!("no header.member_id in {status}"))?
            .to_string();
        self.members[i].id = Some(id.clone());
        Ok(id)
    }

    /// The index of the current leader: a running member that a running member names as its
    /// leader. Waits for an election (up to 20 s) rather than naming a member just killed.
    pub fn leader(&mut self) -> usize {
        let mut last = String::from("no running member");
        let deadline = Instant::now() + HEAL;
        while Instant::now() < deadline {
            match self.leader_now() {
                Ok(i) => return i,
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "no etcd leader within {HEAL:?}: {last}\n{}",
            self.logs_tail()
        );
    }

    fn leader_now(&mut self) -> Result<usize, String> {
        let mut last = String::from("no running member");
        for asked in 0..self.members.len() {
            if !self.is_running(asked) {
                continue;
            }
            let status = match self.post(asked, "/v3/maintenance/status", &json!({})) {
                Ok(s) => s,
                Err(e) => {
                    last = format!("member {asked}: {e}");
                    continue;
                }
            };
            let leader = status["leader"].as_str().unwrap_or("0").to_string();
            for j in 0..self.members.len() {
                if self.is_running(j) && self.member_id(j).is_ok_and(|id| id == leader) {
                    return Ok(j);
                }
            }
            last = format!("member {asked} names leader {leader}, no running member");
        }
        Err(last)
    }

    /// SIGKILL member `i` and wait for it to exit.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kill every member.
    pub fn stop_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Start member `i` again on its data dir, ports and flags (`--initial-cluster-state
    /// existing`). When a quorum then runs, waits until it answers; otherwise it cannot answer
    /// yet: start more members, then [`wait_healthy`](Self::wait_healthy).
    pub fn restart(&mut self, i: usize) {
        self.spawn(i, "existing");
        let running = (0..self.len()).filter(|&j| self.is_running(j)).count();
        if running > self.len() / 2 {
            self.wait(HEAL, &format!("restarted member {i} answers"), |c| {
                c.range_on(i, "kinfra-fixture-probe").err()
            });
        }
    }

    /// Start every member that is not running, then wait until the cluster is healthy.
    pub fn start_all(&mut self) {
        for i in 0..self.len() {
            if !self.is_running(i) {
                self.spawn(i, "existing");
            }
        }
        self.wait_healthy();
    }

    /// Wait until a quorum of members answers a linearizable range.
    pub fn wait_healthy(&mut self) {
        self.wait(HEAL, "a quorum of etcd members answers", |c| {
            let errors: Vec<String> = (0..c.len())
                .filter_map(|i| c.range_on(i, "kinfra-fixture-probe").err())
                .collect();
            (c.len() - errors.len() <= c.len() / 2).then(|| errors.join("; "))
        });
    }

    /// Poll `f` (an error while not there yet) until it returns `None`, or panic after
    /// `timeout` with its last error and the members' logs.
    fn wait(
        &mut self,
        timeout: Duration,
        what: &str,
        mut f: impl FnMut(&mut Self) -> Option<String>,
    ) {
        let start = Instant::now();
        loop {
            let Some(e) = f(self) else { return };
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting until {what}: {e}\n{}",
                    self.logs_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last lines of every member's log, for failure messages.
    pub fn logs_tail(&self) -> String {
        let mut out = String::new();
        for (i, m) in self.members.iter().enumerate() {
            let log = fs::read_to_string(&m.log).unwrap_or_else(|e| format!("(no log: {e})"));
            out.push_str(&format!(
                "--- etcd member {i} log (tail)\n{}\n",
                tail(&log, 15)
            ));
        }
        out
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A cluster token no other cluster on this machine uses (so members of two test clusters can
/// never join each other).
fn unique_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "kinfra-test-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
