//! A real PostgreSQL 15 for the tests: `initdb` + `pg_ctl` from Debian's
//! packages in a temporary directory, listening on a free loopback port.
//! initdb refuses to run as root, so as root the cluster runs as the
//! `postgres` user (created by the package; `scripts/setup.sh` makes sure).
//! A watchdog stops the cluster when the test binary exits, even on a panic.
//! [`tls_cluster`] is a second one with `ssl = on`, a certificate from a CA
//! made at start by the `openssl` CLI (Debian's PostgreSQL depends on it,
//! through `ssl-cert`), and a pg_hba that refuses connections without TLS.

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
    /// The test CA and server certificate of a TLS cluster.
    pub tls: Option<TlsFiles>,
    _watchdog: Mutex<ChildStdin>,
}

/// How a cluster is started.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClusterOptions {
    /// `ssl = on`, TLS-only pg_hba, a server certificate for `127.0.0.1`.
    pub ssl: bool,
}

/// Certificates of a TLS cluster, made at start.
pub struct TlsFiles {
    /// The CA that signed the server's certificate (PEM).
    pub ca_cert: PathBuf,
    /// A CA that signed nothing the server holds.
    pub other_ca_cert: PathBuf,
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

fn openssl(dir: &Path, args: &[&str]) {
    let mut cmd = Command::new("openssl");
    cmd.args(args).current_dir(dir);
    check(&format!("openssl {}", args.join(" ")), cmd);
}

/// A CA, a second unrelated CA, and a server certificate signed by the
/// first, valid for the IP address 127.0.0.1 only (not the name
/// `localhost`), all EC P-256, made in `dir`.
fn make_certificates(dir: &Path) -> TlsFiles {
    std::fs::create_dir_all(dir).unwrap();
    for ca in ["ca", "other-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "2",
                "-subj",
                &format!("/CN=migrate test {ca}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.crt"),
            ],
        );
    }
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
    );
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.crt",
        ],
    );
    TlsFiles {
        ca_cert: dir.join("ca.crt"),
        other_ca_cert: dir.join("other-ca.crt"),
    }
}

/// The plain cluster (no TLS), shared by the tests of one binary.
pub fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start(ClusterOptions::default()))
}

/// The TLS-only cluster, shared by the tests of one binary.
pub fn tls_cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| Cluster::start(ClusterOptions { ssl: true }))
}

impl Cluster {
    pub fn start(options: ClusterOptions) -> Self {
        let run_as = is_root().then(|| "postgres".to_owned());
        let dir = std::env::temp_dir().join(format!(
            "migrate-pg-{}{}",
            std::process::id(),
            if options.ssl { "-tls" } else { "" }
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        if let Some(user) = &run_as {
            check("chown of the cluster directory", {
                let mut c = Command::new("chown");
                c.arg(format!("{user}:")).arg(&dir);
                c
            });
        }
        let data = dir.join("data");
        let mut initdb = as_cluster_user(run_as.as_deref(), &pg_bin("initdb"));
        initdb.arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]);
        check("initdb", initdb);
        let mut server_options = String::new();
        let tls = options.ssl.then(|| {
            let files = make_certificates(&dir.join("tls"));
            // The key must belong to the server's user and be private to it.
            let key = dir.join("tls/server.key");
            check("chmod of the server key", {
                let mut c = Command::new("chmod");
                c.arg("600").arg(&key);
                c
            });
            if let Some(user) = &run_as {
                check("chown of the certificates", {
                    let mut c = Command::new("chown");
                    c.args(["-R", &format!("{user}:")]).arg(dir.join("tls"));
                    c
                });
            }
            // TCP only with TLS: a connection that works proves TLS was used.
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .unwrap();
            server_options = format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                dir.join("tls/server.crt").display(),
                key.display()
            );
            files
        });
        let port = free_port();
        let mut start = as_cluster_user(run_as.as_deref(), &pg_bin("pg_ctl"));
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("postgres.log"))
            .arg("-o")
            .arg(format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off{server_options}",
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
            tls,
            _watchdog: Mutex::new(stdin),
        };
        // Roles are cluster-wide: the CLI's role is created once, here.
        cluster.psql("postgres", "CREATE ROLE migrator LOGIN");
        cluster
    }

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

    /// A new database holding the Supabase schema and a generated corpus of
    /// `documents` documents over 100 companies (`companies/company-N/doc-I.md`,
    /// about 2.6 KB of Markdown each: a heading and three sections, so three
    /// chunks; two tags; the number I occurs in document I only). Chunks carry
    /// no embedding, so the source's `hybrid_search` ranks by full text alone.
    pub fn generated_database(&self, tag: &str, documents: u32) -> String {
        let name = self.create_database(tag);
        let schema = FIXTURE_SCHEMA.replace("CREATE ROLE migrator LOGIN;", "");
        self.psql(&name, &schema);
        self.psql(
            &name,
            &format!(
                "INSERT INTO companies (id, slug, name) SELECT md5('c' || i)::uuid, 'company-' || i, 'Company ' || i \
                 FROM generate_series(1, 100) i;
                 INSERT INTO documents (id, company_id, path, title, content, tags)
                 SELECT md5('d' || i)::uuid, md5('c' || (1 + i % 100))::uuid,
                        'companies/company-' || (1 + i % 100) || '/doc-' || i || '.md', 'Doc ' || i,
                        '# Doc ' || i || E'\\n\\n' || repeat('Some words about topic ' || i || '. ', 40)
                          || E'\\n\\n## Part two\\n\\n' || repeat('More text ' || i || '. ', 60)
                          || E'\\n\\n## Part three\\n\\n' || repeat('End ' || i || '. ', 40),
                        ARRAY['Tag ' || (i % 7), 'tag']
                 FROM generate_series(1, {documents}) i;
                 INSERT INTO chunks (document_id, chunk_index, content, tags)
                 SELECT d.id, p.n - 1, p.part, d.tags FROM documents d,
                        LATERAL regexp_split_to_table(d.content, E'\\n(?=## )') WITH ORDINALITY AS p(part, n);"
            ),
        );
        name
    }

    /// URL connecting as `user` (no password: trust authentication).
    pub fn url(&self, user: &str, database: &str) -> String {
        self.url_via("127.0.0.1", user, database)
    }

    /// URL connecting to the server by `host` (`localhost`: a name the TLS
    /// cluster's certificate does not list).
    pub fn url_via(&self, host: &str, user: &str, database: &str) -> String {
        format!("postgres://{user}@{host}:{}/{database}", self.port)
    }

    /// The TLS cluster's certificates.
    pub fn tls(&self) -> &TlsFiles {
        self.tls.as_ref().expect("a cluster started with ssl: true")
    }
}
