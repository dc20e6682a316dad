//! Authorization through a gRPC service, as Envoy's `grpc_auth_random`
//! example of the Rust SDK does it: each request asks `test.Auth/Check` on
//! the target the plugin configuration names, with the request's `x-user`
//! header as metadata, and waits. OK lets the request through with the
//! answer in `x-auth`; any other status answers 403 with the status's
//! message, or, for a gRPC request, the same status as gRPC.

use std::time::Duration;

use log::info;
use proxy_wasm::traits::*;
use proxy_wasm::types::*;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

#[derive(Default)]
struct Root {
    target: String,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.target = String::from_utf8_lossy(&config).trim().to_string();
        !self.target.is_empty()
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(GrpcAuth { target: self.target.clone(), grpc: false }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct GrpcAuth {
    target: String,
    grpc: bool,
}

impl HttpContext for GrpcAuth {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        self.grpc = self
            .get_http_request_header("content-type")
            .map_or(false, |value| value.starts_with("application/grpc"));
        let user = self.get_http_request_header("x-user").unwrap_or_default();
        let path = self.get_http_request_header(":path").unwrap_or_default();
        match self.dispatch_grpc_call(
            &self.target,
            "test.Auth",
            "Check",
            vec![("x-user", user.as_bytes())],
            Some(path.as_bytes()),
            Duration::from_secs(5),
        ) {
            Ok(_) => Action::Pause,
            Err(status) => {
                info!("cannot ask {}: {:?}", self.target, status);
                self.send_http_response(503, vec![], Some(b"authorization unavailable\n"));
                Action::Pause
            }
        }
    }
}

impl Context for GrpcAuth {
    fn on_grpc_call_response(&mut self, _: u32, status_code: u32, response_size: usize) {
        if status_code == GrpcStatusCode::Ok as u32 {
            let answer = self.get_grpc_call_response_body(0, response_size).unwrap_or_default();
            info!("Access granted.");
            self.set_http_request_header("x-auth", Some(&String::from_utf8_lossy(&answer)));
            self.resume_http_request();
            return;
        }
        let (code, message) = self.get_grpc_status();
        let message = message.unwrap_or_default();
        info!("Access forbidden: {} {}", code, message);
        if self.grpc {
            self.send_grpc_response(grpc_status(code), Some(&message), vec![]);
        } else {
            self.send_http_response(403, vec![], Some(format!("{}\n", message).as_bytes()));
        }
    }
}

fn grpc_status(code: u32) -> GrpcStatusCode {
    match code {
        7 => GrpcStatusCode::PermissionDenied,
        14 => GrpcStatusCode::Unavailable,
        16 => GrpcStatusCode::Unauthenticated,
        _ => GrpcStatusCode::Aborted,
    }
}
