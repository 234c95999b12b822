//! Optional export of the gateway's spans over OTLP/HTTP (protobuf), when `tracing.otlp_endpoint` is set:
//! the request (a server span, child of the client's `traceparent`), each store operation and each call to IB
//! (children of the request; an IB call's span id is the parent id IB is sent).
//!
//! Spans are recorded whole, when the work they time has ended: the caller knows the ids, the times and the
//! outcome, and hands them over in one call ([`record`]) that queues them for a batch exporter on a thread of
//! its own (a full queue drops spans, never waits). When export is off, [`enabled`] is false and callers build
//! nothing: no span object, no exporter, no thread. Attributes never carry a token, a `sid`, a path or a query.
//!
//! One exporter per process, made on first use: Pingora may daemonize (fork) after start-up, and a thread
//! started before that would not survive it.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use opentelemetry::trace::{SpanContext as OtelContext, SpanKind, Status, TraceFlags, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SpanData, SpanEvents, SpanLinks, SpanProcessor,
};
use opentelemetry_sdk::Resource;

use super::{SpanContext, SpanId, TraceId};
use crate::config::TracingConfig;

static EXPORT: OnceLock<Export> = OnceLock::new();

struct Export {
    config: TracingConfig,
    scope: InstrumentationScope,
    /// `None` inside: the exporter could not be made (logged once); spans are then dropped.
    processor: OnceLock<Option<BatchSpanProcessor>>,
}

impl Export {
    fn processor(&self) -> Option<&BatchSpanProcessor> {
        self.processor
            .get_or_init(|| {
                start(&self.config)
                    .inspect_err(|e| log::error!("tracing.otlp_endpoint: spans will not be exported: {e}"))
                    .ok()
            })
            .as_ref()
    }
}

/// Turns export on for this process when `tracing.otlp_endpoint` is set (the first call decides).
pub fn install(config: &TracingConfig) {
    if config.otlp_endpoint.is_some() {
        let scope = InstrumentationScope::builder("ib-oauth-gateway").with_version(env!("CARGO_PKG_VERSION")).build();
        let _ = EXPORT.set(Export { config: config.clone(), scope, processor: OnceLock::new() });
    }
}

/// Whether spans are exported: callers build a span only when this is true.
pub fn enabled() -> bool {
    EXPORT.get().is_some()
}

/// What kind of work a span timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request the gateway answered.
    Server,
    /// A call the gateway made (IB, the store).
    Client,
}

/// A span whose work has ended.
#[derive(Debug)]
pub struct FinishedSpan {
    pub name: Cow<'static, str>,
    pub kind: Kind,
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// The parent span, and whether it is another process's (the client's `traceparent`).
    pub parent: Option<(SpanId, bool)>,
    pub start: SystemTime,
    pub end: SystemTime,
    pub attributes: Vec<KeyValue>,
    pub failed: bool,
}

impl FinishedSpan {
    /// A span of ours under `parent` (a new span id), from `start` until now.
    pub fn child(parent: SpanContext, name: impl Into<Cow<'static, str>>, kind: Kind, start: SystemTime) -> Self {
        Self::child_with_id(parent, SpanId::random(), name, kind, start)
    }

    /// [`Self::child`] with the span id given (one already sent to IB as its parent).
    pub fn child_with_id(
        parent: SpanContext,
        span_id: SpanId,
        name: impl Into<Cow<'static, str>>,
        kind: Kind,
        start: SystemTime,
    ) -> Self {
        FinishedSpan {
            name: name.into(),
            kind,
            trace_id: parent.trace_id,
            span_id,
            parent: Some((parent.span_id, false)),
            start,
            end: SystemTime::now(),
            attributes: Vec::new(),
            failed: false,
        }
    }
}

/// Queues a span for export (never blocks; nothing when export is off).
pub fn record(span: FinishedSpan) {
    let Some(export) = EXPORT.get() else { return };
    let Some(processor) = export.processor() else { return };
    let flags = TraceFlags::SAMPLED;
    let context = OtelContext::new(
        opentelemetry::trace::TraceId::from_bytes(span.trace_id.to_bytes()),
        opentelemetry::trace::SpanId::from_bytes(span.span_id.to_bytes()),
        flags,
        false,
        TraceState::NONE,
    );
    let (parent_span_id, parent_span_is_remote) = match span.parent {
        Some((parent, remote)) => (opentelemetry::trace::SpanId::from_bytes(parent.to_bytes()), remote),
        None => (opentelemetry::trace::SpanId::INVALID, false),
    };
    processor.on_end(SpanData {
        span_context: context,
        parent_span_id,
        parent_span_is_remote,
        span_kind: match span.kind {
            Kind::Server => SpanKind::Server,
            Kind::Client => SpanKind::Client,
        },
        name: span.name,
        start_time: span.start,
        end_time: span.end.max(span.start),
        attributes: span.attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: if span.failed { Status::error("") } else { Status::Unset },
        instrumentation_scope: export.scope.clone(),
    });
}

/// Exports what is queued and stops the exporter, waiting at most `timeout` (at shutdown).
pub fn shutdown(timeout: Duration) {
    let processor = EXPORT.get().and_then(|export| export.processor.get()).and_then(Option::as_ref);
    if let Some(processor) = processor {
        if let Err(e) = processor.shutdown_with_timeout(timeout) {
            log::warn!("exporting the last spans: {e}");
        }
    }
}

/// The batch exporter, posting to the endpoint from a runtime of its own.
fn start(config: &TracingConfig) -> Result<BatchSpanProcessor, String> {
    let endpoint = config.otlp_endpoint.clone().unwrap_or_default();
    let timeout = Duration::from_millis(config.export_timeout_ms);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(ExportClient::start(timeout)?)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint)
        .with_timeout(timeout)
        .build()
        .map_err(|e| e.to_string())?;
    let batch =
        BatchConfigBuilder::default().with_scheduled_delay(Duration::from_millis(config.export_delay_ms)).build();
    let mut processor = BatchSpanProcessor::builder(exporter).with_batch_config(batch).build();
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    processor.set_resource(&resource);
    Ok(processor)
}

/// The exporter's HTTP client: the `reqwest` the gateway already uses, driven by a one-thread runtime of its
/// own (the batch exporter runs on a plain thread, outside any runtime, and Pingora's runtimes are not ours).
#[derive(Debug)]
struct ExportClient {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl ExportClient {
    fn start(timeout: Duration) -> Result<Self, String> {
        // Err only means a default is already installed, which is what we want.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        Ok(ExportClient { http, runtime: handle })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let http = self.http.clone();
        let request = reqwest::Request::try_from(request)?;
        let response = self
            .runtime
            .spawn(async move {
                let response = http.execute(request).await?;
                let mut answer = http::Response::builder().status(response.status());
                for (name, value) in response.headers() {
                    answer = answer.header(name, value);
                }
                let body = response.bytes().await?;
                Ok::<_, opentelemetry_http::HttpError>(answer.body(body)?)
            })
            .await??;
        Ok(response)
    }
}
