//! The benchmark filter (bench/): the work of a typical small filter, in
//! three modes picked by the plugin configuration.
//!
//! - `headers` (default): reads one request header and adds one response
//!   header;
//! - `body_pass`: looks at the response body as it streams, unchanged;
//! - `body_rewrite`: buffers the whole response body and upper-cases it.

use proxy_wasm::traits::*;
use proxy_wasm::types::*;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(BenchRoot { mode: Mode::Headers }) });
}}

#[derive(Clone, Copy)]
enum Mode {
    Headers,
    BodyPass,
    BodyRewrite,
}

struct BenchRoot {
    mode: Mode,
}

impl Context for BenchRoot {}

impl RootContext for BenchRoot {
    fn on_configure(&mut self, _: usize) -> bool {
        self.mode = match self.get_plugin_configuration().as_deref() {
            Some(b"body_pass") => Mode::BodyPass,
            Some(b"body_rewrite") => Mode::BodyRewrite,
            _ => Mode::Headers,
        };
        true
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Bench { mode: self.mode, request_id: None }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Bench {
    mode: Mode,
    request_id: Option<String>,
}

impl Context for Bench {}

impl HttpContext for Bench {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        if let Mode::Headers = self.mode {
            self.request_id = self.get_http_request_header("x-request-id");
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
            Mode::Headers | Mode::BodyPass => Action::Continue,
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
