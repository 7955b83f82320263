//! Who and where this process is in the cluster: the API client (in-cluster service
//! account or `KUBECONFIG`), its pod name and namespace (downward API, else the service
//! account's namespace file, else defaults).

/// The namespace file of a pod's service account.
const SA_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// A client from the in-cluster service account, or from `KUBECONFIG` / `~/.kube/config`.
pub async fn default_client() -> Result<kube::Client, kube::Error> {
    let config = kube::Config::infer()
        .await
        .map_err(kube::Error::InferConfig)?;
    client_from(config)
}

/// A client for `config` without kube's built-in retry of 429/503/504 (up to 15 times,
/// backing off to minutes): the watch loops back off themselves (0.5 s to 30 s), and the
/// Lease must notice an unreachable API within one renew period.
pub fn client_from(mut config: kube::Config) -> Result<kube::Client, kube::Error> {
    config.default_retry = false;
    kube::Client::try_from(config)
}

/// This replica's identity: `POD_NAME`, else the host name.
pub fn identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "palisade-controller".to_string())
}

/// This pod's namespace: `POD_NAMESPACE`, else the service account's, else
/// `palisade-system`.
pub fn namespace() -> String {
    std::env::var("POD_NAMESPACE")
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| {
            std::fs::read_to_string(SA_NAMESPACE)
                .ok()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "palisade-system".to_string())
}
