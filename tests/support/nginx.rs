//! A real nginx as an UPSTREAM behind Ringway (a second, independent HTTP/1 implementation on the
//! far side of the proxy). It runs in the foreground as one process (`daemon off; master_process
//! off;`) with every path it writes (pid, logs, temp dirs) inside its own temp dir, so it works as
//! root or not and never touches /var. Drop kills it.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{free_port, pattern, sha256_hex, wait_until, TempDir};

pub const NGINX_BIN: &str = "/usr/sbin/nginx";

/// Size of the file behind `/big`.
pub const BIG_LEN: usize = 1024 * 1024 + 17;

pub struct Nginx {
    pub port: u16,
    /// SHA-256 of the `/big` file (which holds `pattern(BIG_LEN)`).
    pub big_sha256: String,
    child: Option<Child>,
    dir: TempDir,
}

impl Nginx {
    /// Starts nginx on a free port and waits until it accepts connections (10 s).
    pub fn start() -> Nginx {
        Self::start_with_tls(None)
    }

    /// Like `start`, serving HTTPS only, with the certificate and key files given.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Nginx {
        Self::start_with_tls(Some((cert, key)))
    }

    fn start_with_tls(tls: Option<(&std::path::Path, &std::path::Path)>) -> Nginx {
        let bin = std::env::var("NGINX_BIN").unwrap_or_else(|_| NGINX_BIN.to_string());
        assert!(
            std::path::Path::new(&bin).exists(),
            "nginx not found at {bin}; install it (tests/run does: apt-get install -y nginx)"
        );
        let dir = TempDir::new("nginx");
        let port = free_port();
        let data = pattern(BIG_LEN);
        std::fs::write(dir.join("big"), &data).expect("write nginx /big file");
        let d = dir.path().display().to_string();
        let (ssl, ssl_files) = match tls {
            Some((c, k)) => (
                " ssl",
                format!(
                    "        ssl_certificate {};\n        ssl_certificate_key {};\n",
                    c.display(),
                    k.display()
                ),
            ),
            None => ("", String::new()),
        };
        let conf = format!(
            r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 10000;
    server {{
        listen 127.0.0.1:{port}{ssl};
{ssl_files}        location = /big {{
            default_type application/octet-stream;
            alias {d}/big;
        }}
        location / {{
            default_type text/plain;
            return 200 "nginx\n";
        }}
    }}
}}
"#
        );
        let conf_path = dir.join("nginx.conf");
        std::fs::write(&conf_path, conf).expect("write nginx.conf");
        let stderr =
            std::fs::File::create(dir.join("stderr.log")).expect("create nginx stderr log");
        let child = Command::new(&bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(stderr))
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
        let mut n = Nginx {
            port,
            big_sha256: sha256_hex(&data),
            child: Some(child),
            dir,
        };
        let up = wait_until(Duration::from_secs(10), || {
            if let Some(c) = n.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!("nginx exited at start-up ({status}):\n{}", n.logs());
                }
            }
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ())
        });
        if up.is_none() {
            panic!(
                "nginx did not listen on 127.0.0.1:{port} within 10 s:\n{}",
                n.logs()
            );
        }
        n
    }

    /// nginx's stderr and error log, for failure messages.
    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!(
            "--- nginx stderr ---\n{}--- nginx error.log ---\n{}",
            read("stderr.log"),
            read("error.log")
        )
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Kills nginx and waits for it (also done by Drop).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        self.stop();
    }
}
