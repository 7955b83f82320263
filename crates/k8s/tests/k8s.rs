//! Integration tests of palisade-k8s: the generated CRDs, the pure reconcile logic on
//! recorded API objects, and the watch/status/event/lease code against an in-test HTTP
//! server that speaks the Kubernetes API wire protocol.

mod k8s {
    mod api;
    mod crds;
    mod fake_api;
    mod federation_overlay;
    mod props;
    mod reconcile;
}
