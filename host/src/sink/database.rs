//! Where PostgreSQL is and how long masq waits for it: every connection and every request of
//! every command goes through `Database`, so a silent server always ends in a message.

use anyhow::{anyhow, bail};
use std::time::Duration;
use tokio_postgres::{Client, NoTls};

/// Where PostgreSQL is and how long masq waits for it. A server that accepts connections but
/// never answers must cost a log line after these times, never a silent hang.
#[derive(Clone)]
pub struct Database {
    url: String,
    config: tokio_postgres::Config,
    /// Longest a connection (TCP, TLS-less startup, authentication) may take.
    pub connect_timeout: Duration,
    /// Longest one request may go unanswered: a query, or the whole of a batch's transaction.
    pub timeout: Duration,
}

impl std::fmt::Debug for Database {
    // Never the URL: it may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Database({})", describe(&self.config))
    }
}

impl Database {
    /// Parses the connection string; an error says what a good one looks like.
    pub fn new(
        url: &str,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> anyhow::Result<Database> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| anyhow!("DATABASE_URL is not a PostgreSQL connection string ({e}); e.g. postgres://user@localhost:5432/app"))?;
        config.connect_timeout(connect_timeout);
        // A peer that vanishes without closing the connection is noticed by the kernel too.
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        Ok(Database {
            url: url.to_string(),
            config,
            connect_timeout,
            timeout,
        })
    }

    /// With the default timeouts (10 s to connect, 30 s per request).
    pub fn with_defaults(url: &str) -> anyhow::Result<Database> {
        Database::new(url, Duration::from_secs(10), Duration::from_secs(30))
    }

    /// `user@host:port/db`, for messages: no password.
    pub fn describe(&self) -> String {
        describe(&self.config)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Connects, with an error that says where and what to do, never with the password.
    pub async fn connect(&self) -> anyhow::Result<Client> {
        let connecting = self.config.connect(NoTls);
        let (client, connection) = match tokio::time::timeout(self.connect_timeout, connecting)
            .await
        {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => bail!(
                "cannot reach PostgreSQL at {} ({}): start it with `just services`, or check DATABASE_URL",
                self.describe(),
                e.as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_else(|| e.to_string())
            ),
            Err(_) => bail!(
                "PostgreSQL at {} did not answer within {} s (--pg-connect-timeout): check that the \
                 server is up and answering at that address, and DATABASE_URL",
                self.describe(),
                self.connect_timeout.as_secs_f64()
            ),
        };
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection closed");
            }
        });
        Ok(client)
    }

    /// Runs `request` on `what`, failing after `timeout` with a message naming both.
    pub async fn answer<T, E: Into<anyhow::Error>>(
        &self,
        what: &str,
        request: impl std::future::Future<Output = Result<T, E>>,
    ) -> anyhow::Result<T> {
        match tokio::time::timeout(self.timeout, request).await {
            Ok(result) => result.map_err(Into::into),
            Err(_) => bail!(
                "PostgreSQL at {} did not answer within {} s (--pg-timeout) while {what}: check the \
                 server's load and locks, and the network",
                self.describe(),
                self.timeout.as_secs_f64()
            ),
        }
    }
}

/// `user@host:port/db`, for messages: no password.
pub fn describe(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(h) => h.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{}@{host}:{port}/{}",
        config.get_user().unwrap_or("(default user)"),
        config.get_dbname().unwrap_or("(default database)")
    )
}
