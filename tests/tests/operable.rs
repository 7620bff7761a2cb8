//! An executor as systemd and a monitoring system see it (issue: operable on AWS): the
//! real binary on the local stack says `READY=1`, pings the watchdog at half the interval
//! systemd gives it and says `STOPPING=1` on SIGTERM over `$NOTIFY_SOCKET`; it serves
//! `/healthz`, `/readyz` (ready once it synced its leases) and `/metrics` on the port of
//! `[metrics] listen`, and stops with exit status 0.

use std::io::{Read, Write};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use chief_e2e::Run;

/// `GET path` on `addr`: the status and the body.
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The next datagram on the notify socket, within `wait`.
fn next_state(socket: &UnixDatagram, wait: Duration) -> String {
    socket.set_read_timeout(Some(wait)).expect("timeout");
    let mut buffer = [0u8; 256];
    let n = socket.recv(&mut buffer).expect("a notification in time");
    String::from_utf8_lossy(&buffer[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_executor_notifies_systemd_pings_its_watchdog_and_serves_health_and_metrics() {
    let run = Run::new("operable").await;
    let socket_path = run.dir.join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let notify = socket_path.display().to_string();
    let proc = run.executor_with_env(
        "order-factory-s3",
        "ofs",
        &[
            ("NOTIFY_SOCKET", notify.as_str()),
            // 400 ms: the watchdog is pinged every 200 ms.
            ("WATCHDOG_USEC", "400000"),
            ("CHIEF__METRICS__LISTEN", addr.as_str()),
        ],
    );
    assert_eq!(next_state(&socket, Duration::from_secs(30)), "READY=1");
    let started = Instant::now();
    for _ in 0..3 {
        assert_eq!(next_state(&socket, Duration::from_secs(2)), "WATCHDOG=1");
    }
    let pinged = started.elapsed();
    assert!(
        pinged < Duration::from_millis(1_500),
        "three watchdog pings took {pinged:?} (every 200 ms expected)"
    );
    assert_eq!(get(&addr, "/healthz"), (200, "ok\n".to_owned()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(&addr, "/readyz");
        if status == 200 {
            assert_eq!(body, "ready\n");
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(
            Instant::now() < deadline,
            "not ready after 30 s: {body} (log {})",
            proc.log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (status, metrics) = get(&addr, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("LeasesHeld{"),
        "the KCL metric names are served: {metrics}"
    );
    let log = proc.log.clone();
    let status = proc.terminate();
    assert!(status.success(), "exit {status} (log {})", log.display());
    // Watchdog pings may still be queued before the stop; STOPPING=1 follows them.
    let mut states = Vec::new();
    while let Ok(n) = {
        socket
            .set_read_timeout(Some(Duration::from_millis(500)))
            .expect("timeout");
        let mut buffer = [0u8; 256];
        socket
            .recv(&mut buffer)
            .map(|n| String::from_utf8_lossy(&buffer[..n]).into_owned())
    } {
        states.push(n);
    }
    assert!(
        states.iter().any(|s| s == "STOPPING=1"),
        "STOPPING=1 on SIGTERM: {states:?}"
    );
}
