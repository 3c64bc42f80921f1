"""The HTTP side of tcpwatchd: a bounded server for /metrics and the JSON API, TLS and basic auth.

`server.WebServer` does the I/O (one selector thread, a fixed worker pool); `http` parses and renders
HTTP/1.1 as pure functions; `webconfig` reads the exporter-toolkit web config; `tls` and `auth` turn it
into an SSLContext and a basic-auth check; `endpoint` is what the daemon binds and reloads.
"""
