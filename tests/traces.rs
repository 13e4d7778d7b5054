//! OpenTelemetry: the gateway binary, given the standard OTEL_* variables, exports its spans
//! over OTLP/HTTP to a receiver the test runs, and a request's span continues the caller's
//! W3C `traceparent`: the exported spans carry the caller's trace id and the service name; a
//! call shared by several callers links to each, with its upstream attempt below it.

mod support;

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValueKind;
use opentelemetry_proto::tonic::trace::v1::Span as ProtoSpan;
use prost::Message as _;
use support::process::GatewayProcess;
use support::{get_body, NICK};
use tim_gateway::sim::{Sim, SimConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

/// An OTLP/HTTP receiver on loopback: every request's (path, body), answered 200.
async fn receiver() -> (String, mpsc::UnboundedReceiver<(String, Vec<u8>)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    let Some(head_end) = find(&buffer, b"\r\n\r\n") else {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                        continue;
                    };
                    let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    while buffer.len() < head_end + 4 + length {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                    let body = buffer[head_end + 4..head_end + 4 + length].to_vec();
                    buffer.drain(..head_end + 4 + length);
                    let _ = tx.send((path, body));
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if stream.write_all(ok).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, rx)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver_and_continue_the_callers_trace() {
    let sim = Sim::start(SimConfig::default()).await.expect("sim");
    let (otlp, mut exported) = receiver().await;
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_SERVICE_NAME", "tim-gateway-under-test"),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    let gateway = GatewayProcess::in_front_of(&sim, &otel).await;

    let traceparent = format!("00-{TRACE_ID}-b7ad6b7169203331-01");
    let query = format!("{}?{}", support::GET, support::auth_query());
    let body = get_body(&["user80"], &[NICK]).to_string();
    let headers: [(&str, &[u8]); 1] = [("traceparent", traceparent.as_bytes())];
    let (status, _, _) = gateway
        .try_send_with("POST", &query, &headers, body)
        .await
        .expect("answered");
    assert_eq!(status, 200);

    let trace_id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&TRACE_ID[i * 2..i * 2 + 2], 16).expect("hex"))
        .collect();
    let found = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some((path, body)) = exported.recv().await {
            let ours = find(&body, &trace_id).is_some()
                && find(&body, b"request").is_some()
                && find(&body, b"tim-gateway-under-test").is_some();
            if path == "/v1/traces" && ours {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        found,
        Ok(true),
        "no exported span carried the caller's trace id, the span name and the service"
    );
    sim.shutdown().await;
}

/// Every span the receiver has been sent so far, decoded.
struct Exported {
    bodies: mpsc::UnboundedReceiver<(String, Vec<u8>)>,
    spans: Vec<ProtoSpan>,
}

impl Exported {
    /// Waits (up to 15 s) until `found` holds of the spans received; what it returned.
    async fn until<T>(&mut self, found: impl Fn(&[ProtoSpan]) -> Option<T>) -> Option<T> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(result) = found(&self.spans) {
                return Some(result);
            }
            let next = tokio::time::timeout_at(deadline, self.bodies.recv()).await;
            let Ok(Some((path, body))) = next else {
                return None;
            };
            if path != "/v1/traces" {
                continue;
            }
            let request =
                ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
            let spans = request.resource_spans.into_iter();
            let spans = spans.flat_map(|r| r.scope_spans).flat_map(|s| s.spans);
            self.spans.extend(spans);
        }
    }
}

fn attribute(span: &ProtoSpan, key: &str) -> Option<AnyValueKind> {
    let kv = span.attributes.iter().find(|kv| kv.key == key)?;
    kv.value.as_ref()?.value.clone()
}

fn hex_trace(id: &str) -> Vec<u8> {
    (0..16)
        .map(|i| u8::from_str_radix(&id[i * 2..i * 2 + 2], 16).expect("hex"))
        .collect()
}

/// The shared call named `name` that links to both traces, and the `upstream_call` below it.
fn shared_call_serving<'a>(
    spans: &'a [ProtoSpan],
    name: &str,
    a: &[u8],
    b: &[u8],
) -> Option<(&'a ProtoSpan, &'a ProtoSpan)> {
    let call = spans.iter().find(|s| {
        let linked = |t: &[u8]| s.links.iter().any(|l| l.trace_id == t);
        s.name == name && linked(a) && linked(b)
    })?;
    let upstream = spans.iter().find(|s| {
        s.name == "upstream_call" && s.trace_id == call.trace_id && s.parent_span_id == call.span_id
    })?;
    Some((call, upstream))
}

const TRACE_A: &str = "11111111111111111111111111111111";
const TRACE_B: &str = "22222222222222222222222222222222";

/// Two callers (two traces) whose misses wait for the same permit share one call: the batch's
/// `flush` and the list read's `list_call` link to both callers' traces, and each has an
/// `upstream_call` child carrying the API, the attempt and Tencent's ErrorCode; each caller's
/// request and queue wait are in its own trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_call_links_to_every_caller_and_names_its_upstream_call() {
    let sim = Sim::start(SimConfig::default()).await.expect("sim");
    let (otlp, bodies) = receiver().await;
    let dir = std::env::temp_dir().join(format!("tim-gateway-traces-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("tim-gateway.toml");
    // Two calls a second per API: after a first call, callers queue together for the next.
    let config = "[limits]\nrequests_per_second = 2\n\n\
        [passthrough.limits]\n\"openim/query_online_status\" = 2\n\n\
        [list_apis.\"openim/query_online_status\"]\nttl_ms = 0\n";
    std::fs::write(&file, config).expect("config");
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.as_str()),
        ("OTEL_SERVICE_NAME", "tim-gateway-under-test"),
        ("OTEL_BSP_SCHEDULE_DELAY", "200"),
    ];
    let path = file.to_str().expect("utf-8 path");
    let gateway = GatewayProcess::in_front_of_with(&sim, &["--config", path], &otel).await;
    let query = |api: &str| format!("{api}?{}", support::auth_query());
    let send = |api: &'static str, trace: &'static str, body: String| {
        let gateway = support::Caller::clone(&gateway);
        let query = query(api);
        async move {
            let traceparent = format!("00-{trace}-b7ad6b7169203331-01");
            let headers: [(&str, &[u8]); 1] = [("traceparent", traceparent.as_bytes())];
            let answered = gateway.try_send_with("POST", &query, &headers, body).await;
            answered.expect("answered").0
        }
    };
    let online = "/v4/openim/query_online_status";
    let status_body = |ids: &[&str]| serde_json::json!({ "To_Account": ids }).to_string();

    // A first call of each API takes its permit; the two callers then wait for the next, half
    // a second later, together.
    let warm = [
        send(
            support::GET,
            TRACE_A,
            get_body(&["user70"], &[NICK]).to_string(),
        ),
        send(online, TRACE_A, status_body(&["user70"])),
    ];
    let a = futures_util::future::join_all(warm).await;
    assert!(a.iter().all(|s| *s == 200), "{a:?}");
    let (b, c, d) = tokio::join!(
        send(
            support::GET,
            TRACE_A,
            get_body(&["user71", "user72"], &[NICK]).to_string()
        ),
        send(
            support::GET,
            TRACE_B,
            get_body(&["user72", "user73"], &[NICK]).to_string()
        ),
        async {
            tokio::join!(
                send(online, TRACE_A, status_body(&["user71", "user72"])),
                send(online, TRACE_B, status_body(&["user72", "user73"])),
            )
        },
    );
    assert_eq!((b, c, d), (200, 200, (200, 200)));

    let (trace_a, trace_b) = (hex_trace(TRACE_A), hex_trace(TRACE_B));
    let mut exported = Exported {
        bodies,
        spans: Vec::new(),
    };
    let calls = [
        ("flush", "portrait_get"),
        ("list_call", "openim/query_online_status"),
    ];
    for (name, label) in calls {
        let found = exported
            .until(|spans| {
                let (_, upstream) = shared_call_serving(spans, name, &trace_a, &trace_b)?;
                Some(upstream.clone())
            })
            .await;
        let upstream = found.unwrap_or_else(|| panic!("no {name} linked to both callers"));
        assert_eq!(
            attribute(&upstream, "error_code"),
            Some(AnyValueKind::IntValue(0))
        );
        assert_eq!(
            attribute(&upstream, "attempt"),
            Some(AnyValueKind::IntValue(0))
        );
        let label = AnyValueKind::StringValue(label.to_owned());
        assert_eq!(attribute(&upstream, "api"), Some(label));
    }
    for trace in [&trace_a, &trace_b] {
        let in_trace = |name: &str| {
            let name = name.to_owned();
            move |spans: &[ProtoSpan]| {
                spans
                    .iter()
                    .find(|s| s.name == name && s.trace_id == *trace)
                    .map(|_| ())
            }
        };
        assert!(exported.until(in_trace("request")).await.is_some());
        assert!(exported.until(in_trace("queue_wait")).await.is_some());
    }
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown().await;
}
