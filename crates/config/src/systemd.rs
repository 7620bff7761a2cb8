//! systemd's notify protocol (`Type=notify`, `WatchdogSec=`), without libsystemd: datagrams
//! to the socket named by `$NOTIFY_SOCKET` (`READY=1`, `STOPPING=1`, `WATCHDOG=1`,
//! `STATUS=…`). Outside systemd (no `$NOTIFY_SOCKET`) every call does nothing.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Sends `state` (e.g. `READY=1`) to systemd, if this process runs under it. A failure is
/// logged, never fatal: the unit's timeouts are what notice a process that cannot tell.
pub fn notify(state: &str) {
    if let Some(socket) = std::env::var_os("NOTIFY_SOCKET")
        && let Err(error) = notify_to(Path::new(&socket), state)
    {
        tracing::warn!(%error, state, "cannot notify systemd");
    }
}

/// Sends `state` to the notify socket at `socket` (a path, or `@name` for an abstract
/// socket).
///
/// # Errors
/// The socket cannot be reached.
pub fn notify_to(socket: &Path, state: &str) -> std::io::Result<()> {
    use std::os::unix::net::UnixDatagram;
    let sender = UnixDatagram::unbound()?;
    let text = socket.to_string_lossy();
    if let Some(name) = text.strip_prefix('@') {
        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
            sender.send_to_addr(state.as_bytes(), &addr)?;
            return Ok(());
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = name;
            return Err(std::io::Error::other("abstract sockets need Linux"));
        }
    }
    sender.send_to(state.as_bytes(), socket)?;
    Ok(())
}

/// The watchdog interval systemd asks for (`$WATCHDOG_USEC`, for this process per
/// `$WATCHDOG_PID`), if any.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Tells systemd the process is up (`READY=1`), that it is stopping (`STOPPING=1`) once
/// `stop` fires, and, when the unit sets `WatchdogSec=`, pings the watchdog at half its
/// interval from a task of the runtime for as long as the runtime runs (a graceful stop's
/// flush included): a runtime whose threads are all wedged stops pinging and systemd
/// restarts the process. Must run inside a tokio runtime.
pub fn ready(stop: &CancellationToken) {
    notify("READY=1");
    let stopping = stop.clone();
    tokio::spawn(async move {
        stopping.cancelled().await;
        notify("STOPPING=1");
    });
    if let Some(interval) = watchdog_interval() {
        tracing::info!(
            interval_ms = interval.as_millis() as u64,
            "systemd watchdog on"
        );
        tokio::spawn(async move {
            let mut every = tokio::time::interval(interval / 2);
            loop {
                every.tick().await;
                notify("WATCHDOG=1");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datagrams_reach_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("chief-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let receiver = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        notify_to(&path, "READY=1").expect("send");
        let mut buffer = [0u8; 64];
        let n = receiver.recv(&mut buffer).expect("recv");
        assert_eq!(&buffer[..n], b"READY=1");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn datagrams_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("chief-notify-test-{}", std::process::id());
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let receiver = std::os::unix::net::UnixDatagram::bind_addr(&addr).expect("bind");
        notify_to(Path::new(&format!("@{name}")), "STOPPING=1").expect("send");
        let mut buffer = [0u8; 64];
        let n = receiver.recv(&mut buffer).expect("recv");
        assert_eq!(&buffer[..n], b"STOPPING=1");
    }

    #[test]
    fn an_unreachable_socket_is_an_error() {
        assert!(notify_to(Path::new("/nonexistent/notify.sock"), "READY=1").is_err());
    }
}
