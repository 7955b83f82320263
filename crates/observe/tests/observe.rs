//! Integration tests of the observe crate: recommended policy evaluated by the engine, and
//! replay of a proposed policy set against recorded events.

mod observe {
    pub(crate) mod bounds;
    pub(crate) mod hostile;
    pub(crate) mod listener;
    pub(crate) mod recommend;
    pub(crate) mod replay;
    pub(crate) mod support;
}
