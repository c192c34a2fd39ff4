//! Recognising a connection string that points at a transaction-mode pooler
//! (Supabase's Supavisor or dedicated PgBouncer on port 6543), which migrate
//! cannot use. Decides from the URL alone; never connects.

use tokio_postgres::config::Host;
use tokio_postgres::Config;

/// The port of Supabase's poolers in transaction mode, on the shared pooler
/// (`aws-0-<region>.pooler.supabase.com`) and on a project's dedicated one
/// (`db.<project-ref>.supabase.co`); port 5432 on the same hosts is the
/// session pooler and the direct connection. Transaction mode "does not
/// support prepared statements"
/// (https://supabase.com/docs/guides/database/connecting-to-postgres), and
/// every query tokio-postgres sends with parameters (`query`, `query_one`,
/// `query_raw`) prepares a named statement first.
const SUPABASE_TRANSACTION_POOLER_PORT: u16 = 6543;

/// Domains of Supabase's hosted databases and poolers.
const SUPABASE_DOMAINS: [&str; 2] = [".supabase.com", ".supabase.co"];

/// Why a connection string names a transaction pooler, or `None` when
/// nothing says it does. A host outside Supabase's domains on port 6543 is
/// not refused: only its name would say it is a pooler (a self-hosted
/// Postgres may listen there), and `pgbouncer=true` is the way to say so.
pub fn transaction_pooler(config: &Config, pgbouncer: Option<&str>) -> Option<String> {
    // Prisma's flag, which Supabase's strings for the transaction pooler carry.
    if pgbouncer.is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Some(
            "the URL says pgbouncer=true, which marks a transaction pooler \
             (drop it if this server is not one)"
                .to_owned(),
        );
    }
    let ports = config.get_ports();
    config.get_hosts().iter().enumerate().find_map(|(i, host)| {
        let Host::Tcp(name) = host else {
            return None;
        };
        // One port for every host, or one per host, as libpq reads them.
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let supabase = SUPABASE_DOMAINS.iter().any(|d| name.ends_with(d));
        (supabase && port == SUPABASE_TRANSACTION_POOLER_PORT)
            .then(|| format!("port {port} of {name} is Supabase's transaction pooler"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn transaction_poolers_are_recognised_from_host_port_and_flag() {
        // (what tokio-postgres reads, pgbouncer=, refused)
        let cases: &[(&str, Option<&str>, bool)] = &[
            // Supavisor, shared pooler: transaction mode, then session mode.
            (
                "postgres://postgres.ref:pw@aws-0-eu-central-1.pooler.supabase.com:6543/postgres",
                None,
                true,
            ),
            (
                "postgres://postgres.ref:pw@aws-0-eu-central-1.pooler.supabase.com:5432/postgres",
                None,
                false,
            ),
            (
                "postgres://postgres.ref:pw@aws-0-eu-central-1.pooler.supabase.com/postgres",
                None,
                false,
            ),
            // A project's dedicated pooler, then its direct connection.
            (
                "postgres://postgres:pw@db.ref.supabase.co:6543/postgres",
                None,
                true,
            ),
            (
                "postgres://postgres:pw@db.ref.supabase.co:5432/postgres",
                None,
                false,
            ),
            // Names compare without case or a final dot.
            (
                "postgres://u@AWS-0-US-EAST-1.Pooler.Supabase.COM.:6543/postgres",
                None,
                true,
            ),
            // key=value strings, and the port given once for several hosts.
            (
                "host=aws-0-eu-west-1.pooler.supabase.com port=6543 user=u",
                None,
                true,
            ),
            (
                "host=replica.example.org,db.ref.supabase.co port=6543 user=u",
                None,
                true,
            ),
            (
                "host=db.ref.supabase.co,replica.example.org port=5432,6543 user=u",
                None,
                false,
            ),
            // Port 6543 elsewhere says nothing; a look-alike domain is not Supabase's.
            ("postgres://u@127.0.0.1:6543/db", None, false),
            ("postgres://u@db.example.org:6543/db", None, false),
            ("postgres://u@notsupabase.co:6543/db", None, false),
            // Prisma's flag names a transaction pooler wherever it is.
            ("postgres://u@127.0.0.1:6432/db", Some("true"), true),
            ("postgres://u@127.0.0.1:6432/db", Some("TRUE"), true),
            ("postgres://u@127.0.0.1:6432/db", Some("false"), false),
            (
                "postgres://u@db.ref.supabase.co:6543/postgres",
                Some("false"),
                true,
            ),
            // A Unix socket is no pooler host.
            ("host=/var/run/postgresql port=6543 user=u", None, false),
        ];
        for (url, pgbouncer, refused) in cases {
            let config = Config::from_str(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            let reason = transaction_pooler(&config, *pgbouncer);
            assert_eq!(
                reason.is_some(),
                *refused,
                "{url} {pgbouncer:?}: {reason:?}"
            );
        }
    }

    #[test]
    fn the_reason_names_host_and_port_or_the_flag() {
        let config =
            Config::from_str("postgres://u:secret@aws-0-x.pooler.supabase.com:6543/postgres")
                .unwrap();
        let reason = transaction_pooler(&config, None).unwrap();
        assert!(
            reason.contains("port 6543 of aws-0-x.pooler.supabase.com")
                && !reason.contains("secret"),
            "{reason}"
        );
        let config = Config::from_str("postgres://u@h/db").unwrap();
        assert!(transaction_pooler(&config, Some("true"))
            .unwrap()
            .contains("pgbouncer=true"));
    }
}
