//! Real OTLP receivers on a free port: a small HTTP server that decodes the protobuf bodies
//! posted to `/v1/metrics` and `/v1/traces` and answers 200, and a gRPC one (tonic, with the
//! collector services of `opentelemetry-proto`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::metric;
use prost::Message;

/// What arrived so far.
#[derive(Default)]
struct Received {
    metrics: Vec<ExportMetricsServiceRequest>,
    traces: Vec<ExportTraceServiceRequest>,
}

pub struct Receiver {
    pub port: u16,
    received: Arc<Mutex<Received>>,
}

/// One data point of a metric: its attributes (as text) and its value.
#[derive(Debug, Clone)]
pub struct Point {
    pub attributes: Vec<(String, String)>,
    pub value: f64,
}

impl Point {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// One span: its name and attributes (as text).
#[derive(Debug, Clone)]
pub struct Span {
    pub name: String,
    pub attributes: Vec<(String, String)>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let port = listener.local_addr().expect("its address").port();
        let received = Arc::new(Mutex::new(Received::default()));
        let shared = received.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let shared = shared.clone();
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        Receiver { port, received }
    }

    /// A gRPC receiver (the OTLP collector services), served on a runtime of its own.
    pub fn start_grpc() -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let port = listener.local_addr().expect("its address").port();
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let received = Arc::new(Mutex::new(Received::default()));
        let service = Grpc(received.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let incoming = async_stream(listener);
                tonic::transport::Server::builder()
                    .add_service(MetricsServiceServer::new(service.clone()))
                    .add_service(TraceServiceServer::new(service))
                    .serve_with_incoming(incoming)
                    .await
                    .expect("serve gRPC");
            });
        });
        Receiver { port, received }
    }

    /// `OTEL_EXPORTER_OTLP_ENDPOINT` for this receiver.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every data point of the metric `name` received so far.
    pub fn points(&self, name: &str) -> Vec<Point> {
        let received = self.received.lock().expect("received");
        let mut points = Vec::new();
        let metrics = received
            .metrics
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|r| &r.scope_metrics)
            .flat_map(|s| &s.metrics)
            .filter(|m| m.name == name);
        for metric in metrics {
            match &metric.data {
                Some(metric::Data::Sum(sum)) => {
                    for p in &sum.data_points {
                        let value = match p.value {
                            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(v)) => v as f64,
                            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(v)) => v,
                            None => 0.0,
                        };
                        points.push(Point {
                            attributes: text(&p.attributes),
                            value,
                        });
                    }
                }
                Some(metric::Data::Histogram(histogram)) => {
                    for p in &histogram.data_points {
                        points.push(Point {
                            attributes: text(&p.attributes),
                            value: p.count as f64,
                        });
                    }
                }
                _ => {}
            }
        }
        points
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        let received = self.received.lock().expect("received");
        received
            .traces
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
            .map(|s| Span {
                name: s.name.clone(),
                attributes: text(&s.attributes),
            })
            .collect()
    }
}

/// The accepted connections of `listener`, as a stream.
fn async_stream(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    })
}

#[derive(Clone)]
struct Grpc(Arc<Mutex<Received>>);

#[tonic::async_trait]
impl MetricsService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        self.0.lock().expect("received").metrics.push(request);
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        self.0.lock().expect("received").traces.push(request);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn text(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|kv| {
            let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(any_value::Value::StringValue(s)) => s.clone(),
                Some(any_value::Value::IntValue(i)) => i.to_string(),
                Some(any_value::Value::BoolValue(b)) => b.to_string(),
                Some(any_value::Value::DoubleValue(d)) => d.to_string(),
                other => format!("{other:?}"),
            };
            (kv.key.clone(), value)
        })
        .collect()
}

/// Serves the requests of one connection (keep-alive) until it closes.
fn serve(stream: TcpStream, received: &Mutex<Received>) {
    let mut writer = stream.try_clone().expect("clone the stream");
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        let mut length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        {
            let mut received = received.lock().expect("received");
            match path.as_str() {
                "/v1/metrics" => received.metrics.push(
                    ExportMetricsServiceRequest::decode(body.as_slice()).expect("OTLP metrics"),
                ),
                "/v1/traces" => received
                    .traces
                    .push(ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP traces")),
                _ => {}
            }
        }
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
