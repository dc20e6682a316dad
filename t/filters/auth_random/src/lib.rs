//! Authorization by callout, as Envoy's `http_auth_random` example of the
//! Rust SDK does it: each request asks the `httpbin` cluster for one
//! random byte and waits; an even byte lets the request through, an odd
//! one answers 403. Responses get a `Powered-By` header.

use std::time::Duration;

use log::info;
use proxy_wasm::traits::*;
use proxy_wasm::types::*;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(AuthRandom) });
}}

struct AuthRandom;

impl HttpContext for AuthRandom {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let headers = vec![(":method", "GET"), (":path", "/bytes/1"), (":authority", "httpbin.org")];
        self.dispatch_http_call("httpbin", headers, None, vec![], Duration::from_secs(5))
            .unwrap();
        Action::Pause
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.set_http_response_header("Powered-By", Some("proxy-wasm"));
        Action::Continue
    }
}

impl Context for AuthRandom {
    fn on_http_call_response(&mut self, _: u32, _: usize, body_size: usize, _: usize) {
        let body = self.get_http_call_response_body(0, body_size).unwrap_or_default();
        if body.first().map_or(false, |byte| byte % 2 == 0) {
            info!("Access granted.");
            self.resume_http_request();
            return;
        }
        info!("Access forbidden.");
        self.send_http_response(403, vec![("Powered-By", "proxy-wasm")], Some(b"Access forbidden.\n"));
    }
}
