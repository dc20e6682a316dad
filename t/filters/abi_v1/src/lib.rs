//! A filter of Proxy-Wasm ABI 0.1.0 (Rust SDK 0.1): two-argument header
//! callbacks, `proxy_get_configuration`, and missing headers answered with
//! an empty value.

use log::info;
use proxy_wasm::traits::*;
use proxy_wasm::types::*;

#[no_mangle]
pub fn _start() {
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { config: String::new() }) });
}

struct Root {
    config: String,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, _: usize) -> bool {
        let vm = self.get_configuration().unwrap_or_default();
        info!("abi_v1 vm configuration: \"{}\"", String::from_utf8_lossy(&vm));
        true
    }

    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_configuration().unwrap_or_default();
        self.config = String::from_utf8_lossy(&config).into_owned();
        info!("abi_v1 plugin configuration: \"{}\"", self.config);
        true
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http { config: self.config.clone() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    config: String,
}

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, headers: usize) -> Action {
        info!("abi_v1 on_request_headers: {} headers", headers);
        let missing = self.get_http_request_header("x-missing");
        info!("abi_v1 missing header: {:?}", missing);
        let path = self.get_http_request_header(":path").unwrap_or_default();
        info!("abi_v1 path: {}", path);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, headers: usize) -> Action {
        info!("abi_v1 on_response_headers: {} headers", headers);
        self.add_http_response_header("x-abi-v1", &self.config);
        Action::Continue
    }
}
