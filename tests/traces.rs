//! OpenTelemetry: the gateway binary, given the standard OTEL_* variables, exports its spans
//! over OTLP/HTTP to a receiver the test runs, and a request's span continues the caller's
//! W3C `traceparent`: the exported spans carry the caller's trace id and the service name.

mod support;

use std::time::Duration;

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
