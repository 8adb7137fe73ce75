//! Turning bytes into a validated, configured [`Policy`].
//!
//! Loading checks, in order: WebAssembly at all; a component rather than a core module; it
//! compiles; it imports nothing; it exports the `pinwarden:policy` world; `describe` and
//! `configure` run inside the sandbox and accept the parameters. Each failure is one clear line.

use super::Policy;
use super::contract::PolicyBindingsPre;
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
    #[error(
        "{0}: built against pinwarden:policy@{1}, but this pinwarden speaks pinwarden:policy@{CONTRACT_VERSION} \
         (0.2.0 gave each node its health; 0.3.0 sends the history as changes; 0.4.0 gives each node its kind and replication; 0.5.0 its pins' progress): rebuild the \
         policy against wit/policy.wit"
    )]
    WrongVersion(String, String),
    #[error("{0}: {kind}: {message}", kind = .1.kind, message = .1.message)]
    Incident(String, Incident),
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
        Policy::load(engine, label, source, bytes, None, params)
    }

    /// A built-in: `bytes` with the `artifact` precompiled from them at build time.
    pub fn builtin(
        engine: &PolicyEngine,
        name: &str,
        bytes: &[u8],
        artifact: &[u8],
    ) -> Result<Policy, LoadError> {
        Policy::load(engine, name, Source::Builtin, bytes, Some(artifact), &[])
    }

    fn load(
        engine: &PolicyEngine,
        label: &str,
        source: Source,
        bytes: &[u8],
        precompiled: Option<&[u8]>,
        params: &[(String, String)],
    ) -> Result<Policy, LoadError> {
        let label = label.to_string();
        match bytes.get(..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => return Err(LoadError::CoreModule(label)),
            Some([0, b'a', b's', b'm', _, _, _, _]) => {}
            _ => return Err(LoadError::NotWasm(label)),
        }
        let hash = content_hash(bytes);
        let component = match precompiled {
            Some(artifact) => engine.load_precompiled(bytes, &hash, artifact),
            None => engine.compile(bytes, &hash),
        }
        .map_err(|e| LoadError::Invalid(label.clone(), one_line(&e)))?;
        // No host functions at all: a policy that imports anything cannot be instantiated.
        let linker: Linker<HostState> = Linker::new(engine.engine());
        let instance_pre = linker.instantiate_pre(&component).map_err(|e| {
            LoadError::WrongWorld(
                label.clone(),
                format!("{} (policies may import nothing)", one_line(&e)),
            )
        })?;
        let pre = PolicyBindingsPre::new(instance_pre).map_err(|e| {
            match contract_version(bytes).filter(|v| v != CONTRACT_VERSION) {
                Some(other) => LoadError::WrongVersion(label.clone(), other),
                None => LoadError::WrongWorld(label.clone(), one_line(&e)),
            }
        })?;

        let mut probe = Session::instantiate(&label, engine.engine(), &pre, engine.limits)
            .map_err(|i| LoadError::Incident(label.clone(), i))?;
        let info = probe
            .describe()
            .map_err(|i| LoadError::Incident(label.clone(), i))?;
        // Configure once now so a bad parameter is refused at load time, not per job.
        probe
            .configure(params)
            .map_err(|i| LoadError::Incident(label.clone(), i))?;
        Ok(Policy {
            name: info.name.clone(),
            source,
            hash,
            info,
            params: params.to_vec(),
            pre,
            engine: engine.clone(),
        })
    }
}

/// The version of `wit/policy.wit` this host speaks.
pub const CONTRACT_VERSION: &str = "0.5.0";

/// The `pinwarden:policy` version a component names (its type information carries the
/// package's name and version), for a precise message when the world does not match.
fn contract_version(bytes: &[u8]) -> Option<String> {
    const PACKAGE: &[u8] = b"pinwarden:policy/types@";
    let at = bytes.windows(PACKAGE.len()).position(|w| w == PACKAGE)? + PACKAGE.len();
    let version: Vec<u8> = bytes[at..]
        .iter()
        .copied()
        .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
        .take(32)
        .collect();
    String::from_utf8(version).ok().filter(|v| !v.is_empty())
}

/// The first line of an error chain, for one-line messages.
fn one_line(e: &wasmtime::Error) -> String {
    format!("{e:#}")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_constant_is_the_wit_files() {
        let wit = include_str!("../../../wit/policy.wit");
        assert!(wit.contains(&format!("package pinwarden:policy@{CONTRACT_VERSION};")));
    }

    #[test]
    fn a_components_contract_version_is_read_from_its_type_information() {
        let legacy = include_bytes!(concat!(env!("OUT_DIR"), "/legacy-v01-policy.wasm"));
        assert_eq!(contract_version(legacy).as_deref(), Some("0.1.0"));
        let current = include_bytes!(concat!(env!("OUT_DIR"), "/tank-mode.wasm"));
        assert_eq!(contract_version(current).as_deref(), Some(CONTRACT_VERSION));
        assert_eq!(contract_version(b"\0asm"), None);
    }
}
