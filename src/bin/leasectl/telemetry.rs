//! OTLP export of the library's metrics and spans, only when the standard variables ask for
//! it (`OTEL_EXPORTER_OTLP_ENDPOINT`, or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` /
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` for one signal); the protocol is
//! `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`, the default, or `grpc`), and the exporters
//! read the other `OTEL_*` variables themselves. With none set nothing is set up: the
//! library's instruments stay no-ops and no span leaves the process.
//!
//! The providers are made before the command's runtime starts and shut down (which flushes
//! them) after it ended, whatever the exit: a finished or lost `exec`, Ctrl-C, an error.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use opentelemetry_sdk::Resource;

use crate::output::errln;

/// The exporting providers; [`Telemetry::shutdown`] flushes them.
pub struct Telemetry {
    meters: Option<SdkMeterProvider>,
    tracers: Option<SdkTracerProvider>,
    /// gRPC (tonic) needs a Tokio runtime of its own beside the command's.
    _runtime: Option<tokio::runtime::Runtime>,
}

/// A variable that is set and not empty.
fn set(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|value| !value.is_empty())
}

/// Whether `signal`'s protocol (its own variable, else the common one) is gRPC.
fn grpc(signal: &str) -> bool {
    let own = format!("OTEL_EXPORTER_OTLP_{signal}_PROTOCOL");
    std::env::var(own)
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .is_ok_and(|protocol| protocol.trim() == "grpc")
}

impl Telemetry {
    /// Sets up export when the variables ask for it (`None` otherwise). A failure to set up
    /// is a note on stderr, never the command's failure.
    pub fn start() -> Option<Telemetry> {
        let common = set("OTEL_EXPORTER_OTLP_ENDPOINT");
        let metrics = common || set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
        let traces = common || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        if !metrics && !traces {
            return None;
        }
        if set("LEASECTL_METRICS_LEASE_NAME") {
            leasectl::telemetry::record_lease_names(true);
        }
        let runtime = (metrics && grpc("METRICS") || traces && grpc("TRACES")).then(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("leasectl-otlp")
                .enable_all()
                .build()
        });
        let runtime = match runtime.transpose() {
            Ok(runtime) => runtime,
            Err(error) => {
                errln!("leasectl: OTLP export is off: {error}");
                return None;
            }
        };
        let _entered = runtime.as_ref().map(tokio::runtime::Runtime::enter);
        let resource = Resource::builder().with_service_name("leasectl").build();
        let meters = metrics
            .then(|| opentelemetry_otlp::MetricExporter::builder().build())
            .and_then(|built| {
                built
                    .map_err(|e| errln!("leasectl: no OTLP metrics: {e}"))
                    .ok()
            })
            .map(|exporter| {
                SdkMeterProvider::builder()
                    .with_periodic_exporter(exporter)
                    .with_resource(resource.clone())
                    .build()
            });
        if let Some(meters) = &meters {
            opentelemetry::global::set_meter_provider(meters.clone());
        }
        let tracers = traces
            .then(|| opentelemetry_otlp::SpanExporter::builder().build())
            .and_then(|built| {
                built
                    .map_err(|e| errln!("leasectl: no OTLP traces: {e}"))
                    .ok()
            })
            .map(|exporter| {
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(resource)
                    .build()
            });
        drop(_entered);
        Some(Telemetry {
            meters,
            tracers,
            _runtime: runtime,
        })
    }

    /// The tracer that the `tracing` bridge hands spans to (`None` without trace export).
    pub fn tracer(&self) -> Option<Tracer> {
        self.tracers.as_ref().map(|t| t.tracer("leasectl"))
    }

    /// Flushes and stops the providers (each waits for its last export).
    pub fn shutdown(self) {
        if let Some(tracers) = self.tracers {
            if let Err(error) = tracers.shutdown() {
                tracing::debug!(%error, "OTLP trace export at shutdown");
            }
        }
        if let Some(meters) = self.meters {
            if let Err(error) = meters.shutdown() {
                tracing::debug!(%error, "OTLP metrics export at shutdown");
            }
        }
    }
}
