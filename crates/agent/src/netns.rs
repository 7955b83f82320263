//! Running a little work inside a named network namespace: a socket belongs to the
//! namespace it was created in, so a short-lived thread enters the namespace, does the work
//! and exits; the process itself never moves.

/// Runs `work` in network namespace `netns` (a name under `/run/netns`), or right here
/// when `None`.
pub fn run_in<T: Send>(
    netns: Option<&str>,
    work: impl FnOnce() -> std::io::Result<T> + Send,
) -> std::io::Result<T> {
    let Some(ns) = netns else {
        return work();
    };
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let f = std::fs::File::open(&path)?;
            nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(std::io::Error::from)?;
            work()
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("netns thread panicked")))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn here_runs_in_place_and_a_missing_namespace_is_an_error() {
        assert_eq!(super::run_in(None, || Ok(7)).unwrap(), 7);
        let e = super::run_in(Some("palisade-no-such-netns"), || Ok(())).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    }
}
