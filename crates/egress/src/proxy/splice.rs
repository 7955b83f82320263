//! Zero-copy tunnels: bytes move socket → pipe → socket inside the kernel with
//! `splice(2)`, so a tunnel costs the gateway two system calls per chunk and no copies
//! through user space. Readiness comes from tokio; the pipes are private and drained
//! before each refill, so they never block.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use nix::fcntl::{fcntl, splice, FcntlArg, OFlag, SpliceFFlags};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes moved per `splice` call (and the pipe size asked for).
const CHUNK: usize = 256 * 1024;

struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    chunk: usize,
}

fn pipe() -> io::Result<Pipe> {
    let (read, write) =
        nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC).map_err(io::Error::from)?;
    // A larger pipe means fewer calls; the default (64 KiB) still works.
    let chunk = match fcntl(&write, FcntlArg::F_SETPIPE_SZ(CHUNK as i32)) {
        Ok(n) if n > 0 => (n as usize).min(CHUNK),
        _ => 64 * 1024,
    };
    Ok(Pipe { read, write, chunk })
}

fn flags() -> SpliceFFlags {
    SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK
}

/// The message of the error that ends a tunnel whose upload budget ran out.
pub(crate) const BUDGET_USED_UP: &str = "upload budget used up";

/// Moves bytes from `src` to `dst` until `src` ends, then half-closes `dst`. With a
/// budget, every chunk read is counted against it first; one that does not fit ends the
/// tunnel before it is sent.
async fn one_way(
    src: &TcpStream,
    dst: &TcpStream,
    p: Pipe,
    budget: Option<&crate::budget::BudgetCell>,
) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        src.readable().await?;
        let n = match src.try_io(Interest::READABLE, || {
            splice(src.as_fd(), None, &p.write, None, p.chunk, flags()).map_err(io::Error::from)
        }) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if budget.is_some_and(|b| b.take(n as u64).is_err()) {
            return Err(io::Error::other(BUDGET_USED_UP));
        }
        let mut left = n;
        while left > 0 {
            dst.writable().await?;
            match dst.try_io(Interest::WRITABLE, || {
                splice(&p.read, None, dst.as_fd(), None, left, flags()).map_err(io::Error::from)
            }) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(m) => left -= m,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        total += n as u64;
    }
    // Tell the other side that this direction is done; it may still answer.
    let _ = socket2::SockRef::from(dst).shutdown(std::net::Shutdown::Write);
    Ok(total)
}

/// Copies both ways between two TCP sockets until both directions end; returns the bytes
/// client → upstream and upstream → client. Client → upstream bytes count against
/// `budget`, when given.
pub(crate) async fn tunnel(
    client: &TcpStream,
    upstream: &TcpStream,
    budget: Option<&crate::budget::BudgetCell>,
) -> io::Result<(u64, u64)> {
    let (up, down) = (pipe()?, pipe()?);
    tokio::try_join!(
        one_way(client, upstream, up, budget),
        one_way(upstream, client, down, None)
    )
}
