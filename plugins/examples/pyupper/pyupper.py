#!/usr/bin/python3
"""pyupper: a katka processor plugin in Python (Debian's python3-grpcio).

It upper-cases every record value and writes it to the instance's output
topic. It shows the whole non-Go contract: check the magic cookie, serve the
Processor service and grpc.health.v1.Health on 127.0.0.1, print the go-plugin
handshake line on stdout, log to stderr, and exit when katka closes stdin or
kills the process.
"""
import os
import sys
import json
import time
from concurrent import futures

import grpc

sys.dont_write_bytecode = True  # keep the plugin directory (and its checksums) clean
# katka runs a sealed copy of this file as /proc/self/fd/3, so __file__ is
# not in the plugin's directory: katka names that in KATKA_PLUGIN_DIR.
sys.path.insert(0, os.environ.get("KATKA_PLUGIN_DIR") or os.path.dirname(os.path.abspath(__file__)))
import katka_plugin_pb2 as pb  # noqa: E402
import katka_plugin_pb2_grpc as pbg  # noqa: E402

COOKIE_KEY = "KATKA_PLUGIN_COOKIE"
COOKIE_VALUE = "katka-plugin-v1-3f1e6c2a"
CORE_PROTOCOL = 1   # go-plugin's own protocol version
APP_PROTOCOL = 1    # katka's plugin protocol version (sdk.ProtocolVersion)


def log(level, msg, **fields):
    """One JSON line on stderr; katka copies it into its log."""
    fields.update({"@level": level, "@message": msg})
    print(json.dumps(fields), file=sys.stderr, flush=True)


class Upper(pbg.ProcessorServicer):
    def Configure(self, request, context):
        self.instance = request.instance
        log("info", "configured", instance=request.instance, settings=dict(request.settings))
        return pb.ConfigureResponse()

    def Process(self, request, context):
        out = pb.ProcessResponse()
        for r in request.records:
            o = out.records.add()
            o.key = r.key
            o.key_null = r.key_null
            o.value = r.value.upper()
            o.timestamp_ms = r.timestamp_ms
            o.headers.extend(r.headers)
        return out


def health_check(request, context):
    # grpc.health.v1.HealthCheckResponse{status: SERVING}, encoded by hand.
    return b"\x08\x01"


def main():
    if os.environ.get(COOKIE_KEY) != COOKIE_VALUE:
        print("This is a katka plugin: katka starts it (see plugins/README.md).", file=sys.stderr)
        sys.exit(1)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), options=[
        ("grpc.max_receive_message_length", 64 << 20), ("grpc.max_send_message_length", 64 << 20)])
    pbg.add_ProcessorServicer_to_server(Upper(), server)
    raw = lambda b: b  # noqa: E731
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "grpc.health.v1.Health",
        {"Check": grpc.unary_unary_rpc_method_handler(health_check, request_deserializer=raw, response_serializer=raw)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"{CORE_PROTOCOL}|{APP_PROTOCOL}|tcp|127.0.0.1:{port}|grpc", flush=True)
    log("info", "pyupper serving", port=port)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
