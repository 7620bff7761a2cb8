"""moto_server with one request at a time.

moto 5.2.5's DynamoDB checks a ConditionExpression and writes the item without a lock,
so concurrent conditional updates of one item can both succeed (measured: 6 of 100
rounds of 8 concurrent `UpdateItem`s had two winners). Real DynamoDB never does that,
and chief's lease protocol depends on it. This runs moto's own WSGI app exactly as
`moto_server` does, but holds one lock for each whole request, which makes every
conditional write atomic. moto's backends are pure Python under the GIL, so throughput
is about the same.

Usage: moto_serialized.py HOST PORT
"""

import signal
import sys
import threading

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serialized(environ, start_response):
        with lock:
            # Materialise the body inside the lock: the response is built by then anyway.
            return [b"".join(app(environ, start_response))]

    run_simple(
        host,
        port,
        serialized,
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
