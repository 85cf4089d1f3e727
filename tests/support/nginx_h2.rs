//! A real nginx speaking HTTP/2: `listen ... http2` (h2c with prior knowledge) and, when asked,
//! `listen ... ssl http2` with a self-signed certificate made by the openssl CLI. It is the
//! independent h2 implementation the tests use as an UPSTREAM for Ringway's h2 client, and as the
//! reference server that proves the h2 test harness (curl, nghttp, h2load, tests/py) works before
//! Ringway's own h2 code exists. Same process model as `nginx.rs`: one foreground process, every
//! path inside its temp dir, killed on drop.
//!
//! | path | response |
//! |---|---|
//! | `/big` | `big_len` bytes of `support::pattern` |
//! | `/conn` | `$connection` (nginx's connection serial number) and a newline: distinct values = distinct connections |
//! | `/headers` | `host=<$host> te=<$http_te> connection=<$http_connection> proto=<$server_protocol>` |
//! | anything else | `nginx-h2` |

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::nginx::NGINX_BIN;
use super::{free_port, pattern, sha256_hex, wait_until, TempDir};

pub struct NginxH2 {
    /// The h2c (prior knowledge) port.
    pub port: u16,
    /// The TLS port (ALPN h2), when started with TLS.
    pub tls_port: Option<u16>,
    pub big_sha256: String,
    pub big_len: usize,
    child: Option<Child>,
    dir: TempDir,
}

impl NginxH2 {
    /// h2c only, with a `/big` of `big_len` bytes.
    pub fn start(big_len: usize) -> NginxH2 {
        Self::start_inner(big_len, false)
    }

    /// h2c plus TLS (self-signed, CN localhost).
    pub fn start_with_tls(big_len: usize) -> NginxH2 {
        Self::start_inner(big_len, true)
    }

    fn start_inner(big_len: usize, tls: bool) -> NginxH2 {
        let bin = std::env::var("NGINX_BIN").unwrap_or_else(|_| NGINX_BIN.to_string());
        assert!(
            std::path::Path::new(&bin).exists(),
            "nginx not found at {bin}; install it (tests/run does: apt-get install -y nginx)"
        );
        let dir = TempDir::new("nginx-h2");
        let port = free_port();
        let data = pattern(big_len);
        std::fs::write(dir.join("big"), &data).expect("write nginx /big file");
        let d = dir.path().display().to_string();
        let mut tls_port = None;
        let mut tls_listen = String::new();
        if tls {
            let p = free_port();
            let st = Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                ])
                .args(["-subj", "/CN=localhost", "-keyout"])
                .arg(dir.join("key.pem"))
                .arg("-out")
                .arg(dir.join("cert.pem"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap_or_else(|e| panic!("run openssl ({e}); tests/run installs it"));
            assert!(
                st.success(),
                "openssl req failed to make a test certificate"
            );
            tls_listen = format!(
                "        listen 127.0.0.1:{p} ssl http2;\n        ssl_certificate {d}/cert.pem;\n        ssl_certificate_key {d}/key.pem;\n        ssl_protocols TLSv1.2 TLSv1.3;\n"
            );
            tls_port = Some(p);
        }
        let conf = format!(
            r#"daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port} http2;
{tls_listen}        location = /big {{
            default_type application/octet-stream;
            alias {d}/big;
        }}
        location = /conn {{
            default_type text/plain;
            return 200 "$connection\n";
        }}
        location = /headers {{
            default_type text/plain;
            return 200 "host=$host te=$http_te connection=$http_connection proto=$server_protocol\n";
        }}
        location / {{
            default_type text/plain;
            return 200 "nginx-h2\n";
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
        let mut n = NginxH2 {
            port,
            tls_port,
            big_sha256: sha256_hex(&data),
            big_len,
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

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// nginx's stderr and error log (info level: it names each h2 flood or bad header it saw).
    pub fn logs(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default();
        format!(
            "--- nginx stderr ---\n{}--- nginx error.log ---\n{}",
            read("stderr.log"),
            read("error.log")
        )
    }

    /// Path of the served `/big` file (for uploads of the same bytes).
    pub fn big_path(&self) -> std::path::PathBuf {
        self.dir.join("big")
    }
}

impl Drop for NginxH2 {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
