//! The example filter of the README: answers `/hello` itself, tags the
//! requests it lets through, and signs every response.
//!
//! Plugin configuration: the greeting to answer with.

use log::info;
use proxy_wasm::traits::*;
use proxy_wasm::types::*;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(HelloRoot { greeting: String::new() })
    });
}}

struct HelloRoot {
    greeting: String,
}

impl Context for HelloRoot {}

impl RootContext for HelloRoot {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.greeting = String::from_utf8_lossy(&config).into_owned();
        if self.greeting.is_empty() {
            self.greeting = "Hello from Proxy-Wasm".to_string();
        }
        true
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Hello { context_id, greeting: self.greeting.clone() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Hello {
    context_id: u32,
    greeting: String,
}

impl Context for Hello {}

impl HttpContext for Hello {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let path = self.get_http_request_header(":path").unwrap_or_default();
        if path == "/hello" {
            let body = format!("{}\n", self.greeting);
            self.send_http_response(200, vec![("x-answered-by", "hello.wasm")], Some(body.as_bytes()));
            return Action::Pause;
        }
        let agent = self.get_http_request_header("user-agent").unwrap_or_default();
        info!("#{} {} for {}", self.context_id, path, agent);
        self.set_http_request_header("x-hello", Some(&self.greeting));
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.add_http_response_header("x-powered-by", "ngx_proxy_wasm");
        Action::Continue
    }
}
