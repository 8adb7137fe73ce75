//! What every command shares: configuration resolved one way (file, environment, flags), the
//! data directory and socket derived from it, one async runtime, and one error type that maps
//! to the documented exit statuses.

use super::GlobalArgs;
use crate::app::App;
use crate::client::{ClientError, DaemonClient};
use crate::config::{self, Config, ConfigError, DEFAULT_FILE, Env};
use std::cell::OnceCell;
use std::future::Future;
use std::path::{Path, PathBuf};

/// Exit statuses, documented in `--help` and docs/cli.md.
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const BAD_INPUT: u8 = 2;
}

/// A command's failure: the exit status and the one-line message printed as `error: ...`.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    /// Bad input or configuration (exit 2).
    pub fn bad_input(message: impl std::fmt::Display) -> CliError {
        CliError {
            code: exit::BAD_INPUT,
            message: message.to_string(),
        }
    }

    /// The operation failed and may be retried (exit 1).
    pub fn failed(message: impl std::fmt::Display) -> CliError {
        CliError {
            code: exit::FAILED,
            message: message.to_string(),
        }
    }
}

impl From<ConfigError> for CliError {
    fn from(e: ConfigError) -> Self {
        CliError::bad_input(e)
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        if e.is_bad_request() {
            CliError::bad_input(e)
        } else {
            CliError::failed(e)
        }
    }
}

/// What a command returns: an exit status it chose (0, or 1 for a pin that failed after its
/// result was printed), or an error to print.
pub type CliResult = Result<u8, CliError>;

pub struct Context<'a> {
    global: &'a GlobalArgs,
    /// The config file alone (no environment, no validation), read at most once.
    file: OnceCell<Option<Config>>,
    runtime: OnceCell<tokio::runtime::Runtime>,
}

impl<'a> Context<'a> {
    pub fn new(global: &'a GlobalArgs) -> Self {
        Context {
            global,
            file: OnceCell::new(),
            runtime: OnceCell::new(),
        }
    }

    /// `--config`, else `./pinwarden.toml` when present.
    fn config_path(&self) -> Option<PathBuf> {
        self.global.config.clone().or_else(|| {
            Path::new(DEFAULT_FILE)
                .exists()
                .then(|| PathBuf::from(DEFAULT_FILE))
        })
    }

    /// The process's environment, for the library calls that read variables.
    pub fn env(&self) -> Env<'static> {
        &config::process_env
    }

    /// The effective configuration for running jobs: file, then the seeds' environment
    /// variables, then `params`, then `--data-dir`; validated (a primary node is required).
    pub fn config(&self, params: &[(String, String)]) -> Result<Config, CliError> {
        let mut config = Config::load(self.config_path().as_deref(), self.env(), params)?;
        if let Some(dir) = &self.global.data_dir {
            config.data_dir = dir.clone();
        }
        Ok(config)
    }

    /// The config file alone, for commands that need no nodes (data directory, socket).
    pub fn config_file(&self) -> Result<Option<&Config>, CliError> {
        if self.file.get().is_none() {
            let config = match self.config_path() {
                Some(path) => Some(Config::from_file(&path)?),
                None => None,
            };
            let _ = self.file.set(config);
        }
        Ok(self.file.get().and_then(Option::as_ref))
    }

    /// `--data-dir` / `PINWARDEN_DATA_DIR`, else the config file's `data_dir`, else `./data`.
    pub fn data_dir(&self) -> Result<PathBuf, CliError> {
        if let Some(dir) = &self.global.data_dir {
            return Ok(dir.clone());
        }
        Ok(self
            .config_file()?
            .map(|c| c.data_dir.clone())
            .unwrap_or_else(config::default_data_dir))
    }

    /// The daemon's socket: `explicit` (`--socket`), else the config file's `daemon.socket`,
    /// else `<data dir>/pinwarden.sock`.
    pub fn socket(&self, explicit: Option<&Path>) -> Result<PathBuf, CliError> {
        if let Some(path) = explicit {
            return Ok(path.to_path_buf());
        }
        let configured = self.config_file()?.and_then(|c| c.daemon.socket.clone());
        Ok(config::socket_in(&self.data_dir()?, configured.as_deref()))
    }

    /// The compiled-policy cache: inside the data directory when it exists. Commands that only
    /// read (`policy list|check|test|encode`) never create a data directory as a side effect.
    pub fn policy_cache(&self) -> Result<Option<PathBuf>, CliError> {
        let dir = self.data_dir()?;
        Ok(dir.is_dir().then(|| dir.join("policy-cache")))
    }

    /// Configuration, policy and node clients for running jobs.
    pub fn app(&self, params: &[(String, String)]) -> Result<App, CliError> {
        Ok(App::new(self.config(params)?)?)
    }

    /// A client of the daemon on its socket.
    pub fn daemon(&self, socket: Option<&Path>) -> Result<DaemonClient, CliError> {
        Ok(DaemonClient::unix(&self.socket(socket)?)?)
    }

    /// Runs `future` on the process's one runtime.
    pub fn block_on<F: Future>(&self, future: F) -> Result<F::Output, CliError> {
        if self.runtime.get().is_none() {
            let runtime = tokio::runtime::Runtime::new()
                .map_err(|e| CliError::failed(format!("cannot start the async runtime: {e}")))?;
            let _ = self.runtime.set(runtime);
        }
        match self.runtime.get() {
            Some(runtime) => Ok(runtime.block_on(future)),
            None => Err(CliError::failed("cannot start the async runtime")),
        }
    }
}
