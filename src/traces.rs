//! OpenTelemetry traces, off unless the standard variables ask for them:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) turns on OTLP export
//! over HTTP (`OTEL_EXPORTER_OTLP_PROTOCOL` = `http/protobuf`, the one protocol built in),
//! named by `OTEL_SERVICE_NAME`, batched as `OTEL_BSP_*` say. Then each request's span
//! continues the caller's W3C `traceparent` (its spans carry the caller's trace id); each
//! upstream attempt is an `upstream_call` span (its API, attempt, outcome and Tencent
//! `ErrorCode`) under the request or the shared call it serves; a shared call (a `portrait_get`
//! batch's `flush`, a list read's `list_call`) links to every caller it serves. Off, nothing
//! here runs on a request's path but one relaxed load.

use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::trace::{SpanContext, TraceContextExt as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::runtime::Tokio;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether spans are exported (the caller's context is worth extracting).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether the environment asks for OTLP export.
pub fn requested() -> bool {
    [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    ]
    .iter()
    .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
}

/// The exporting tracer provider and the `tracing` layer feeding it, as the environment
/// configures them; `Err` says why export cannot start (a protocol not built in, say). Call it
/// inside the Tokio runtime (the batch exporter runs on it); shut the provider down at exit to
/// send what is left.
pub fn exporter<S>() -> Result<
    (
        SdkTracerProvider,
        tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
    ),
    String,
>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or_default();
    if !protocol.is_empty() && protocol != "http/protobuf" {
        return Err(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: only http/protobuf is built in"
        ));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| e.to_string())?;
    let provider = SdkTracerProvider::builder()
        .with_span_processor(BatchSpanProcessor::builder(exporter, Tokio).build())
        .build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("tim-gateway"));
    EXPORTING.store(true, Ordering::Relaxed);
    Ok((provider, layer))
}

/// Makes `span` continue the caller's trace (its `traceparent`), when spans are exported.
pub(crate) fn continue_trace(span: &Span, headers: &http::HeaderMap) {
    if !EXPORTING.load(Ordering::Relaxed) {
        return;
    }
    let extractor = opentelemetry_http::HeaderExtractor(headers);
    let caller = TraceContextPropagator::new().extract(&extractor);
    let _ = span.set_parent(caller);
}

/// Whether spans are exported: callers' contexts and links are worth gathering.
pub(crate) fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The span context of `span` (a caller's), to link a shared call to; `None` when spans are not
/// exported or it has none.
pub(crate) fn caller_of(span: &Span) -> Option<SpanContext> {
    if !exporting() {
        return None;
    }
    let context = span.context();
    let caller = context.span().span_context().clone();
    caller.is_valid().then_some(caller)
}

/// Links `span` (a shared call) to each distinct caller it serves.
pub(crate) fn link_callers(span: &Span, callers: impl IntoIterator<Item = SpanContext>) {
    if !exporting() {
        return;
    }
    let mut linked: Vec<SpanContext> = Vec::new();
    for caller in callers {
        if !linked.iter().any(|l| l.span_id() == caller.span_id()) {
            span.add_link(caller.clone());
            linked.push(caller);
        }
    }
}
