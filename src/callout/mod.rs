//! HTTP callouts (`proxy_http_call`): the HTTP/1.1 a call speaks over the
//! connection nginx opens for it.

pub mod http1;
