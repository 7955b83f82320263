//! Loading the `PalisadeConfig` that `palisade up` runs from.

use palisade_policy::model::{Object, PalisadeConfig, Posture};
use palisade_policy::{Diagnostic, Manifests};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The runtime settings with paths resolved against the config file's folder.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// The config as written.
    pub config: PalisadeConfig,
    /// The config file.
    pub config_path: PathBuf,
    /// Manifests folder to enforce.
    pub manifests: PathBuf,
    /// Data folder (event store, state).
    pub data_dir: PathBuf,
    /// Admin API address.
    pub admin_listen: SocketAddr,
    /// Default posture.
    pub posture: Posture,
    /// Reload check interval.
    pub reload_interval: std::time::Duration,
    /// Cluster name.
    pub cluster: String,
    /// Node name.
    pub node: String,
    /// JSON-lines copy of every event (spec.events.jsonl), resolved.
    pub events_jsonl: Option<PathBuf>,
    /// Whether events go into the queryable store (spec.events.store, default true).
    pub events_store: bool,
    /// How long the store keeps an event (spec.events.retentionDays); `None`: no age limit
    /// (the store's row cap still holds).
    pub events_retention: Option<std::time::Duration>,
    /// The cluster's own networks (spec.clusterNetworks): names never lead there.
    pub cluster_networks: Vec<palisade_policy::cidr::Cidr>,
}

/// Errors loading the config: every diagnostic, or a missing PalisadeConfig.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file has problems.
    #[error("{}", .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
    /// No PalisadeConfig object in the file.
    #[error("{0}: no PalisadeConfig object in this file")]
    Missing(String),
    /// Cannot read the file.
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

/// Default admin address.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9900";

/// Reads and validates the config file.
pub fn load_runtime(path: &Path) -> Result<Runtime, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io(name.clone(), e))?;
    let mut m = Manifests::new();
    m.add_file(&name, &text);
    if m.has_errors() {
        return Err(ConfigError::Invalid(
            m.diagnostics
                .into_iter()
                .filter(|d| d.severity == palisade_policy::Severity::Error)
                .collect(),
        ));
    }
    let config = m
        .objects
        .iter()
        .find_map(|o| match &o.object {
            Object::PalisadeConfig(c) => Some(c.clone()),
            _ => None,
        })
        .ok_or_else(|| ConfigError::Missing(name.clone()))?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let resolve = |p: Option<&String>, default: &str| -> PathBuf {
        let p = PathBuf::from(p.map(String::as_str).unwrap_or(default));
        let joined = if p.is_absolute() { p } else { base.join(p) };
        // `a/./b` and a trailing `.` read better as `a/b`.
        joined.components().collect()
    };
    let spec = &config.spec;
    let admin_listen = spec
        .admin
        .as_ref()
        .map(|a| a.listen.as_str())
        .unwrap_or(DEFAULT_ADMIN)
        .parse()
        .map_err(|_| ConfigError::Missing(format!("{name}: spec.admin.listen is not host:port")))?;
    Ok(Runtime {
        manifests: resolve(spec.manifests.as_ref(), "."),
        data_dir: resolve(spec.data_dir.as_ref(), ".palisade-data"),
        admin_listen,
        posture: spec.default_posture,
        reload_interval: std::time::Duration::from_millis(
            spec.reload_interval_ms.unwrap_or(1000).max(50),
        ),
        cluster: spec.cluster.clone().unwrap_or_else(|| "default".into()),
        node: spec.node.clone().unwrap_or_else(|| "node-1".into()),
        events_jsonl: spec
            .events
            .as_ref()
            .and_then(|e| e.jsonl.as_ref())
            .map(|j| resolve(Some(j), "")),
        events_store: spec.events.as_ref().and_then(|e| e.store).unwrap_or(true),
        events_retention: spec
            .events
            .as_ref()
            .and_then(|e| e.retention_days)
            .map(|d| std::time::Duration::from_secs(u64::from(d) * 86_400)),
        // Validated above: every entry parses.
        cluster_networks: spec
            .cluster_networks
            .iter()
            .filter_map(|c| c.parse().ok())
            .collect(),
        config,
        config_path: path.to_path_buf(),
    })
}
