//! Is a Docker engine answering? One `GET /_ping` with a hard one-second budget, over the unix
//! socket or TCP address that `DOCKER_HOST` names (default `/var/run/docker.sock`).
//! It must never block longer than its budget, and never talk TLS or follow redirects: anything
//! but `200` with body `OK` means "no Docker".

use std::fmt;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long [`docker_available`] may take at most.
pub const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the Docker engine API is expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DockerEndpoint {
    /// A unix socket path (`unix:///var/run/docker.sock`).
    Unix(PathBuf),
    /// `host:port` (`tcp://127.0.0.1:2375`).
    Tcp(String),
}

impl fmt::Display for DockerEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DockerEndpoint::Unix(path) => write!(f, "unix://{}", path.display()),
            DockerEndpoint::Tcp(address) => write!(f, "tcp://{address}"),
        }
    }
}

impl DockerEndpoint {
    /// The endpoint named by a `DOCKER_HOST` value, or the default socket when it is unset or
    /// empty. `Err` carries a reason for schemes we cannot ping (ssh://, npipe://, …).
    pub fn from_docker_host(docker_host: Option<&str>) -> Result<DockerEndpoint, String> {
        match docker_host.map(str::trim).filter(|v| !v.is_empty()) {
            None => Ok(DockerEndpoint::Unix(PathBuf::from("/var/run/docker.sock"))),
            Some(value) => {
                if let Some(path) = value.strip_prefix("unix://") {
                    Ok(DockerEndpoint::Unix(PathBuf::from(path)))
                } else if let Some(address) = value.strip_prefix("tcp://") {
                    Ok(DockerEndpoint::Tcp(
                        address.trim_end_matches('/').to_owned(),
                    ))
                } else {
                    Err(format!(
                        "DOCKER_HOST={value} is not a unix:// or tcp:// address pgprovision can ping"
                    ))
                }
            }
        }
    }

    /// The endpoint for this process's `DOCKER_HOST`.
    pub fn from_env() -> Result<DockerEndpoint, String> {
        let value = std::env::var("DOCKER_HOST").ok();
        DockerEndpoint::from_docker_host(value.as_deref())
    }
}

/// True if a Docker engine answers `GET /_ping` with `200 OK` at `DOCKER_HOST` (or
/// `/var/run/docker.sock`) within one second.
pub fn docker_available() -> bool {
    docker_status().is_ok()
}

/// `Ok(endpoint)` if Docker answers there, else `Err` with a sentence saying where it was looked
/// for and what happened — for [`crate::ProvisionError::NothingWorked`].
pub(crate) fn docker_status() -> Result<DockerEndpoint, String> {
    let endpoint = DockerEndpoint::from_env()?;
    match ping_docker(&endpoint, PING_TIMEOUT) {
        Ok(()) => Ok(endpoint),
        Err(reason) => Err(format!("no Docker engine at {endpoint}: {reason}")),
    }
}

/// Pings the engine at `endpoint` within `timeout`. `Err` says why it is not usable.
pub fn ping_docker(endpoint: &DockerEndpoint, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let response = match endpoint {
        DockerEndpoint::Unix(path) => {
            let stream = UnixStream::connect(path).map_err(|e| format!("connect: {e}"))?;
            exchange(stream, deadline, |s, t| s.set_read_timeout(t))
        }
        DockerEndpoint::Tcp(address) => {
            let addresses = address
                .to_socket_addrs()
                .map_err(|e| format!("resolving {address}: {e}"))?;
            let mut last_error = format!("{address} resolved to no address");
            let mut connected = None;
            for socket_address in addresses {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                match TcpStream::connect_timeout(&socket_address, left) {
                    Ok(stream) => {
                        connected = Some(stream);
                        break;
                    }
                    Err(e) => last_error = format!("connect {socket_address}: {e}"),
                }
            }
            let stream = connected.ok_or(last_error)?;
            exchange(stream, deadline, |s, t| s.set_read_timeout(t))
        }
    }?;
    check_ping_response(&response)
}

/// Sends the ping request and reads the response until EOF, a complete body, or `deadline`.
fn exchange<S: Read + Write>(
    mut stream: S,
    deadline: Instant,
    set_read_timeout: impl Fn(&S, Option<Duration>) -> std::io::Result<()>,
) -> Result<Vec<u8>, String> {
    // Writes to a fresh socket with an empty buffer do not block for a request this small.
    stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .map_err(|e| format!("sending the ping: {e}"))?;
    let mut response = Vec::new();
    let mut buffer = [0_u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("no complete answer within the timeout".to_owned());
        }
        set_read_timeout(&stream, Some(left)).map_err(|e| format!("setting a timeout: {e}"))?;
        match stream.read(&mut buffer) {
            Ok(0) => return Ok(response),
            Ok(n) => {
                response.extend_from_slice(&buffer[..n]);
                if response_is_complete(&response) || response.len() > 64 * 1024 {
                    return Ok(response);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err("no complete answer within the timeout".to_owned());
            }
            Err(e) => return Err(format!("reading the answer: {e}")),
        }
    }
}

/// True once the headers are in and, if a `Content-Length` was given, that many body bytes.
fn response_is_complete(response: &[u8]) -> bool {
    let Some(header_end) = find(response, b"\r\n\r\n") else {
        return false;
    };
    let headers = String::from_utf8_lossy(&response[..header_end]);
    let content_length = headers.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())?
    });
    content_length.is_some_and(|length| response.len() - (header_end + 4) >= length)
}

/// Accepts only an HTTP `200` whose body is `OK`.
fn check_ping_response(response: &[u8]) -> Result<(), String> {
    let header_end = find(response, b"\r\n\r\n").ok_or("the answer is not HTTP")?;
    let head = String::from_utf8_lossy(&response[..header_end]);
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.split_whitespace();
    let (version, status) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if !version.starts_with("HTTP/") {
        return Err(format!("the answer is not HTTP: {status_line:?}"));
    }
    if status != "200" {
        return Err(format!("the engine answered {status_line:?}"));
    }
    let body = String::from_utf8_lossy(&response[header_end + 4..]);
    if body.trim() != "OK" {
        return Err(format!(
            "the engine answered 200 with body {:?}",
            body.trim()
        ));
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;
    use std::thread;

    use super::*;

    /// A unix-socket server in a temp dir that answers each connection with `answer`
    /// (or never answers when `None`), after reading the request.
    fn fake_engine(answer: Option<&'static str>) -> (tempfile::TempDir, DockerEndpoint) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).expect("binding the fake docker socket");
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut request = [0_u8; 1024];
                let _ = stream.read(&mut request);
                match answer {
                    Some(answer) => {
                        let _ = stream.write_all(answer.as_bytes());
                    }
                    // Hold the connection open, silent, for longer than the ping budget.
                    None => thread::sleep(Duration::from_secs(5)),
                }
            }
        });
        (dir, DockerEndpoint::Unix(path))
    }

    #[test]
    fn a_nonexistent_socket_means_no_docker() {
        let endpoint = DockerEndpoint::Unix(PathBuf::from("/nonexistent/docker.sock"));
        assert!(ping_docker(&endpoint, PING_TIMEOUT).is_err());
    }

    #[test]
    fn an_engine_answering_200_ok_is_available() {
        let (_dir, endpoint) = fake_engine(Some(
            "HTTP/1.1 200 OK\r\nApi-Version: 1.43\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: 2\r\n\r\nOK",
        ));
        assert_eq!(ping_docker(&endpoint, PING_TIMEOUT), Ok(()));
    }

    #[test]
    fn an_engine_answering_500_is_not_available() {
        let (_dir, endpoint) = fake_engine(Some(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\nOK",
        ));
        let error =
            ping_docker(&endpoint, PING_TIMEOUT).expect_err("500 must not count as available");
        assert!(error.contains("500"), "{error}");
    }

    #[test]
    fn a_200_with_another_body_is_not_available() {
        let (_dir, endpoint) = fake_engine(Some("HTTP/1.0 200 OK\r\n\r\nhello"));
        assert!(ping_docker(&endpoint, PING_TIMEOUT).is_err());
    }

    #[test]
    fn a_silent_engine_is_not_available_and_the_ping_gives_up_within_its_budget() {
        let (_dir, endpoint) = fake_engine(None);
        let started = Instant::now();
        let result = ping_docker(&endpoint, PING_TIMEOUT);
        assert!(result.is_err(), "a silent engine counted as available");
        // Generous bound: the point is "gives up", not a timing benchmark.
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "ping hung for {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn docker_host_values_map_to_endpoints() {
        assert_eq!(
            DockerEndpoint::from_docker_host(None),
            Ok(DockerEndpoint::Unix(PathBuf::from("/var/run/docker.sock")))
        );
        assert_eq!(
            DockerEndpoint::from_docker_host(Some("")),
            Ok(DockerEndpoint::Unix(PathBuf::from("/var/run/docker.sock")))
        );
        assert_eq!(
            DockerEndpoint::from_docker_host(Some("unix:///run/user/1000/docker.sock")),
            Ok(DockerEndpoint::Unix(PathBuf::from(
                "/run/user/1000/docker.sock"
            )))
        );
        assert_eq!(
            DockerEndpoint::from_docker_host(Some("tcp://127.0.0.1:2375")),
            Ok(DockerEndpoint::Tcp("127.0.0.1:2375".to_owned()))
        );
        assert!(DockerEndpoint::from_docker_host(Some("ssh://me@host")).is_err());
    }

    #[test]
    fn a_tcp_endpoint_that_refuses_is_not_available() {
        // Bind then drop to get a port that (almost certainly) nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let endpoint = DockerEndpoint::Tcp(format!("127.0.0.1:{port}"));
        assert!(ping_docker(&endpoint, PING_TIMEOUT).is_err());
    }
}
