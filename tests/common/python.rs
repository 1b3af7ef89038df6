//! Small HTTP services in Python for the tests where kinfrad runs a service itself
//! (`[[service]] command`): real child processes with a pid, output and a port of their own.

use std::path::Path;

/// Write a Python HTTP/1.1 server to `path` and return the path as text. It runs `before` at
/// start, prints `INFO listening on PORT`, then answers every GET with 200 and the body the
/// expression `body` makes (bytes), after running `on_get` (if not empty). The port is its
/// first argument; `PORT` is in its environment.
pub fn python_http_server(path: &Path, before: &str, on_get: &str, body: &str) -> String {
    let on_get = if on_get.is_empty() {
        String::new()
    } else {
        format!("\n        {on_get}")
    };
    std::fs::write(
        path,
        format!(
            r#"
import http.server, os, sys, time
{before}
print("INFO listening on", os.environ["PORT"], flush=True)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):{on_get}
        body = {body}
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#
        ),
    )
    .expect("write server");
    path.display().to_string()
}

/// A Python HTTP service that prints `banner` at start and a line per request.
pub fn python_app(dir: &Path, banner: &str) -> String {
    python_http_server(
        &dir.join("app.py"),
        &format!("print({banner:?}, flush=True)"),
        r#"print("INFO served", self.path, flush=True)"#,
        r#"b"app pid=%d" % os.getpid()"#,
    )
}

/// A Python HTTP server that answers every GET with `tag`, its pid, its port and its
/// NOTIFY_SOCKET, after `delay` seconds of "startup" (written to `dir/TAG.py`).
pub fn server_script(dir: &Path, tag: &str, delay: f32) -> String {
    python_http_server(
        &dir.join(format!("{tag}.py")),
        &format!("time.sleep({delay})"),
        "",
        &format!(
            r#"("{tag} pid=%d port=%s notify=%s" % (os.getpid(), os.environ["PORT"], os.environ.get("NOTIFY_SOCKET", "none"))).encode()"#
        ),
    )
}

/// A `[[service]]` running a `server_script` on a free port at `/`, probed every 200 ms.
pub fn python_service(name: &str, script: &str) -> String {
    format!(
        r#"
[[service]]
name = "{name}"
command = ["python3", "{script}", "{{port}}"]
preferred_port = {}
routes = ["/"]
health_check = {{ interval = "200ms" }}
"#,
        super::free_port()
    )
}
