//! OTLP/HTTP export of spans from a real gateway process to an OTLP receiver the test runs: the protobuf
//! requests are decoded and the span tree checked (the request's span under the client's, the store and IB
//! spans under the request's, the IB span's id the parent IB was sent; a Browser Login call under its
//! `/authorize`); an unsampled trace is not exported; shutdown exports what is queued; with no endpoint
//! configured there is no exporter at all.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::Value;

const TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

/// A span as received, with the `service.name` of its resource.
#[derive(Debug, Clone)]
struct Received {
    span: Span,
    service: String,
}

/// An OTLP/HTTP receiver on a free port: answers every POST with 200 and keeps the spans it decoded.
struct Receiver {
    endpoint: String,
    spans: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = spans.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || serve(stream, &kept));
            }
        });
        Receiver { endpoint, spans }
    }

    /// The spans of `trace_id` (hex) once `done` says they are all there; panics with what arrived after 30 s.
    fn wait_for(&self, trace_id: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans: Vec<Received> =
                self.spans.lock().unwrap().iter().filter(|r| hex(&r.span.trace_id) == trace_id).cloned().collect();
            if done(&spans) {
                return spans;
            }
            assert!(Instant::now() < deadline, "the spans of trace {trace_id} never all arrived: {spans:#?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One keep-alive connection: requests with a `Content-Length` body, each decoded as an export request.
fn serve(stream: TcpStream, kept: &Mutex<Vec<Received>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        let mut first = true;
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if first {
                assert!(line.starts_with("POST /v1/traces "), "{line}");
                first = false;
            }
            if line == "\r\n" {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap();
                }
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).unwrap();
        let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("an OTLP protobuf export request");
        for resource_spans in request.resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref()?.value.as_ref())
                .map(|v| match v {
                    AnyValue::StringValue(s) => s.clone(),
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    kept.lock().unwrap().push(Received { span, service: service.clone() });
                }
            }
        }
        let answer = "HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn tracing_yaml(endpoint: &str, delay_ms: u64) -> String {
    format!(
        "tracing:\n  otlp_endpoint: {endpoint}\n  service_name: gateway-under-test\n  export_delay_ms: {delay_ms}\n"
    )
}

/// A proxied GET continuing the test's (sampled) trace; see [`proxied_with`].
async fn proxied_in_trace(gateway: &GatewayProcess, tokens: &Value) -> String {
    proxied_with(gateway, tokens, TRACE_ID, "01").await
}

/// A proxied GET continuing the trace `trace_id` with `flags`, once its access line is written (its spans are
/// recorded before that); the parent id IB received.
async fn proxied_with(gateway: &GatewayProcess, tokens: &Value, trace_id: &str, flags: &str) -> String {
    let answer = send(
        http()
            .get(gateway.url("/api/v3/resource"))
            .bearer_auth(tokens["access_token"].as_str().unwrap())
            .header("traceparent", format!("00-{trace_id}-{CLIENT_SPAN}-{flags}")),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    gateway.log_with(&format!("id={} ", answer.header("x-request-id").unwrap()));
    let traceparent = answer.body["headers"]["traceparent"].as_str().unwrap().to_string();
    assert_eq!(&traceparent[3..35], trace_id);
    traceparent[36..52].to_string()
}

fn kind(received: &Received) -> SpanKind {
    SpanKind::try_from(received.span.kind).unwrap_or(SpanKind::Unspecified)
}

fn is_request(r: &Received) -> bool {
    kind(r) == SpanKind::Server
}

fn is_ib_call(r: &Received) -> bool {
    kind(r) == SpanKind::Client && r.span.name.starts_with("IB ")
}

fn is_store(r: &Received) -> bool {
    r.span.name.starts_with("store ")
}

/// Threads of the gateway process named `name` (the exporter's own thread is `otlp-export`).
fn threads_named(gateway: &GatewayProcess, name: &str) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{}/task", gateway.pid())).unwrap();
    tasks
        .flatten()
        .filter(|task| std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim() == name))
        .count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_proxied_request_exports_its_span_tree_under_the_clients_span() {
    let receiver = Receiver::start();
    let (gateway, mock) = gateway_and_mock(&tracing_yaml(&receiver.endpoint, 100)).await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let ib_parent = proxied_in_trace(&gateway, &tokens).await;

    let spans = receiver.wait_for(TRACE_ID, |spans| {
        spans.iter().any(is_request) && spans.iter().any(is_ib_call) && spans.iter().any(is_store)
    });
    let requests: Vec<&Received> = spans.iter().filter(|r| is_request(r)).collect();
    assert_eq!(requests.len(), 1, "{spans:#?}");
    let request = &requests[0].span;
    assert_eq!(hex(&request.parent_span_id), CLIENT_SPAN, "the request's span is a child of the client's");
    assert_eq!(request.name, "GET proxy");
    assert!(request.end_time_unix_nano >= request.start_time_unix_nano);
    assert_eq!(requests[0].service, "gateway-under-test");

    let ib_call = spans.iter().find(|r| is_ib_call(r)).unwrap();
    assert_eq!(ib_call.span.parent_span_id, request.span_id, "the IB call is a child of the request");
    assert_eq!(hex(&ib_call.span.span_id), ib_parent, "IB was sent the IB call's span as its parent");

    let store: Vec<&Received> = spans.iter().filter(|r| is_store(r)).collect();
    assert!(store.iter().any(|r| r.span.name == "store get_session"), "{store:#?}");
    for op in &store {
        assert_eq!(op.span.parent_span_id, request.span_id, "{op:#?}");
    }
    for other in spans.iter().filter(|r| !is_request(r)) {
        assert!(other.span.start_time_unix_nano >= request.start_time_unix_nano, "{other:#?}");
    }
    // No attribute carries a secret.
    let dump = format!("{spans:?}");
    for name in ["access_token", "refresh_token", "sid"] {
        let secret = tokens[name].as_str().unwrap();
        assert!(!dump.contains(secret), "{name} in the exported spans");
    }
    assert_eq!(threads_named(&gateway, "otlp-export"), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_exports_the_queued_spans_and_does_not_hang() {
    let receiver = Receiver::start();
    // Spans would wait ten minutes in the batch: only the shutdown's export can deliver them in time.
    let (mut gateway, mock) = gateway_and_mock(&tracing_yaml(&receiver.endpoint, 600_000)).await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    proxied_in_trace(&gateway, &tokens).await;
    gateway.signal("TERM");
    let status = gateway.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status}: {}", gateway.log());
    receiver.wait_for(TRACE_ID, |spans| spans.iter().any(is_request) && spans.iter().any(is_ib_call));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_collector_never_holds_up_a_request() {
    // A port nobody listens on.
    let endpoint = format!("http://127.0.0.1:{}/v1/traces", free_port());
    let (gateway, mock) = gateway_and_mock(&tracing_yaml(&endpoint, 10)).await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    for _ in 0..3 {
        proxied_in_trace(&gateway, &tokens).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_endpoint_there_is_no_exporter() {
    let (gateway, mock) = gateway_and_mock("").await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    proxied_in_trace(&gateway, &tokens).await;
    assert_eq!(threads_named(&gateway, "otlp-export"), 0);
    assert_eq!(threads_named(&gateway, "OpenTelemetry.T"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_login_call_is_a_child_of_the_authorize_request() {
    let receiver = Receiver::start();
    let (gateway, mock) = gateway_and_mock(&tracing_yaml(&receiver.endpoint, 100)).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let url = format!(
        "{}&platform_url={}",
        gateway.url(&format!("/authorize?{}", authorize_query("t"))),
        urlencode(&mock.origin)
    );
    let started = http()
        .get(url)
        .header("Accept", "application/json")
        .header("traceparent", format!("00-{trace_id}-{CLIENT_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), 200);
    let ib_parent = mock_trace(&mock).await["token"]["traceparent"].as_str().unwrap()[36..52].to_string();

    let is_login_call = |r: &Received| kind(r) == SpanKind::Client && r.span.name == "IB browser login";
    let spans = receiver.wait_for(trace_id, |spans| spans.iter().any(is_request) && spans.iter().any(is_login_call));
    let request = spans.iter().find(|r| is_request(r)).unwrap();
    assert_eq!(request.span.name, "GET authorize");
    assert_eq!(hex(&request.span.parent_span_id), CLIENT_SPAN);
    let login_call = spans.iter().find(|r| is_login_call(r)).unwrap();
    assert_eq!(login_call.span.parent_span_id, request.span.span_id);
    assert_eq!(hex(&login_call.span.span_id), ib_parent, "IB was sent the login call's span as its parent");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unsampled_trace_is_not_exported() {
    let receiver = Receiver::start();
    let (gateway, mock) = gateway_and_mock(&tracing_yaml(&receiver.endpoint, 100)).await;
    let tokens = tokens_for(&gateway, &mock, "").await;
    let unsampled = "11111111111111111111111111111111";
    proxied_with(&gateway, &tokens, unsampled, "00").await;
    // A sampled request after it: once its spans are in, the unsampled one's would be too.
    proxied_in_trace(&gateway, &tokens).await;
    receiver.wait_for(TRACE_ID, |spans| spans.iter().any(is_request) && spans.iter().any(is_ib_call));
    let exported = receiver.spans.lock().unwrap().iter().filter(|r| hex(&r.span.trace_id) == unsampled).count();
    assert_eq!(exported, 0);
}

/// With `sample_ratio: 0` the operator exports nothing: a caller's sampled flag does not change that unless the
/// caller is a trusted proxy (the edge that made the sampling decision).
#[tokio::test(flavor = "multi_thread")]
async fn only_a_trusted_proxys_sampled_flag_overrides_a_sample_ratio_of_zero() {
    let receiver = Receiver::start();
    let tracing = tracing_yaml(&receiver.endpoint, 100) + "  sample_ratio: 0\n";
    let untrusted = GatewayProcess::start(&tracing);
    let trusted = GatewayProcess::start_full(&tracing, None, "", "  trusted_proxies: ['127.0.0.1']\n");
    let mock = start_mock(Default::default()).await;
    let forced = "22222222222222222222222222222222";
    let tokens = tokens_for(&untrusted, &mock, "").await;
    proxied_with(&untrusted, &tokens, forced, "01").await;
    let tokens = tokens_for(&trusted, &mock, "").await;
    proxied_in_trace(&trusted, &tokens).await;
    // The trusted caller's trace is exported; by then the untrusted one's, batched first, would be too.
    receiver.wait_for(TRACE_ID, |spans| spans.iter().any(is_request) && spans.iter().any(is_ib_call));
    std::thread::sleep(Duration::from_millis(500));
    let exported = receiver.spans.lock().unwrap().iter().filter(|r| hex(&r.span.trace_id) == forced).count();
    assert_eq!(exported, 0, "an untrusted caller's sampled flag made the gateway export");
}
