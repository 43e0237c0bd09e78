//! Throwaway PostgreSQL clusters for the tests: `initdb` into a temporary
//! folder, `postgres` on a free port, stopped (or killed) by the tests
//! themselves. Debian's binaries (`make setup` installs them) are found in
//! `/usr/lib/postgresql/<version>/bin`, or through `PG_BIN`.
//!
//! With `STORAGE=postgres` in the environment every service the harness
//! starts gets a `DATABASE_URL` (see [`database_url_for`]): one database in
//! one cluster shared by the whole test process, a database per `DATA_DIR`,
//! so a restarted service finds what it stored, as it would in its files.
//!
//! The tests run as root; PostgreSQL refuses to, so its processes run as
//! the `postgres` user (and its folders belong to it).

use std::collections::HashMap;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// How long a cluster may take to accept connections after it starts.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The schema version the binary migrates to: its newest `V<n>__*.sql`.
pub fn schema_version() -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../host/src/storage/postgres/migrations");
    std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|f| {
            let name = f.ok()?.file_name().into_string().ok()?;
            name.strip_prefix('V')?.split("__").next()?.parse().ok()
        })
        .max()
        .expect("at least one migration")
}

/// Whether the suite runs against PostgreSQL (`STORAGE=postgres`).
pub fn enabled() -> bool {
    std::env::var("STORAGE").is_ok_and(|s| s.trim() == "postgres")
}

/// The folder holding `initdb`, `postgres`, `createdb`, `pg_isready`.
fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BIN") {
        return PathBuf::from(dir);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").exists())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!(
            "no PostgreSQL binaries in /usr/lib/postgresql/*/bin (run `make setup`, or set PG_BIN)"
        )
    })
}

/// The `postgres` user's uid and gid when the tests run as root.
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: geteuid cannot fail and touches no memory.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run `id postgres`");
        assert!(
            out.status.success(),
            "the tests run as root and PostgreSQL refuses to: a `postgres` user is needed (Debian's postgresql package creates it)"
        );
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    Some((id("-u"), id("-g")))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One throwaway cluster. Dropping it stops it and removes its folder.
pub struct Cluster {
    dir: PathBuf,
    pub port: u16,
    server: Mutex<Option<Child>>,
    owner: Option<(u32, u32)>,
    /// Extra `-c name=value` settings (with `{dir}` for the cluster's folder).
    settings: Vec<String>,
}

impl Cluster {
    /// `initdb` into a new folder under /tmp (every parent readable by the
    /// `postgres` user), then starts the server.
    pub fn start() -> Cluster {
        Self::start_with(&[], &[])
    }

    /// [`Cluster::start`] with `files` written into the cluster's folder
    /// (readable by its server only, as its key files must be) and extra
    /// settings (`name=value`; `{dir}` stands for that folder).
    pub fn start_with(settings: &[&str], files: &[(&str, &[u8])]) -> Cluster {
        let owner = run_as();
        let dir = std::env::temp_dir().join(format!(
            "microservice-e2e-pg-{}-{}",
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
        }
        let mut initdb = Command::new(bin_dir().join("initdb"));
        initdb
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "-D",
            ])
            .arg(dir.join("data"))
            .stdout(Stdio::null());
        if let Some((uid, gid)) = owner {
            initdb.uid(uid).gid(gid);
        }
        let out = initdb.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for (name, contents) in files {
            let path = dir.join(name);
            std::fs::write(&path, contents).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
            if let Some((uid, gid)) = owner {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            }
        }
        let cluster = Cluster {
            settings: settings
                .iter()
                .map(|s| s.replace("{dir}", &dir.display().to_string()))
                .collect(),
            dir,
            port: free_port(),
            server: Mutex::new(None),
            owner,
        };
        cluster.resume();
        cluster
    }

    /// Starts the server on the cluster's port (again, after a stop) and
    /// waits until it accepts connections. Its process gets SIGQUIT (an
    /// immediate shutdown) if the thread that started it ends without
    /// stopping it: the shared cluster is started from a thread that lives
    /// as long as the test process.
    pub fn resume(&self) {
        let mut server = self.server.lock().unwrap();
        assert!(server.is_none(), "the cluster is already running");
        let mut cmd = Command::new(bin_dir().join("postgres"));
        cmd.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            // Throwaway data: no syncing, and room for many services.
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=400"])
            .args(["-c", "shared_buffers=32MB"]);
        for setting in &self.settings {
            cmd.arg("-c").arg(setting);
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(
            std::fs::File::create(self.dir.join(format!("log-{}", self.port)))
                .map(Stdio::from)
                .unwrap_or_else(|_| Stdio::null()),
        );
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
        }
        // SAFETY: prctl is async-signal-safe and touches no memory of ours.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGQUIT);
                Ok(())
            });
        }
        *server = Some(cmd.spawn().expect("start postgres"));
        drop(server);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ok = Command::new(bin_dir().join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            if let Some(child) = self.server.lock().unwrap().as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("postgres exited with {status}; its log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections within {READY_TIMEOUT:?}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join(format!("log-{}", self.port))).unwrap_or_default()
    }

    /// Stops the server (a fast shutdown: sessions are ended, as when a
    /// database is restarted) and waits for it to exit.
    pub fn stop(&self) {
        if let Some(mut child) = self.server.lock().unwrap().take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(30);
            while child.try_wait().ok().flatten().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// Creates database `name` (owned by the `postgres` superuser).
    pub fn create_database(&self, name: &str) {
        let out = Command::new(bin_dir().join("createdb"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                name,
            ])
            .output()
            .expect("run createdb");
        assert!(
            out.status.success(),
            "createdb {name} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A URL for database `name`, with a password (the cluster trusts local
    /// connections and ignores it; it is there so the tests can see it is
    /// never printed).
    pub fn url(&self, name: &str) -> String {
        format!(
            "postgres://postgres:{PASSWORD}@127.0.0.1:{}/{name}",
            self.port
        )
    }

    /// A new database of its own, and its URL.
    pub fn fresh_database(&self) -> String {
        let name = format!("t_{}", uuid::Uuid::now_v7().simple());
        self.create_database(&name);
        self.url(&name)
    }

    /// Runs one SQL statement through `psql` and returns its unaligned output.
    pub fn sql(&self, database_url: &str, sql: &str) -> String {
        let out = Command::new(bin_dir().join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
                database_url,
            ])
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql failed on {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

/// What the test URLs carry as a password; no service output may contain it.
pub const PASSWORD: &str = "pw-never-logged-7f3a";

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The cluster the whole test process shares (with `STORAGE=postgres`),
/// started on first use from a thread that lives as long as the process,
/// so the server goes when the test process does. Folders left by earlier
/// test processes that are gone are removed first.
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(|| {
        remove_stale_clusters();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            tx.send(Cluster::start()).unwrap();
            loop {
                std::thread::park();
            }
        });
        rx.recv()
            .expect("the cluster thread failed to start PostgreSQL")
    })
}

fn remove_stale_clusters() {
    for entry in std::fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("microservice-e2e-pg-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The `DATABASE_URL` of the shared cluster's database for `data_dir`:
/// created on first use; the same one for every service on that folder.
pub fn database_url_for(data_dir: &Path) -> String {
    static BY_DIR: OnceLock<Mutex<HashMap<PathBuf, String>>> = OnceLock::new();
    let mut by_dir = BY_DIR.get_or_init(Default::default).lock().unwrap();
    by_dir
        .entry(data_dir.to_path_buf())
        .or_insert_with(|| shared().fresh_database())
        .clone()
}
