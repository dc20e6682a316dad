//! Network (L4) filters for the stream{} tests, one per plugin
//! configuration (its first word):
//!   count                  bytes per direction and connections in
//!                          counters; logs the connection's properties
//!                          and how each side closed
//!   count shared           also counts connections in shared data
//!   bytes                  counts as count does, and logs nothing (the
//!                          benchmark's filter)
//!   rewrite <from> <to>    replaces <from> by <to> in the downstream data
//!                          (a <from> split over reads waits for the rest)
//!   close_on <pattern>     closes the connection when the downstream data
//!                          has <pattern>
//!   hold_upstream <target> holds the upstream's first data until an HTTP
//!                          call to <target> answers, and puts the answer's
//!                          body before it
//!   grpc_hold <target>     holds the downstream's first data until a gRPC
//!                          call (test.Echo/Echo of t/lib/grpc_server.py)
//!                          with a Redis PING answers, and puts the answer
//!                          before it
//!   queue <name>           each new connection puts its source address on
//!                          the shared queue <name>, which the root
//!                          context registered and drains (logging it)
//!   hold_new <ms>          holds each new connection <ms> milliseconds (a
//!                          tick of the root context continues them)
//!   hold_downstream <ms>   holds the downstream's data until the next tick
//!                          (every <ms>), then lets it all go; logs the
//!                          most it was given at once
//!   redis                  counts Redis commands (by name) and turns
//!                          FLUSHALL into an unknown command, which Redis
//!                          refuses; a command split over reads waits for
//!                          the rest
//!   panic_on <pattern>     panics when the downstream data has <pattern>
//!   http                   an HTTP filter of the same module: adds
//!                          x-network-module to responses (a module used
//!                          in both http{} and stream{})

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use log::{info, warn};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, PeerType};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> {
        Box::new(Root {
            mode: Vec::new(),
            metrics: Rc::new(RefCell::new(HashMap::new())),
            held: Rc::new(RefCell::new(Vec::new())),
        })
    });
}}

type Metrics = Rc<RefCell<HashMap<String, u32>>>;

fn count(metrics: &Metrics, name: &str, by: usize) {
    if by == 0 {
        // Envoy refuses an increment by 0
        return;
    }
    let id = *metrics
        .borrow_mut()
        .entry(name.to_string())
        .or_insert_with(|| hostcalls::define_metric(MetricType::Counter, name).unwrap());
    hostcalls::increment_metric(id, by as i64).unwrap();
}

struct Root {
    mode: Vec<String>,
    metrics: Metrics,
    /// Connections `hold_new` holds, continued by the next tick.
    held: Rc<RefCell<Vec<u32>>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _: usize) -> bool {
        let config = self
            .get_plugin_configuration()
            .map(|c| String::from_utf8_lossy(&c).into_owned())
            .unwrap_or_default();
        self.mode = config.split_whitespace().map(String::from).collect();
        if self.mode.first().map(String::as_str) == Some("queue") {
            let name = self.mode.get(1).cloned().unwrap_or_default();
            hostcalls::register_shared_queue(&name).unwrap();
        }
        if matches!(self.mode.first().map(String::as_str), Some("hold_new" | "hold_downstream")) {
            let ms = self.mode.get(1).and_then(|ms| ms.parse().ok()).unwrap_or(100);
            self.set_tick_period(Duration::from_millis(ms));
        }
        true
    }

    fn on_queue_ready(&mut self, queue: u32) {
        while let Ok(Some(item)) = hostcalls::dequeue_shared_queue(queue) {
            info!("dequeued {}", String::from_utf8_lossy(&item));
        }
    }

    fn on_tick(&mut self) {
        for id in self.held.borrow_mut().drain(..) {
            hostcalls::set_effective_context(id).unwrap();
            info!("#{} continued by the tick", id);
            hostcalls::resume_downstream().unwrap();
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        if self.mode.first().map(String::as_str) == Some("http") {
            return Some(ContextType::HttpContext);
        }
        Some(ContextType::StreamContext)
    }

    fn create_http_context(&self, _: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http))
    }

    fn create_stream_context(&self, id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(Connection {
            id,
            mode: self.mode.clone(),
            metrics: self.metrics.clone(),
            held: self.held.clone(),
            call: None,
            waiting: false,
            counted: 0,
            largest: 0,
            released: false,
        }))
    }
}

struct Http;

impl Context for Http {}

impl HttpContext for Http {
    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.add_http_response_header("x-network-module", "http");
        Action::Continue
    }
}

struct Connection {
    id: u32,
    mode: Vec<String>,
    metrics: Metrics,
    held: Rc<RefCell<Vec<u32>>>,
    call: Option<u32>,
    waiting: bool,
    /// redis: the bytes of the held data whose commands were counted.
    counted: usize,
    /// hold_downstream: the most data given at once, and whether the tick
    /// let it go.
    largest: usize,
    released: bool,
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

impl Connection {
    fn mode(&self) -> &str {
        self.mode.first().map(String::as_str).unwrap_or("")
    }

    fn arg(&self, i: usize) -> &str {
        self.mode.get(i).map(String::as_str).unwrap_or("")
    }

    fn property(&self, path: &[&str]) -> String {
        match self.get_property(path.to_vec()) {
            Some(bytes) if bytes.len() == 8 && path.last().map_or(false, |p| p.ends_with("port") || *p == "id") => {
                let mut n = [0u8; 8];
                n.copy_from_slice(&bytes);
                i64::from_le_bytes(n).to_string()
            }
            Some(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            None => "-".into(),
        }
    }

    /// The Redis commands whole in `data` (where the name is, where the
    /// command ends), and how many bytes they take; None when the data is
    /// not RESP.
    fn redis_commands(data: &[u8]) -> Option<(Vec<(usize, usize, usize)>, usize)> {
        let mut commands = Vec::new();
        let mut at = 0;
        'commands: while at < data.len() {
            if data[at] != b'*' {
                return None;
            }
            let line = |from: usize| -> Option<(i64, usize)> {
                let end = find(&data[from..], b"\r\n")? + from;
                let n = std::str::from_utf8(&data[from + 1..end]).ok()?.parse().ok()?;
                Some((n, end + 2))
            };
            let (n, mut next) = match line(at) {
                Some(found) => found,
                None => break,
            };
            let mut name = (0, 0);
            for i in 0..n {
                if next >= data.len() {
                    break 'commands;
                }
                if data[next] != b'$' {
                    return None;
                }
                let (len, start) = match line(next) {
                    Some(found) => found,
                    None => break 'commands,
                };
                let end = start + len as usize;
                if end + 2 > data.len() {
                    break 'commands;
                }
                if i == 0 {
                    name = (start, end);
                }
                next = end + 2;
            }
            commands.push((name.0, name.1, next));
            at = next;
        }
        Some((commands, at))
    }
}

impl Context for Connection {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        if self.call != Some(token) {
            return;
        }
        let message = self.get_grpc_call_response_body(0, size).unwrap_or_default();
        info!("#{} gRPC call answered: status {}, {} bytes", self.id, status, message.len());
        self.set_downstream_data(0, 0, &message);
        self.waiting = false;
        self.resume_downstream();
    }

    fn on_http_call_response(&mut self, token: u32, _: usize, body_size: usize, _: usize) {
        if self.call != Some(token) {
            return;
        }
        let body = self.get_http_call_response_body(0, body_size).unwrap_or_default();
        info!("#{} call answered: {} bytes", self.id, body.len());
        self.set_upstream_data(0, 0, &body);
        self.waiting = false;
        self.resume_upstream();
    }
}

impl StreamContext for Connection {
    fn on_new_connection(&mut self) -> Action {
        count(&self.metrics, "tcp_connections", 1);
        if self.mode() == "count" && self.arg(1) == "shared" {
            // shared data across connections (and workers)
            let (value, cas) = hostcalls::get_shared_data("connections").unwrap_or((None, None));
            let n = value
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
                + 1;
            if hostcalls::set_shared_data("connections", Some(n.to_string().as_bytes()), cas).is_ok() {
                info!("#{} connections so far: {}", self.id, n);
            }
        }
        if self.mode() == "count" {
            // a stored property, and a stream variable
            self.set_property(vec!["tcp", "tag"], Some(format!("conn-{}", self.id).as_bytes()));
            info!(
                "#{} stored {}, server_port variable {}, configured {}",
                self.id,
                self.property(&["tcp", "tag"]),
                self.property(&["ngx", "server_port"]),
                self.property(&["my", "prop"]),
            );
            info!(
                "#{} new connection from {} to port {} (id {}, sni {}, tls {})",
                self.id,
                self.property(&["source", "address"]),
                self.property(&["destination", "port"]),
                self.property(&["connection", "id"]),
                self.property(&["connection", "requested_server_name"]),
                self.property(&["connection", "tls_version"]),
            );
        }
        if self.mode() == "queue" {
            let queue = hostcalls::resolve_shared_queue("network", self.arg(1)).unwrap().unwrap();
            let source = self.property(&["source", "address"]);
            hostcalls::enqueue_shared_queue(queue, Some(source.as_bytes())).unwrap();
            info!("#{} enqueued {}", self.id, source);
        }
        if self.mode() == "hold_new" {
            self.held.borrow_mut().push(self.id);
            info!("#{} held", self.id);
            return Action::Pause;
        }
        Action::Continue
    }

    fn on_downstream_data(&mut self, size: usize, end_of_stream: bool) -> Action {
        match self.mode() {
            "count" | "bytes" => {
                count(&self.metrics, "tcp_bytes_downstream", size);
                Action::Continue
            }
            "rewrite" => {
                let data = self.get_downstream_data(0, size).unwrap_or_default();
                let (from, to) = (self.arg(1).as_bytes().to_vec(), self.arg(2).as_bytes().to_vec());
                // data that ends with the start of <from> waits for the rest
                let partial = (1..from.len()).any(|k| data.len() >= k && data[data.len() - k..] == from[..k]);
                if partial && !end_of_stream {
                    return Action::Pause;
                }
                let mut out = Vec::with_capacity(data.len());
                let mut at = 0;
                while let Some(i) = find(&data[at..], &from) {
                    out.extend_from_slice(&data[at..at + i]);
                    out.extend_from_slice(&to);
                    at += i + from.len();
                }
                out.extend_from_slice(&data[at..]);
                if at > 0 {
                    self.set_downstream_data(0, size, &out);
                }
                Action::Continue
            }
            "close_on" => {
                let data = self.get_downstream_data(0, size).unwrap_or_default();
                if find(&data, self.arg(1).as_bytes()).is_some() {
                    warn!("#{} closing: the data has \"{}\"", self.id, self.arg(1));
                    self.close_downstream();
                }
                Action::Continue
            }
            "grpc_hold" if self.call.is_none() => {
                let target = self.arg(1).to_string();
                match self.dispatch_grpc_call(
                    &target,
                    "test.Echo",
                    "Echo",
                    vec![],
                    Some(b"*1\r\n$4\r\nPING\r\n"),
                    Duration::from_secs(5),
                ) {
                    Ok(token) => {
                        info!("#{} holds {} downstream bytes for a gRPC call", self.id, size);
                        self.call = Some(token);
                        self.waiting = true;
                        Action::Pause
                    }
                    Err(status) => {
                        warn!("#{} gRPC call failed: {:?}", self.id, status);
                        Action::Continue
                    }
                }
            }
            "grpc_hold" if self.waiting => Action::Pause,
            "hold_downstream" => {
                self.largest = self.largest.max(size);
                let waiting = self.held.borrow().contains(&self.id);
                if self.released || waiting {
                    return if waiting { Action::Pause } else { Action::Continue };
                }
                // held once: the tick takes it off the list
                self.held.borrow_mut().push(self.id);
                self.released = true;
                Action::Pause
            }
            "panic_on" => {
                let data = self.get_downstream_data(0, size).unwrap_or_default();
                if find(&data, self.arg(1).as_bytes()).is_some() {
                    panic!("the data has {}", self.arg(1));
                }
                Action::Continue
            }
            "redis" => {
                let data = self.get_downstream_data(0, size).unwrap_or_default();
                let (commands, whole) = match Self::redis_commands(&data) {
                    Some(found) => found,
                    None => {
                        warn!("#{} not RESP: passed on", self.id);
                        return Action::Continue;
                    }
                };
                // the commands of held data were seen when it came
                for &(start, end, _) in commands.iter().filter(|c| c.2 > self.counted) {
                    let name = String::from_utf8_lossy(&data[start..end]).to_ascii_lowercase();
                    count(&self.metrics, "redis_commands", 1);
                    count(&self.metrics, &format!("redis_command_{}", name), 1);
                    if name == "flushall" {
                        warn!("#{} FLUSHALL denied", self.id);
                        // an unknown command of the same length
                        self.set_downstream_data(start, end - start, b"DENY_ALL");
                    }
                }
                if whole < size && !end_of_stream {
                    // the rest of a command follows: wait for it
                    self.counted = whole;
                    return Action::Pause;
                }
                self.counted = 0;
                Action::Continue
            }
            _ => Action::Continue,
        }
    }

    fn on_downstream_close(&mut self, peer: PeerType) {
        if self.mode() != "bytes" {
            info!("#{} downstream closed: {:?}", self.id, peer);
        }
    }

    fn on_upstream_data(&mut self, size: usize, end_of_stream: bool) -> Action {
        match self.mode() {
            "count" | "bytes" => {
                count(&self.metrics, "tcp_bytes_upstream", size);
                Action::Continue
            }
            "hold_upstream" if self.call.is_none() && size > 0 => {
                let target = self.arg(1).to_string();
                match self.dispatch_http_call(
                    &target,
                    vec![(":method", "GET"), (":path", "/banner"), (":authority", "banner")],
                    None,
                    vec![],
                    Duration::from_secs(5),
                ) {
                    Ok(token) => {
                        info!("#{} holds {} upstream bytes for a call", self.id, size);
                        self.call = Some(token);
                        self.waiting = true;
                        Action::Pause
                    }
                    Err(status) => {
                        warn!("#{} call failed: {:?}", self.id, status);
                        Action::Continue
                    }
                }
            }
            "hold_upstream" if self.waiting => {
                info!("#{} holds {} upstream bytes (eos {})", self.id, size, end_of_stream);
                Action::Pause
            }
            _ => Action::Continue,
        }
    }

    fn on_upstream_close(&mut self, peer: PeerType) {
        if self.mode() == "bytes" {
            return;
        }
        info!(
            "#{} upstream closed: {:?} (upstream {})",
            self.id,
            peer,
            self.property(&["upstream", "address"])
        );
    }

    fn on_log(&mut self) {
        if self.mode() == "bytes" {
            return;
        }
        if self.mode() == "hold_downstream" {
            info!("#{} largest downstream data: {}", self.id, self.largest);
        }
        info!("#{} on_log", self.id);
    }
}
