"""A minimal OpenTelemetry collector: receives OTLP/HTTP trace exports
(`POST /v1/traces`, protobuf) on loopback, decodes them with the
OpenTelemetry protocol's own messages and keeps every span, for the tests
to read."""
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)


def attribute(value):
    """The Python value of an OTLP AnyValue."""
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


class Collector:
    def __init__(self):
        self.spans = []  # dicts: name, trace_id, span_id, parent_id, attributes, service
        self.lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path != "/v1/traces" or self.headers.get("content-type") != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                export = ExportTraceServiceRequest()
                export.ParseFromString(body)
                collector.keep(export)
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def keep(self, export):
        with self.lock:
            for resource_spans in export.resource_spans:
                service = {a.key: attribute(a.value) for a in resource_spans.resource.attributes}.get("service.name")
                for scope in resource_spans.scope_spans:
                    for span in scope.spans:
                        self.spans.append({
                            "name": span.name,
                            "trace_id": span.trace_id.hex(),
                            "span_id": span.span_id.hex(),
                            "parent_id": span.parent_span_id.hex(),
                            "attributes": {a.key: attribute(a.value) for a in span.attributes},
                            "service": service,
                        })

    def stop(self):
        self.server.shutdown()
