//! Test support: the simulated Tencent and a gateway in front of it, in process, on
//! 127.0.0.1 port 0, with the test holding the shutdown trigger; an HTTP client; a metrics
//! scraper. Every integration test file starts with `mod support;`.

#![allow(dead_code)]

pub mod hostile;
pub mod load;
pub mod pki;
pub mod process;
pub mod proxy;

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tim_gateway::config::{AuthMode, Config, SecretKey};
use tim_gateway::sim::{CallbackSender, Sim, SimCallbacks, SimConfig, DEMO_SECRET_KEY};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The admin every test signs as.
pub const ADMIN: &str = "administrator";
/// The app every test uses.
pub const SDKAPPID: u64 = 1_400_000_000;
pub const GET: &str = tim_gateway::apis::PORTRAIT_GET.path;
pub const SET: &str = tim_gateway::apis::PORTRAIT_SET.path;

/// A running sim + gateway pair.
pub struct TestGateway {
    pub addr: SocketAddr,
    /// Where the gateway takes Tencent's callbacks: `addr`, or its own listener.
    pub callback_addr: SocketAddr,
    pub sim: Sim,
    pub config: Config,
    caller: Caller,
    shutdown: Option<oneshot::Sender<()>>,
    join: JoinHandle<()>,
}

/// An HTTP client of one gateway (pooled, like a real caller's); cheap to clone into tasks.
#[derive(Clone)]
pub struct Caller {
    pub addr: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Builds a [`TestGateway`] with tweaks to the gateway's and the sim's config.
pub struct GatewayBuilder {
    config: Config,
    sim: SimConfig,
    upstream: Option<String>,
    sim_calls_back: bool,
    callback_listener: bool,
}

impl GatewayBuilder {
    pub fn config(mut self, tweak: impl FnOnce(&mut Config)) -> Self {
        tweak(&mut self.config);
        self
    }

    pub fn sim(mut self, tweak: impl FnOnce(&mut SimConfig)) -> Self {
        tweak(&mut self.sim);
        self
    }

    /// Points the gateway at `base_url` instead of the sim (which still runs, unused).
    pub fn upstream(mut self, base_url: String) -> Self {
        self.upstream = Some(base_url);
        self
    }

    /// The sim sends its `Profile.CallbackPortraitSet` callbacks to this gateway, signed with
    /// `callback.token`.
    pub fn sim_calls_back(mut self) -> Self {
        self.sim_calls_back = true;
        self
    }

    /// Callbacks get their own listener (`callback.listen`), on another free port.
    pub fn callback_listener(mut self) -> Self {
        self.callback_listener = true;
        self
    }

    pub async fn start(self) -> TestGateway {
        let bind = || tokio::net::TcpListener::bind("127.0.0.1:0");
        let listener = bind().await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let callbacks = match self.callback_listener {
            true => Some(bind().await.expect("bind")),
            false => None,
        };
        let callback_addr = callbacks
            .as_ref()
            .map_or(addr, |l| l.local_addr().expect("addr"));
        let mut config = self.config;
        if let Some(listener) = &callbacks {
            config.callback.listen = Some(listener.local_addr().expect("addr"));
        }
        let mut sim_config = self.sim;
        if self.sim_calls_back {
            sim_config.callback = Some(SimCallbacks {
                url: format!("http://{callback_addr}{}", config.callback.path),
                token: config
                    .callback
                    .token
                    .as_ref()
                    .map(|t| t.expose().to_owned()),
            });
        }
        let sim = Sim::start(sim_config).await.expect("sim starts");
        let base_url = self.upstream.unwrap_or_else(|| sim.base_url());
        config.upstream.base_url = base_url.parse().expect("upstream url");
        let (tx, rx) = oneshot::channel::<()>();
        let gateway_config = config.clone();
        let listeners = tim_gateway::Listeners {
            api: listener,
            callbacks,
        };
        let join = tokio::spawn(async move {
            tim_gateway::run(gateway_config, listeners, async {
                let _ = rx.await;
            })
            .await;
        });
        TestGateway {
            addr,
            callback_addr,
            sim,
            config,
            caller: Caller::new(addr),
            shutdown: Some(tx),
            join,
        }
    }
}

/// A test gateway is also a caller of itself (`send`, `send_with`, `get`, ...).
impl std::ops::Deref for TestGateway {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.caller
    }
}

impl Caller {
    pub fn new(addr: SocketAddr) -> Caller {
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(1024)
            // Well under any server idle timeout a test sets (hostile tests use 1.5 s): a pooled
            // connection the server is closing at the same instant fails the next request.
            .pool_idle_timeout(Duration::from_millis(500))
            .build_http();
        Caller { addr, client }
    }

    /// Sends any request; returns status and body. Panics if the gateway does not answer.
    pub async fn send(
        &self,
        method: &str,
        path_and_query: &str,
        body: impl Into<Bytes>,
    ) -> (u16, Bytes) {
        let (status, _, body) = self.send_with(method, path_and_query, &[], body).await;
        (status, body)
    }

    /// Sends any request with extra headers; returns status, response headers and body.
    pub async fn send_with(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &[u8])],
        body: impl Into<Bytes>,
    ) -> (u16, http::HeaderMap, Bytes) {
        self.try_send_with(method, path_and_query, headers, body)
            .await
            .expect("gateway answers")
    }

    /// As `send_with`, but a gateway that does not answer (killed, say) is an `Err`.
    pub async fn try_send_with(
        &self,
        method: &str,
        path_and_query: &str,
        headers: &[(&str, &[u8])],
        body: impl Into<Bytes>,
    ) -> Result<(u16, http::HeaderMap, Bytes), String> {
        let mut request = http::Request::builder()
            .method(method)
            .uri(format!("http://{}{path_and_query}", self.addr));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(body.into())).expect("request");
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await;
        let body = body.map_err(|e| e.to_string())?.to_bytes();
        Ok((status, headers, body))
    }

    /// POSTs `body` to an API path with a valid admin query; the parsed JSON answer (HTTP 200
    /// expected).
    pub async fn post(&self, path: &str, body: &Value) -> Value {
        let query = format!("{path}?{}", auth_query());
        let (status, answer) = self
            .send("POST", &query, Bytes::from(body.to_string()))
            .await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        serde_json::from_slice(&answer).expect("JSON answer")
    }

    /// A `portrait_get`; the parsed answer.
    pub async fn get(&self, body: &Value) -> Value {
        self.post(GET, body).await
    }

    /// A `portrait_get` to a gateway that may be gone: `None` when it does not answer.
    pub async fn try_get(&self, body: &Value) -> Option<Value> {
        let query = format!("{GET}?{}", auth_query());
        let sent = self.try_send_with("POST", &query, &[], body.to_string());
        let (status, _, answer) = sent.await.ok()?;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
        Some(serde_json::from_slice(&answer).expect("JSON answer"))
    }

    /// One metric sample's value.
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        let (_, body) = self.send("GET", "/metrics", Bytes::new()).await;
        metric_value(&String::from_utf8_lossy(&body), sample)
    }
}

/// The gateway config tests start from: sim key, usersig auth, short drain.
pub fn test_config() -> Config {
    let mut config = Config::default();
    config.upstream.secret_key = SecretKey::new(DEMO_SECRET_KEY.to_string());
    config.upstream.identifier = ADMIN.to_string();
    config.upstream.sdkappid = SDKAPPID;
    config.auth.mode = AuthMode::UserSig;
    config.auth.admins = vec![ADMIN.to_string()];
    config.server.shutdown_grace = Duration::from_secs(5);
    // Tests stop gateways often; the drain announcement has a test of its own.
    config.server.drain_announce = Duration::ZERO;
    config
}

/// A valid admin UserSig for the sim's key.
pub fn admin_usersig() -> String {
    usersig_for(ADMIN, DEMO_SECRET_KEY, 86_400)
}

pub fn usersig_for(identifier: &str, key: &str, expire: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    tim_gateway::usersig::sign(SDKAPPID, key, identifier, now, expire)
}

/// A Tencent query string with a valid admin UserSig.
pub fn auth_query() -> String {
    format!(
        "sdkappid={SDKAPPID}&identifier={ADMIN}&usersig={}&random=42&contenttype=json",
        admin_usersig()
    )
}

impl TestGateway {
    pub fn builder() -> GatewayBuilder {
        GatewayBuilder {
            config: test_config(),
            sim: SimConfig::default(),
            upstream: None,
            sim_calls_back: false,
            callback_listener: false,
        }
    }

    pub async fn start() -> TestGateway {
        Self::builder().start().await
    }

    /// A sender of Tencent-style callbacks to this gateway, signed with its `callback.token`.
    pub fn callback_sender(&self) -> CallbackSender {
        let url = format!("http://{}{}", self.callback_addr, self.config.callback.path);
        let token = self
            .config
            .callback
            .token
            .as_ref()
            .map(|t| t.expose().to_owned());
        CallbackSender::try_new(SDKAPPID, token, &url).expect("callback url")
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{path_and_query}", self.addr)
    }

    /// POSTs raw bytes to `path` with a valid admin query; expects HTTP 200 and JSON.
    pub async fn post_raw(&self, path: &str, body: impl Into<Bytes>) -> Value {
        let body = self.post_bytes(path, body).await;
        serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&body)))
    }

    /// POSTs raw bytes to `path` with a valid admin query; expects HTTP 200, returns the body.
    pub async fn post_bytes(&self, path: &str, body: impl Into<Bytes>) -> Bytes {
        let (status, body) = self
            .send("POST", &format!("{path}?{}", auth_query()), body)
            .await;
        assert_eq!(
            status,
            200,
            "API paths always answer 200: {}",
            String::from_utf8_lossy(&body)
        );
        body
    }

    /// A `portrait_get` through the gateway.
    pub async fn portrait_get(&self, body: &Value) -> Value {
        self.post_raw(GET, body.to_string()).await
    }

    /// A `portrait_get` through the gateway; the raw answer bytes.
    pub async fn portrait_get_bytes(&self, body: &Value) -> Bytes {
        self.post_bytes(GET, body.to_string()).await
    }

    /// What the sim answers to `body` alone.
    pub fn alone(&self, body: &Value) -> Value {
        serde_json::from_slice(&self.sim.answer_portrait_get(body.to_string().as_bytes()))
            .expect("sim answers JSON")
    }

    /// Upstream portrait_get calls the sim has seen.
    pub fn upstream_gets(&self) -> Vec<tim_gateway::sim::SimCall> {
        self.sim
            .calls()
            .into_iter()
            .filter(|c| c.api == tim_gateway::sim::Api::PortraitGet)
            .collect()
    }

    /// The /metrics text.
    pub async fn metrics(&self) -> String {
        let (status, body) = self.send("GET", "/metrics", Bytes::new()).await;
        assert_eq!(status, 200);
        String::from_utf8(body.to_vec()).expect("utf-8 metrics")
    }

    /// Value of one sample (exact name including labels, e.g. `tim_gateway_cache_lookups_total{result="hit"}`).
    pub async fn metric(&self, sample: &str) -> Option<f64> {
        metric_value(&self.metrics().await, sample)
    }

    /// Triggers shutdown and waits for the gateway to stop; re-raises a panic of its task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        join_gateway(&mut self.join).await;
        self.sim.shutdown().await;
    }

    /// Sends the shutdown signal and waits for the gateway alone to stop (the sim keeps
    /// running, so its call log can be read as it was when the gateway stopped).
    pub async fn stop_gateway(&mut self) {
        self.trigger_shutdown();
        join_gateway(&mut self.join).await;
    }

    /// Sends the shutdown signal without waiting.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Waits for a gateway task to end; re-raises its panic.
pub async fn join_gateway(join: &mut JoinHandle<()>) {
    match tokio::time::timeout(Duration::from_secs(15), join).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(e)) => panic!("gateway task failed: {e}"),
        Err(_) => panic!("gateway did not stop within 15 s"),
    }
}

/// Parses one sample's value out of Prometheus text.
pub fn metric_value(text: &str, sample: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        line.strip_prefix(sample)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The sum of every sample whose line starts with `prefix` (a family and the first labels).
pub fn metric_sum(text: &str, prefix: &str) -> f64 {
    let lines = text.lines().filter(|line| line.starts_with(prefix));
    lines
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Retries `check` until it returns true or `timeout` passes (linkerd's assert_eventually).
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A portrait_get body.
pub fn get_body(accounts: &[&str], tags: &[&str]) -> Value {
    serde_json::json!({ "To_Account": accounts, "TagList": tags })
}

pub const NICK: &str = "Tag_Profile_IM_Nick";
pub const GENDER: &str = "Tag_Profile_IM_Gender";
pub const BIRTHDAY: &str = "Tag_Profile_IM_BirthDay";
pub const CUSTOM: &str = "Tag_Profile_Custom_Test";

/// An account the sim fails per account with 40006 (N % 97 == 13).
pub const FAILING_ACCOUNT: &str = "user13";
pub mod fleet;
