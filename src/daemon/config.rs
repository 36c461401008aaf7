//! The daemon's configuration: a TOML file parsed into a validated [`Config`].
//!
//! Raw TOML ([`RawConfig`]) is parsed at the edge and turned into [`Config`], whose values
//! are already checked (addresses parse, durations are positive, limits are in range), so
//! the server never re-checks them. [`EXAMPLE`] is the commented default configuration that
//! `djaudit config example` prints; a test keeps it equal to [`Config::default`].
//!
//! This module reads no file and opens no socket; the caller does.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The commented default configuration (`djaudit config example`).
pub const EXAMPLE: &str = r#"# djaudit serve configuration (TOML). Every key is optional; these are the defaults.

# Address and port to listen on. Loopback by default: to serve other hosts, put a TLS
# reverse proxy in front of djaudit rather than listening on a public address.
listen = "127.0.0.1:8700"

# Data directory of the ledger. Defaults to `djaudit --data DIR` ($DJAUDIT_DATA, else
# ./djaudit-data). A relative path is relative to the working directory.
# data_dir = "/var/lib/djaudit"

# Directory of the access policy (schema.cedarschema and *.cedar). Defaults to the
# policies embedded in the binary.
# policy_dir = "/etc/djaudit/policies"

# Largest request body accepted, in bytes. A larger request is refused with 413 from its
# Content-Length header, before its body is read.
body_limit = 1048576

# Longest time one request may take, waiting for the writer included ("30s", "2m").
request_timeout = "30s"

# Requests served at the same time; further requests wait for a free slot.
max_concurrent_requests = 512

# How long a bearer token found live is trusted without reading the token table again, so
# that a busy client's requests do not each read it. A token revoked with `djaudit token
# revoke` is refused at the latest this long after; "off" reads the table on every
# request. At most "60s".
token_cache = "1s"

# How long shutdown (SIGTERM, SIGINT) waits for requests in flight before it stops them.
shutdown_timeout = "30s"

# Log format on stderr: "human" or "json". Logs name method, path, status, latency and
# user, never request bodies or record values. RUST_LOG filters them (default "info":
# refused and failed requests; "info,djaudit::daemon::api=debug" adds every success).
log_format = "human"

[writer]
# Most write requests committed together in one transaction (one fsync).
max_batch = 1024
# Write requests queued for the writer before further requests wait for room.
queue = 8192

# Scheduled scans. `every` is a duration ("90s", "15m", "1h", "1d") or "off"; each run
# records its result and shows it in /metrics and /v1/health.

[schedule.verify]
# Verify the whole ledger and record a `scan.verify` entry.
every = "1h"

[schedule.checkpoint]
# Sign and store a checkpoint of the current tree (skipped when nothing was appended).
every = "5m"

[schedule.checks]
# Run the consistency checks and record a `scan.checks` entry.
every = "off"

[schedule.reconcile]
# Compare every snapshot file in `dir` (named `<kind>.csv` or `<kind>.jsonl`, e.g.
# `members.csv`) with the projection, record a `scan.reconcile` entry per file and move
# the file to `dir/done/`. Rename finished files into the folder; never write them there.
every = "off"
# dir = "/var/lib/djaudit/drop"
"#;

/// Longest `token_cache`: how late a revocation may take effect.
const MAX_TOKEN_CACHE: Duration = Duration::from_secs(60);

/// Errors of reading a configuration.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("invalid configuration: {0}")]
    Toml(String),
    #[error("invalid `{key}`: {why}")]
    Value { key: &'static str, why: String },
}

fn bad(key: &'static str, why: impl Into<String>) -> ConfigError {
    ConfigError::Value {
        key,
        why: why.into(),
    }
}

/// The configuration file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub policy_dir: Option<PathBuf>,
    pub body_limit: Option<u64>,
    pub request_timeout: Option<String>,
    pub max_concurrent_requests: Option<usize>,
    pub shutdown_timeout: Option<String>,
    pub token_cache: Option<String>,
    pub log_format: Option<String>,
    #[serde(default)]
    pub writer: RawWriter,
    #[serde(default)]
    pub schedule: RawSchedules,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWriter {
    pub max_batch: Option<usize>,
    pub queue: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedules {
    pub verify: Option<RawSchedule>,
    pub checkpoint: Option<RawSchedule>,
    pub checks: Option<RawSchedule>,
    pub reconcile: Option<RawSchedule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    pub every: Option<String>,
    pub dir: Option<PathBuf>,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

/// Limits of the single writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterConfig {
    pub max_batch: usize,
    pub queue: usize,
}

/// When the scans run (`None`: never).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedules {
    pub verify: Option<Duration>,
    pub checkpoint: Option<Duration>,
    pub checks: Option<Duration>,
    /// Interval and drop folder of the reconcile scan.
    pub reconcile: Option<(Duration, PathBuf)>,
}

/// A validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub listen: SocketAddr,
    /// `None`: the CLI's `--data`.
    pub data_dir: Option<PathBuf>,
    pub policy_dir: Option<PathBuf>,
    pub body_limit: u64,
    pub request_timeout: Duration,
    pub max_concurrent_requests: usize,
    pub shutdown_timeout: Duration,
    /// How long a token found live is trusted (`None`: read on every request).
    pub token_cache: Option<Duration>,
    pub log_format: LogFormat,
    pub writer: WriterConfig,
    pub schedule: Schedules,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8700)),
            data_dir: None,
            policy_dir: None,
            body_limit: 1 << 20,
            request_timeout: Duration::from_secs(30),
            max_concurrent_requests: 512,
            shutdown_timeout: Duration::from_secs(30),
            token_cache: Some(Duration::from_secs(1)),
            log_format: LogFormat::Human,
            writer: WriterConfig {
                max_batch: 1024,
                queue: 8192,
            },
            schedule: Schedules {
                verify: Some(Duration::from_secs(3600)),
                checkpoint: Some(Duration::from_secs(300)),
                checks: None,
                reconcile: None,
            },
        }
    }
}

impl Config {
    /// Parses and validates a configuration file's text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            // The TOML error is multi-line with a source excerpt; keep its first line.
            let msg = e.message().lines().next().unwrap_or_default().to_owned();
            let at = e
                .span()
                .map(|s| format!(" at byte {}", s.start))
                .unwrap_or_default();
            ConfigError::Toml(format!("{msg}{at}"))
        })?;
        raw.validate()
    }

    /// The data directory: the configured one, else `cli_data`.
    pub fn data_dir_or<'a>(&'a self, cli_data: &'a Path) -> &'a Path {
        self.data_dir.as_deref().unwrap_or(cli_data)
    }
}

impl RawConfig {
    /// Checks every value and fills in defaults.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let d = Config::default();
        let listen = match self.listen {
            None => d.listen,
            Some(s) => s.parse::<SocketAddr>().map_err(|_| {
                bad(
                    "listen",
                    format!("`{s}` is not an address such as `127.0.0.1:8700`"),
                )
            })?,
        };
        let body_limit = self.body_limit.unwrap_or(d.body_limit);
        if body_limit == 0 || body_limit > 1 << 30 {
            return Err(bad("body_limit", "expected 1 to 1073741824 bytes"));
        }
        let request_timeout =
            opt_duration("request_timeout", self.request_timeout)?.unwrap_or(d.request_timeout);
        let shutdown_timeout =
            opt_duration("shutdown_timeout", self.shutdown_timeout)?.unwrap_or(d.shutdown_timeout);
        let token_cache = off_or_duration("token_cache", self.token_cache.clone(), d.token_cache)?;
        if token_cache.is_some_and(|t| t > MAX_TOKEN_CACHE) {
            let given = self.token_cache.unwrap_or_default();
            return Err(bad("token_cache", format!("`{given}`: at most 60s")));
        }
        let max_concurrent_requests = self
            .max_concurrent_requests
            .unwrap_or(d.max_concurrent_requests);
        if max_concurrent_requests == 0 || max_concurrent_requests > 1 << 20 {
            return Err(bad("max_concurrent_requests", "expected 1 to 1048576"));
        }
        let log_format = match self.log_format.as_deref() {
            None | Some("human") => LogFormat::Human,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(bad(
                    "log_format",
                    format!("`{other}`: expected `human` or `json`"),
                ))
            }
        };
        let max_batch = self.writer.max_batch.unwrap_or(d.writer.max_batch);
        if max_batch == 0 || max_batch > 100_000 {
            return Err(bad("writer.max_batch", "expected 1 to 100000"));
        }
        let queue = self.writer.queue.unwrap_or(d.writer.queue);
        if queue == 0 || queue > 1 << 20 {
            return Err(bad("writer.queue", "expected 1 to 1048576"));
        }
        let s = self.schedule;
        let schedule = Schedules {
            verify: schedule("schedule.verify.every", s.verify, d.schedule.verify)?,
            checkpoint: schedule(
                "schedule.checkpoint.every",
                s.checkpoint,
                d.schedule.checkpoint,
            )?,
            checks: schedule("schedule.checks.every", s.checks, d.schedule.checks)?,
            reconcile: match s.reconcile {
                None => None,
                Some(r) => {
                    let dir = r.dir.clone();
                    match (schedule("schedule.reconcile.every", Some(r), None)?, dir) {
                        (None, _) => None,
                        (Some(every), Some(dir)) => Some((every, dir)),
                        (Some(_), None) => {
                            return Err(bad(
                                "schedule.reconcile.dir",
                                "a reconcile schedule needs the drop folder `dir`",
                            ))
                        }
                    }
                }
            },
        };
        Ok(Config {
            listen,
            data_dir: self.data_dir,
            policy_dir: self.policy_dir,
            body_limit,
            request_timeout,
            max_concurrent_requests,
            shutdown_timeout,
            token_cache,
            log_format,
            writer: WriterConfig { max_batch, queue },
            schedule,
        })
    }
}

fn opt_duration(key: &'static str, v: Option<String>) -> Result<Option<Duration>, ConfigError> {
    v.map(|s| parse_duration(&s).map_err(|why| bad(key, why)))
        .transpose()
}

fn schedule(
    key: &'static str,
    raw: Option<RawSchedule>,
    default: Option<Duration>,
) -> Result<Option<Duration>, ConfigError> {
    off_or_duration(key, raw.and_then(|r| r.every), default)
}

/// A duration or `"off"` (`None`); `default` when not given.
fn off_or_duration(
    key: &'static str,
    v: Option<String>,
    default: Option<Duration>,
) -> Result<Option<Duration>, ConfigError> {
    match v.as_deref() {
        None => Ok(default),
        Some("off") => Ok(None),
        Some(s) => parse_duration(s).map(Some).map_err(|why| bad(key, why)),
    }
}

/// Parses `250ms`, `30s`, `5m`, `1h`, `1d` (one number, one unit, positive).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as `30s`, `5m`, `1h`"))?;
    let ms = match unit {
        "ms" => Some(n),
        "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => return Err(format!("`{s}` is not a duration such as `30s`, `5m`, `1h`")),
    }
    .ok_or_else(|| format!("`{s}` is too long"))?;
    if ms == 0 {
        return Err(format!("`{s}` must be longer than zero"));
    }
    Ok(Duration::from_millis(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses_to_the_defaults() {
        assert_eq!(Config::from_toml(EXAMPLE), Ok(Config::default()));
        assert_eq!(Config::from_toml(""), Ok(Config::default()));
    }

    #[test]
    fn values_override_defaults() {
        let c = Config::from_toml(
            r#"
listen = "127.0.0.1:0"
data_dir = "/tmp/x"
log_format = "json"
request_timeout = "250ms"
token_cache = "off"
[writer]
max_batch = 8
[schedule.verify]
every = "off"
[schedule.checkpoint]
every = "2s"
[schedule.reconcile]
every = "1m"
dir = "drop"
"#,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.data_dir_or(Path::new("other")), Path::new("/tmp/x"));
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.request_timeout, Duration::from_millis(250));
        assert_eq!(c.token_cache, None);
        let t = Config::from_toml("token_cache = \"250ms\"").unwrap();
        assert_eq!(t.token_cache, Some(Duration::from_millis(250)));
        assert_eq!(c.writer.max_batch, 8);
        assert_eq!(c.writer.queue, 8192);
        assert_eq!(c.schedule.verify, None);
        assert_eq!(c.schedule.checkpoint, Some(Duration::from_secs(2)));
        assert_eq!(
            c.schedule.reconcile,
            Some((Duration::from_secs(60), PathBuf::from("drop")))
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("5ms"), Ok(Duration::from_millis(5)));
        for bad in [
            "",
            "s",
            "10",
            "1.5h",
            "-1s",
            "0s",
            "1w",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn fail_unknown_keys_and_bad_values() {
        let err = Config::from_toml("lisen = \"x\"").unwrap_err();
        assert!(err.to_string().contains("unknown field `lisen`"), "{err}");
        let err = Config::from_toml("listen = \"localhost\"").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid `listen`: `localhost` is not an address such as `127.0.0.1:8700`"
        );
        let err = Config::from_toml("log_format = \"xml\"").unwrap_err();
        assert!(err.to_string().starts_with("invalid `log_format`"), "{err}");
        let err = Config::from_toml("body_limit = 0").unwrap_err();
        assert!(err.to_string().starts_with("invalid `body_limit`"), "{err}");
        for t in ["61s", "2m", "0s", "always"] {
            let err = Config::from_toml(&format!("token_cache = \"{t}\"")).unwrap_err();
            assert!(
                err.to_string().starts_with("invalid `token_cache`"),
                "{err}"
            );
        }
        let err = Config::from_toml("[schedule.reconcile]\nevery = \"1h\"").unwrap_err();
        assert!(err.to_string().contains("needs the drop folder"), "{err}");
        let err = Config::from_toml("[schedule.verify]\nevery = \"soon\"").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid `schedule.verify.every`"),
            "{err}"
        );
    }
}
