//! A real PostgreSQL 15 for the tests: `initdb` + `pg_ctl` from Debian's
//! packages in a temporary directory, listening on a free loopback port.
//! initdb refuses to run as root, so as root the cluster runs as the
//! `postgres` user (created by the package; `scripts/setup.sh` makes sure).
//! A watchdog stops the cluster when the test binary exits, even on a panic.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use super::free_port;

const FIXTURE_SCHEMA: &str = include_str!("../fixtures/supabase_schema.sql");
const FIXTURE_DATA: &str = include_str!("../fixtures/supabase_data.sql");

pub struct Cluster {
    pub port: u16,
    dir: PathBuf,
    run_as: Option<String>,
    _watchdog: Mutex<ChildStdin>,
}

fn pg_bin(name: &str) -> PathBuf {
    let dir = std::env::var("MIGRATE_PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from("/usr/lib/postgresql/15/bin"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: install PostgreSQL 15 (`bash scripts/setup.sh`) or set MIGRATE_PG_BIN",
        path.display()
    );
    path
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `program args…`, as the cluster's user when running as root.
fn as_cluster_user(run_as: Option<&str>, program: &Path) -> Command {
    match run_as {
        Some(user) => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", user, "--"]).arg(program);
            cmd
        }
        None => Command::new(program),
    }
}

fn check(what: &str, mut cmd: Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        let run_as = is_root().then(|| "postgres".to_owned());
        let dir = std::env::temp_dir().join(format!("migrate-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(user) = &run_as {
            check(
                "chown of the cluster directory",
                {
                    let mut c = Command::new("chown");
                    c.arg(format!("{user}:")).arg(&dir);
                    c
                },
            );
        }
        let data = dir.join("data");
        let mut initdb = as_cluster_user(run_as.as_deref(), &pg_bin("initdb"));
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"]);
        check("initdb", initdb);
        let port = free_port();
        let mut start = as_cluster_user(run_as.as_deref(), &pg_bin("pg_ctl"));
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("postgres.log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
                dir.display()
            ))
            .args(["-w", "start"]);
        check("pg_ctl start", start);
        // The watchdog is never waited for: it outlives every test and
        // stops the cluster when this process's end closes its stdin.
        let stop = format!(
            "{}{} -D {} -m immediate stop >/dev/null 2>&1; rm -rf {}",
            run_as
                .as_deref()
                .map(|u| format!("runuser -u {u} -- "))
                .unwrap_or_default(),
            pg_bin("pg_ctl").display(),
            data.display(),
            dir.display()
        );
        #[allow(clippy::zombie_processes)]
        let mut watchdog = Command::new("sh")
            .arg("-c")
            .arg(format!("read _ignored; {stop}"))
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = watchdog.stdin.take().unwrap();
        let cluster = Cluster {
            port,
            dir,
            run_as,
            _watchdog: Mutex::new(stdin),
        };
        // Roles are cluster-wide: the CLI's role is created once, here.
        cluster.psql("postgres", "CREATE ROLE migrator LOGIN");
        cluster
    })
}

impl Cluster {
    /// Runs SQL as the superuser in `database`, stopping at the first error.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let mut child = as_cluster_user(self.run_as.as_deref(), &pg_bin("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &self.port.to_string(), "-d", database])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .current_dir(&self.dir)
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(sql.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "psql failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// A new empty database; returns its name.
    pub fn create_database(&self, tag: &str) -> String {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!("{tag}_{}", COUNTER.fetch_add(1, Ordering::SeqCst));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        name
    }

    /// A new database holding the Supabase fixture schema and data.
    pub fn fixture_database(&self, tag: &str) -> String {
        let name = self.create_database(tag);
        let schema = FIXTURE_SCHEMA.replace("CREATE ROLE migrator LOGIN;", "");
        self.psql(&name, &schema);
        self.psql(&name, FIXTURE_DATA);
        name
    }

    /// URL connecting as `user` (no password: trust authentication).
    pub fn url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }
}
