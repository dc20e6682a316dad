//! The benchmark filter (bench/): the work of a typical small filter, in
//! three modes picked by the plugin configuration.
//!
//! - `headers` (default): reads one request header and adds one response
//!   header;
//! - `body_pass`: looks at the response body as it streams, unchanged;
//! - `body_rewrite`: buffers the whole response body and upper-cases it;
//! - `shared`: counts requests across workers, twice: a number in the
//!   shared key-value store incremented with CAS, and a counter metric.

use proxy_wasm::traits::*;
use proxy_wasm::types::*;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(BenchRoot { mode: Mode::Headers, metric: 0 }) });
}}

#[derive(Clone, Copy)]
enum Mode {
    Headers,
    BodyPass,
    BodyRewrite,
    Shared,
}

struct BenchRoot {
    mode: Mode,
    /// The counter metric (`shared` mode).
    metric: u32,
}

impl Context for BenchRoot {}

impl RootContext for BenchRoot {
    fn on_configure(&mut self, _: usize) -> bool {
        self.mode = match self.get_plugin_configuration().as_deref() {
            Some(b"body_pass") => Mode::BodyPass,
            Some(b"body_rewrite") => Mode::BodyRewrite,
            Some(b"shared") => Mode::Shared,
            _ => Mode::Headers,
        };
        if let Mode::Shared = self.mode {
            self.metric = proxy_wasm::hostcalls::define_metric(MetricType::Counter, "requests").unwrap();
        }
        true
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Bench { mode: self.mode, request_id: None, metric: self.metric }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Bench {
    mode: Mode,
    request_id: Option<String>,
    metric: u32,
}

/// Adds one to the number stored at `key`, retrying on CAS mismatches.
fn increment(key: &str) {
    loop {
        let (value, cas) = proxy_wasm::hostcalls::get_shared_data(key).unwrap();
        let n = value.map_or(0, |v| u64::from_le_bytes(v.try_into().unwrap_or([0; 8])));
        match proxy_wasm::hostcalls::set_shared_data(key, Some(&(n + 1).to_le_bytes()), cas) {
            Err(Status::CasMismatch) => continue,
            _ => return,
        }
    }
}

impl Context for Bench {}

impl HttpContext for Bench {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        match self.mode {
            Mode::Headers => self.request_id = self.get_http_request_header("x-request-id"),
            Mode::Shared => {
                increment("requests");
                proxy_wasm::hostcalls::increment_metric(self.metric, 1).unwrap();
            }
            _ => {}
        }
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        if let Mode::Headers = self.mode {
            let value = self.request_id.as_deref().unwrap_or("none");
            self.add_http_response_header("x-bench", value);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        match self.mode {
            Mode::Headers | Mode::BodyPass | Mode::Shared => Action::Continue,
            Mode::BodyRewrite => {
                if !end_of_stream {
                    return Action::Pause;
                }
                if let Some(body) = self.get_http_response_body(0, size) {
                    self.set_http_response_body(0, size, &body.to_ascii_uppercase());
                }
                Action::Continue
            }
        }
    }
}
