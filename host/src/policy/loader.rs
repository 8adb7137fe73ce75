//! Turning bytes into a validated, configured [`Policy`].
//!
//! Loading checks, in order: WebAssembly at all; a component rather than a core module; it
//! compiles; it imports nothing; it exports the `pinwarden:policy` world; `describe` and
//! `configure` run inside the sandbox and accept the parameters. Each failure is one clear line.

use super::contract::{PolicyBindingsPre, PolicyInfo};
use super::engine::{PolicyEngine, content_hash};
use super::session::{HostState, Incident, Session};
use std::path::{Path, PathBuf};
use wasmtime::component::Linker;

/// Where a policy came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Builtin,
    File(PathBuf),
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Builtin => f.write_str("built-in"),
            Source::File(p) => write!(f, "file {}", p.display()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}: cannot read: {1}")]
    Io(String, std::io::Error),
    #[error("{0}: not a WebAssembly file")]
    NotWasm(String),
    #[error(
        "{0}: a core WebAssembly module, not a component (encode it with `pinwarden policy encode`)"
    )]
    CoreModule(String),
    #[error("{0}: invalid component: {1}")]
    Invalid(String, String),
    #[error("{0}: does not implement the pinwarden:policy world: {1}")]
    WrongWorld(String, String),
    #[error("{0}: {kind}: {message}", kind = .1.kind, message = .1.message)]
    Incident(String, Incident),
}

/// A compiled, validated policy with its operator parameters. Cheap to share; every job gets
/// its own [`Session`].
pub struct Policy {
    /// The name the policy gives itself in `describe`.
    pub name: String,
    pub source: Source,
    pub hash: String,
    pub info: PolicyInfo,
    /// Operator parameters, passed to `configure` in every session.
    pub params: Vec<(String, String)>,
    pre: PolicyBindingsPre<HostState>,
    engine: PolicyEngine,
}

impl Policy {
    pub fn from_file(
        engine: &PolicyEngine,
        path: &Path,
        params: &[(String, String)],
    ) -> Result<Policy, LoadError> {
        let label = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| LoadError::Io(label.clone(), e))?;
        Policy::from_bytes(
            engine,
            &label,
            Source::File(path.to_path_buf()),
            &bytes,
            params,
        )
    }

    /// Validates and configures `bytes`; `label` names it in errors.
    pub fn from_bytes(
        engine: &PolicyEngine,
        label: &str,
        source: Source,
        bytes: &[u8],
        params: &[(String, String)],
    ) -> Result<Policy, LoadError> {
        let label = label.to_string();
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => return Err(LoadError::CoreModule(label)),
            Some([0, b'a', b's', b'm', _, _, _, _]) => {}
            _ => return Err(LoadError::NotWasm(label)),
        }
        let hash = content_hash(bytes);
        let component = engine
            .compile(bytes, &hash)
            .map_err(|e| LoadError::Invalid(label.clone(), one_line(&e)))?;
        // No host functions at all: a policy that imports anything cannot be instantiated.
        let linker: Linker<HostState> = Linker::new(engine.engine());
        let instance_pre = linker.instantiate_pre(&component).map_err(|e| {
            LoadError::WrongWorld(
                label.clone(),
                format!("{} (policies may import nothing)", one_line(&e)),
            )
        })?;
        let pre = PolicyBindingsPre::new(instance_pre)
            .map_err(|e| LoadError::WrongWorld(label.clone(), one_line(&e)))?;

        let mut probe = Session::instantiate(&label, engine.engine(), &pre, engine.limits)
            .map_err(|i| LoadError::Incident(label.clone(), i))?;
        let info = probe
            .describe()
            .map_err(|i| LoadError::Incident(label.clone(), i))?;
        let mut policy = Policy {
            name: info.name.clone(),
            source,
            hash,
            info,
            params: Vec::new(),
            pre,
            engine: engine.clone(),
        };
        policy.params = params.to_vec();
        // Configure once now so a bad parameter is refused at load time, not per job.
        probe
            .configure(params)
            .map_err(|i| LoadError::Incident(label.clone(), i))?;
        Ok(policy)
    }

    /// The same compiled policy with other parameters (validated by a trial `configure`).
    pub fn with_params(&self, params: &[(String, String)]) -> Result<Policy, Incident> {
        self.session_with(params)?;
        Ok(Policy {
            name: self.name.clone(),
            source: self.source.clone(),
            hash: self.hash.clone(),
            info: self.info.clone(),
            params: params.to_vec(),
            pre: self.pre.clone(),
            engine: self.engine.clone(),
        })
    }

    /// A fresh, configured instance for one job.
    pub fn session(&self) -> Result<Session, Incident> {
        self.session_with(&self.params)
    }

    fn session_with(&self, params: &[(String, String)]) -> Result<Session, Incident> {
        let mut session = Session::instantiate(
            &self.name,
            self.engine.engine(),
            &self.pre,
            self.engine.limits,
        )?;
        session.configure(params)?;
        Ok(session)
    }

    /// The effective value of a parameter: configured, else the policy's declared default.
    pub fn param(&self, name: &str) -> Option<String> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| {
                self.info
                    .params
                    .iter()
                    .find(|p| p.name == name)
                    .map(|p| p.default_value.clone())
            })
    }

    /// Whether the policy declares a parameter of that name.
    pub fn declares(&self, name: &str) -> bool {
        self.info.params.iter().any(|p| p.name == name)
    }
}

/// The first line of an error chain, for one-line messages.
fn one_line(e: &wasmtime::Error) -> String {
    format!("{e:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}
