//! A real PostgreSQL server on loopback for the `PostgresRecords` tests.
//!
//! [`TestPostgres::start_fresh`] runs `initdb` into a scratch directory and then
//! `postgres` itself on `127.0.0.1` and a free port, with trust
//! authentication, no Unix socket and no fsync, and creates the schema of
//! `shell/sql/runtime_records.sql`. The binaries are looked up on `PATH`,
//! then under `/usr/lib/postgresql/<version>/bin` (Debian's `postgresql`
//! package, newest version first); without them the test fails saying so.
//!
//! [`TestPostgres::start_fresh_with_tls`] starts it with `ssl=on` and a
//! given certificate (the key file 0600 and owned by the server's user, as
//! PostgreSQL demands); [`TestPostgres::replace_certificate`] restarts it
//! with another. Plain connections are still accepted then.
//!
//! PostgreSQL refuses to run as root. When the tests run as root (as in CI),
//! `initdb` and `postgres` run as the `postgres` system user (which Debian's
//! package creates): the data directory is chowned to it and its parents
//! are world-traversable.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use healthprobe_shell::adapters::PostgresRecords;
use healthprobe_shell::driver::ports::RuntimeRecord;
use postgres::{Client, NoTls};

use crate::free_port;
use crate::records::ScratchDir;
use crate::servers;
use crate::tls::CertifiedKey;
use crate::wait_until;

/// How long a server may take to start or stop before the test fails.
const SERVER_PATIENCE: Duration = Duration::from_secs(30);

/// A PostgreSQL server of its own on `127.0.0.1`; stopped and its directory
/// removed on drop.
#[derive(Debug)]
pub struct TestPostgres {
    dir: ScratchDir,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
    /// `ssl=on` with `server.crt` / `server.key` of the scratch directory.
    tls: bool,
    /// More `-c name=value` settings for the server.
    settings: Vec<String>,
    server: Option<Child>,
}

impl TestPostgres {
    /// A fresh cluster, started, with an empty `runtime_records` table.
    ///
    /// Panics with the reason (binaries missing, `initdb` or the server
    /// failing, with its log) if it cannot.
    pub fn start_fresh() -> Self {
        Self::start_with(None, &[])
    }

    /// [`TestPostgres::start_fresh`] with `ssl=on`, presenting `cert`.
    pub fn start_fresh_with_tls(cert: &CertifiedKey) -> Self {
        Self::start_with(Some(cert), &[])
    }

    /// [`TestPostgres::start_fresh_with_tls`] with more server settings
    /// (`name=value`, as `postgres -c` takes them).
    pub fn start_fresh_with_tls_settings(cert: &CertifiedKey, settings: &[&str]) -> Self {
        Self::start_with(Some(cert), settings)
    }

    fn start_with(cert: Option<&CertifiedKey>, settings: &[&str]) -> Self {
        let bin = servers::postgres_bin_dir().unwrap_or_else(|| {
            panic!(
                "PostgreSQL's initdb and postgres were not found on PATH nor under \
                 /usr/lib/postgresql/*/bin: install Debian's `postgresql` package \
                 (apt-get install postgresql)"
            )
        });
        let run_as = if effective_uid() == 0 {
            Some(servers::system_user("postgres").unwrap_or_else(|| {
                panic!(
                    "running as root and there is no `postgres` user to run PostgreSQL as \
                     (PostgreSQL refuses root): install Debian's `postgresql` package, \
                     which creates it"
                )
            }))
        } else {
            None
        };
        let dir = ScratchDir::new("postgres").expect("scratch dir for PostgreSQL");
        let data = dir.join("data");
        let prepared = (|| {
            // The server user must traverse to its data directory.
            fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
            fs::create_dir(&data)?;
            fs::set_permissions(&data, fs::Permissions::from_mode(0o700))?;
            if let Some((uid, gid)) = run_as {
                std::os::unix::fs::chown(&data, Some(uid), Some(gid))?;
            }
            Ok::<_, std::io::Error>(())
        })();
        if let Err(err) = prepared {
            panic!("cannot prepare {}: {err}", data.display());
        }
        let mut postgres = Self {
            port: free_port(),
            dir,
            data,
            bin,
            run_as,
            tls: false,
            settings: settings
                .iter()
                .map(|setting| (*setting).to_owned())
                .collect(),
            server: None,
        };
        if let Some(cert) = cert {
            postgres.write_certificate(cert);
            postgres.tls = true;
        }
        postgres.initdb();
        postgres.start();
        postgres.execute(PostgresRecords::SCHEMA_SQL);
        postgres
    }

    /// The URL of its database: `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Its port on 127.0.0.1 (the same across [`TestPostgres::stop`] and
    /// [`TestPostgres::start`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stop the server, present `cert` from now on (with `ssl=on`), and
    /// start it again on the same port and data.
    pub fn replace_certificate(&mut self, cert: &CertifiedKey) {
        self.stop();
        self.write_certificate(cert);
        self.tls = true;
        self.start();
    }

    fn write_certificate(&self, cert: &CertifiedKey) {
        let (cert_path, key_path) = (self.dir.join("server.crt"), self.dir.join("server.key"));
        let _ = fs::remove_file(&key_path);
        let written = (|| {
            cert.write(&cert_path, &key_path)?;
            if let Some((uid, gid)) = self.run_as {
                std::os::unix::fs::chown(&key_path, Some(uid), Some(gid))?;
            }
            Ok::<_, std::io::Error>(())
        })();
        if let Err(err) = written {
            panic!(
                "cannot write the server certificate to {}: {err}",
                self.dir.path().display()
            );
        }
    }

    /// Whether the server is running (started and not stopped).
    pub fn is_running(&mut self) -> bool {
        self.server
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// A new client connection. Panics if the server does not answer.
    pub fn client(&self) -> Client {
        self.try_client()
            .unwrap_or_else(|err| panic!("cannot connect to {}: {err}", self.url()))
    }

    fn try_client(&self) -> Result<Client, postgres::Error> {
        let mut config: postgres::Config = self.url().parse()?;
        config.connect_timeout(Duration::from_secs(2));
        config.connect(NoTls)
    }

    /// Run `sql` (one or more statements). Panics on error.
    pub fn execute(&self, sql: &str) {
        self.client()
            .batch_execute(sql)
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
    }

    /// Insert `record` (or replace the row of its game id).
    pub fn upsert(&self, record: &RuntimeRecord) {
        self.upsert_row(
            &record.game_id,
            Some(&record.current_container_id),
            Some(&record.engine_endpoint),
            Some(&record.status),
        );
    }

    /// Insert or replace a row column by column; `None` is NULL.
    pub fn upsert_row(
        &self,
        game_id: &str,
        container_id: Option<&str>,
        endpoint: Option<&str>,
        status: Option<&str>,
    ) {
        self.client()
            .execute(
                "INSERT INTO runtime_records \
                 (game_id, current_container_id, engine_endpoint, status, updated_at) \
                 VALUES ($1, $2, $3, $4, now()) \
                 ON CONFLICT (game_id) DO UPDATE SET \
                 current_container_id = EXCLUDED.current_container_id, \
                 engine_endpoint = EXCLUDED.engine_endpoint, \
                 status = EXCLUDED.status, updated_at = now()",
                &[&game_id, &container_id, &endpoint, &status],
            )
            .unwrap_or_else(|err| panic!("upsert {game_id}: {err}"));
    }

    /// Stop the server (fast shutdown: clients are disconnected) and wait
    /// until it has exited. The data and the port stay for
    /// [`TestPostgres::start`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.server.take() else {
            return;
        };
        signal(&child, libc::SIGINT);
        if !wait_until(SERVER_PATIENCE, || !matches!(child.try_wait(), Ok(None))) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "PostgreSQL did not stop within {SERVER_PATIENCE:?}; killed. Log:\n{}",
                self.log()
            );
        }
    }

    /// Start the stopped server again, on the same port and data, and wait
    /// until it accepts connections. Does nothing if it is running.
    pub fn start(&mut self) {
        if self.server.is_some() {
            return;
        }
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.dir.join("postgres.log"))
            .expect("PostgreSQL log file");
        let mut command = self.command("postgres");
        command
            .arg("-D")
            .arg(&self.data)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", "unix_socket_directories="])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=20"]);
        if self.tls {
            command
                .args(["-c", "ssl=on"])
                .arg("-c")
                .arg(format!(
                    "ssl_cert_file={}",
                    self.dir.join("server.crt").display()
                ))
                .arg("-c")
                .arg(format!(
                    "ssl_key_file={}",
                    self.dir.join("server.key").display()
                ));
        }
        for setting in &self.settings {
            command.arg("-c").arg(setting);
        }
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("PostgreSQL log file"))
            .stderr(log);
        let mut child = command
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", self.bin.display()));
        let started = Instant::now();
        let ready = wait_until(SERVER_PATIENCE, || {
            !matches!(child.try_wait(), Ok(None)) || self.try_client().is_ok()
        });
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "PostgreSQL exited ({status}) while starting on 127.0.0.1:{}. Log:\n{}",
                self.port,
                self.log()
            );
        }
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "PostgreSQL did not accept connections within {:?}. Log:\n{}",
                started.elapsed(),
                self.log()
            );
        }
        self.server = Some(child);
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    fn initdb(&self) {
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(&self.data)
            .args(["-U", "postgres", "--auth=trust", "--encoding=UTF8"])
            .args(["--no-locale", "--no-sync"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| panic!("cannot run initdb: {err}"));
        if !output.status.success() {
            panic!(
                "initdb failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }

    /// `program` from the binaries' directory, as the server user, in the scratch dir.
    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command.current_dir(self.dir.path()).env_remove("PGDATA");
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid);
        }
        command
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            // Immediate shutdown: the data is thrown away with the directory.
            signal(&child, libc::SIGQUIT);
            if !wait_until(SERVER_PATIENCE, || !matches!(child.try_wait(), Ok(None))) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

#[allow(unsafe_code)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid(2) takes nothing, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

fn signal(child: &Child, signal: libc::c_int) {
    // A server that already exited needs no signal.
    let _ = crate::process::signal_child(child, signal);
}
