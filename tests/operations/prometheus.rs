//! A real Prometheus for the operations test: started on a free loopback port with its data
//! in a fresh temp dir, scraping one gateway every second with the repo's rule files loaded;
//! queried through its HTTP API; killed by PID and its dir removed on drop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;

/// A running Prometheus process.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` as job `tim-gateway`, evaluating `rule_files`.
    /// Panics with a clear message when the binary is missing.
    pub async fn start(target: SocketAddr, rule_files: &[PathBuf]) -> Prometheus {
        if Command::new("prometheus")
            .arg("--version")
            .output()
            .is_err()
        {
            panic!(
                "the `prometheus` binary is not on PATH: install the Debian package `prometheus` \
                 (tests/run.sh installs it when missing)"
            );
        }
        let dir = std::env::temp_dir().join(format!(
            "tim-gateway-prometheus-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).expect("create the Prometheus temp dir");
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, config_text(target, rule_files)).expect("write the config");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.join("prometheus.log")).expect("log file"),
            ))
            .spawn()
            .expect("start prometheus");
        let prometheus = Prometheus {
            child,
            dir,
            base: format!("http://127.0.0.1:{port}"),
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        prometheus.wait_ready().await;
        prometheus
    }

    async fn wait_ready(&self) {
        for _ in 0..300 {
            if let Some((200, _)) = self.get("/-/ready").await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("prometheus did not become ready in 30 s:\n{}", self.log());
    }

    /// GET `path`; `None` when the connection fails.
    pub async fn get(&self, path: &str) -> Option<(u16, Value)> {
        let uri = format!("{}{path}", self.base).parse().expect("uri");
        let response = self.client.get(uri).await.ok()?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.ok()?.to_bytes();
        Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }

    /// Evaluates `expr` now: the result vector, or Prometheus's error.
    pub async fn query(&self, expr: &str) -> Result<Vec<Value>, String> {
        let path = format!(
            "/api/v1/query?query={}",
            utf8_percent_encode(expr, NON_ALPHANUMERIC)
        );
        match self.get(&path).await {
            Some((200, body)) if body["status"] == "success" => {
                let result = &body["data"]["result"];
                Ok(result.as_array().cloned().unwrap_or_default())
            }
            Some((status, body)) => Err(format!("HTTP {status}: {}", body["error"])),
            None => Err("prometheus unreachable".into()),
        }
    }

    /// The loaded rule groups (`/api/v1/rules`).
    pub async fn rule_groups(&self) -> Vec<Value> {
        match self.get("/api/v1/rules").await {
            Some((200, body)) => body["data"]["groups"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            other => panic!("/api/v1/rules failed: {other:?}"),
        }
    }

    /// Prometheus's own log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // Kill exactly the process this test started, by its PID, then reap it.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn config_text(target: SocketAddr, rule_files: &[PathBuf]) -> String {
    let rules: String = rule_files
        .iter()
        .map(|p| format!("  - {}\n", p.display()))
        .collect();
    format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n{rules}\
         scrape_configs:\n  - job_name: tim-gateway\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

/// A loopback port the OS says is free now (Prometheus binds it a moment later).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

/// The repository file at `relative`.
pub fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}
