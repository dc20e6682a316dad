//! HTTP/1.1 for callouts: a call's request as bytes for the wire, and an
//! incremental parser of its response (httparse for the head; the body by
//! Content-Length, chunked with trailers, or until the connection closes).

use crate::abi::headers::{valid_name, valid_value};
use crate::abi::pairs::Pair;

/// Headers a call cannot set: the transport owns them.
const HOP_BY_HOP: &[&[u8]] = &[
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"te",
    b"upgrade",
    b"content-length",
    b"host",
];

impl Encoded {
    /// The server name of an `https` call (`:authority` without its
    /// port); None for plain HTTP.
    pub fn tls_server_name(&self) -> Option<&[u8]> {
        if !self.scheme.eq_ignore_ascii_case(b"https") {
            return None;
        }
        Some(server_name_of(&self.authority))
    }
}

/// The server name of an authority: without its port, an IPv6 address
/// without its brackets.
pub fn server_name_of(authority: &[u8]) -> &[u8] {
    if let Some(rest) = authority.strip_prefix(b"[") {
        return rest.split(|&b| b == b']').next().unwrap_or_default();
    }
    match authority.iter().rposition(|&b| b == b':') {
        Some(colon) if authority[colon + 1..].iter().all(u8::is_ascii_digit) => &authority[..colon],
        _ => authority,
    }
}

/// A response head may not be larger than this.
const HEAD_LIMIT: usize = 64 * 1024;
/// Header lines a response may have.
const MAX_HEADERS: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// `:method`, `:path` or `:authority` is missing or empty.
    Missing(&'static str),
    /// A header name or value cannot go on the wire.
    Invalid(String),
}

/// The parts of a call's request the host needs besides its bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    pub authority: Vec<u8>,
    pub scheme: Vec<u8>,
    /// A HEAD request: its response has no body.
    pub head: bool,
}

/// Writes a call's request: `:method`, `:path` and `:authority` are
/// required (Envoy's rule), `:authority` becomes `Host` (the call's
/// `target` when it is present but empty, as Envoy's cluster name does),
/// a body gets a Content-Length, trailers make the body chunked.
pub fn encode_request(
    headers: &[Pair<'_>],
    body: &[u8],
    trailers: &[Pair<'_>],
    target: &[u8],
) -> Result<Encoded, RequestError> {
    let field = |name: &[u8]| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    };
    let pseudo = |name: &[u8]| field(name).filter(|v| !v.is_empty());
    let method = pseudo(b":method").ok_or(RequestError::Missing(":method"))?;
    let path = pseudo(b":path").ok_or(RequestError::Missing(":path"))?;
    let authority = match field(b":authority").ok_or(RequestError::Missing(":authority"))? {
        b"" => target,
        authority => authority,
    };
    let scheme = pseudo(b":scheme").unwrap_or(b"http");
    let token = |s: &[u8]| !s.is_empty() && s.iter().all(|c| c.is_ascii_graphic());
    if !token(method) || !token(path) || !token(authority) {
        return Err(RequestError::Invalid("the request line or :authority".into()));
    }
    let chunked = !trailers.is_empty();
    let mut out = Vec::with_capacity(
        128 + body.len() + headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>(),
    );
    for part in [method, b" ", path, b" HTTP/1.1\r\nHost: ", authority, b"\r\n"] {
        out.extend_from_slice(part);
    }
    write_fields(&mut out, headers)?;
    if chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
        if !body.is_empty() {
            out.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
            out.extend_from_slice(body);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n");
        write_fields(&mut out, trailers)?;
        out.extend_from_slice(b"\r\n");
    } else {
        let expects_body = !matches!(method, b"GET" | b"HEAD" | b"DELETE" | b"OPTIONS" | b"TRACE");
        if !body.is_empty() || expects_body {
            out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(body);
    }
    Ok(Encoded {
        bytes: out,
        authority: authority.to_vec(),
        scheme: scheme.to_vec(),
        head: method == b"HEAD",
    })
}

/// Header (or trailer) lines, without pseudo-headers and the fields the
/// transport owns.
fn write_fields(out: &mut Vec<u8>, fields: &[Pair<'_>]) -> Result<(), RequestError> {
    for (name, value) in fields {
        if name.starts_with(b":") || HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            continue;
        }
        if !valid_name(name) || !valid_value(value) {
            return Err(RequestError::Invalid(format!(
                "header {:?}",
                String::from_utf8_lossy(name)
            )));
        }
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseError {
    /// Not HTTP/1.x, or broken framing.
    Malformed(String),
    /// The body (or head) is larger than allowed.
    TooLarge,
    /// The connection closed before the response ended.
    Truncated,
}

/// A whole response.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Response {
    /// `:status` first, then the headers, names lower-cased.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub body: Vec<u8>,
    pub trailers: Vec<(Vec<u8>, Vec<u8>)>,
    /// The connection may carry another request.
    pub keep_alive: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Body,
    /// Chunked: the size line of the next chunk.
    ChunkSize,
    /// Chunked: this many bytes of data, then CRLF.
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    Done,
}

/// Whether bytes hold the empty line that ends a head (CRLF or bare LF
/// line ends, as httparse takes them).
fn has_head_end(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| {
        b == b'\n'
            && i > 0
            && (bytes[i - 1] == b'\n' || (i > 1 && bytes[i - 1] == b'\r' && bytes[i - 2] == b'\n'))
    })
}

/// Parses a response as its bytes arrive.
pub struct ResponseParser {
    head_request: bool,
    body_limit: usize,
    buffer: Vec<u8>,
    /// Bytes of `buffer` already searched for the end of the head or of a
    /// trailer line: a server that drips them byte by byte costs linear
    /// time, not quadratic.
    scanned: usize,
    state: State,
    framing: Framing,
    response: Response,
}

impl ResponseParser {
    pub fn new(head_request: bool, body_limit: usize) -> ResponseParser {
        ResponseParser {
            head_request,
            body_limit,
            buffer: Vec::new(),
            scanned: 0,
            state: State::Head,
            framing: Framing::None,
            response: Response::default(),
        }
    }

    /// Takes bytes; Some once the response is complete (bytes after it
    /// are ignored: a server does not send any before the next request).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<Response>, ResponseError> {
        self.buffer.extend_from_slice(bytes);
        loop {
            let progressed = match self.state {
                State::Head => self.parse_head()?,
                State::Body => self.parse_body()?,
                State::ChunkSize => self.parse_chunk_size()?,
                State::ChunkData(left) => self.parse_chunk_data(left)?,
                State::ChunkEnd => self.expect_crlf(State::ChunkSize)?,
                State::Trailers => self.parse_trailers()?,
                State::Done => {
                    // bytes past the response: the connection is not clean
                    if !self.buffer.is_empty() {
                        self.response.keep_alive = false;
                    }
                    return Ok(Some(std::mem::take(&mut self.response)));
                }
            };
            if !progressed {
                return Ok(None);
            }
        }
    }

    /// The connection closed: the end of a close-delimited body, or a
    /// truncated response.
    pub fn finish(&mut self) -> Result<Response, ResponseError> {
        if self.state == State::Body && self.framing == Framing::Close {
            self.take_body(self.buffer.len())?;
            self.response.keep_alive = false;
            return Ok(std::mem::take(&mut self.response));
        }
        if self.state == State::Done {
            return Ok(std::mem::take(&mut self.response));
        }
        Err(ResponseError::Truncated)
    }

    fn parse_head(&mut self) -> Result<bool, ResponseError> {
        let from = self.scanned.saturating_sub(2);
        self.scanned = self.buffer.len();
        if !has_head_end(&self.buffer[from..]) {
            // garbage fails at once, not when the head would be too long
            let start = self.buffer.len().min(5);
            if self.buffer[..start] != b"HTTP/"[..start] {
                return Err(ResponseError::Malformed("not an HTTP/1.x response".into()));
            }
            if self.buffer.len() > HEAD_LIMIT {
                return Err(ResponseError::TooLarge);
            }
            return Ok(false);
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        let size = match parsed.parse(&self.buffer) {
            Ok(httparse::Status::Complete(size)) => size,
            Ok(httparse::Status::Partial) if self.buffer.len() > HEAD_LIMIT => {
                return Err(ResponseError::TooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(false),
            Err(e) => return Err(ResponseError::Malformed(e.to_string())),
        };
        if size > HEAD_LIMIT {
            return Err(ResponseError::TooLarge);
        }
        let status = parsed.code.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            // an interim response: the real one follows
            self.buffer.drain(..size);
            self.scanned = 0;
            return Ok(true);
        }
        let version = parsed.version.unwrap_or(0);
        let mut keep_alive = version == 1;
        let mut framing = Framing::Close;
        let mut fields = vec![(b":status".to_vec(), status.to_string().into_bytes())];
        for header in parsed.headers.iter() {
            let name = header.name.to_ascii_lowercase().into_bytes();
            let value = header.value;
            match &name[..] {
                b"connection" => {
                    for token in value.split(|&b| b == b',').map(|t| t.trim_ascii()) {
                        if token.eq_ignore_ascii_case(b"close") {
                            keep_alive = false;
                        } else if token.eq_ignore_ascii_case(b"keep-alive") {
                            keep_alive = true;
                        }
                    }
                }
                b"transfer-encoding" => {
                    let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
                    framing = if last.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                        Framing::Chunked
                    } else {
                        Framing::Close
                    };
                }
                b"content-length" if framing != Framing::Chunked => {
                    let length = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .ok_or_else(|| ResponseError::Malformed("a bad Content-Length".into()))?;
                    if let Framing::Length(other) = framing {
                        if other != length {
                            return Err(ResponseError::Malformed("conflicting Content-Length".into()));
                        }
                    }
                    framing = Framing::Length(length);
                }
                _ => {}
            }
            fields.push((name, value.to_vec()));
        }
        if self.head_request || status == 204 || status == 304 {
            framing = Framing::None;
        }
        if let Framing::Length(length) = framing {
            if length > self.body_limit as u64 {
                return Err(ResponseError::TooLarge);
            }
        }
        self.buffer.drain(..size);
        self.scanned = 0;
        self.response.headers = fields;
        self.response.keep_alive = keep_alive && framing != Framing::Close;
        self.framing = framing;
        self.state = match framing {
            Framing::None | Framing::Length(0) => State::Done,
            Framing::Chunked => State::ChunkSize,
            _ => State::Body,
        };
        Ok(true)
    }

    fn take_body(&mut self, n: usize) -> Result<(), ResponseError> {
        if self.response.body.len() + n > self.body_limit {
            return Err(ResponseError::TooLarge);
        }
        self.response.body.extend(self.buffer.drain(..n));
        Ok(())
    }

    fn parse_body(&mut self) -> Result<bool, ResponseError> {
        match self.framing {
            Framing::Length(length) => {
                let want = (length as usize).saturating_sub(self.response.body.len());
                let n = want.min(self.buffer.len());
                self.take_body(n)?;
                if self.response.body.len() as u64 == length {
                    self.state = State::Done;
                    return Ok(true);
                }
                Ok(false)
            }
            _ => {
                // until the connection closes
                let n = self.buffer.len();
                self.take_body(n)?;
                Ok(false)
            }
        }
    }

    fn parse_chunk_size(&mut self) -> Result<bool, ResponseError> {
        match httparse::parse_chunk_size(&self.buffer) {
            Ok(httparse::Status::Complete((used, size))) => {
                self.buffer.drain(..used);
                self.state = if size == 0 {
                    State::Trailers
                } else {
                    State::ChunkData(size)
                };
                Ok(true)
            }
            Ok(httparse::Status::Partial) if self.buffer.len() > 1024 => {
                Err(ResponseError::Malformed("a chunk size line too long".into()))
            }
            Ok(httparse::Status::Partial) => Ok(false),
            Err(_) => Err(ResponseError::Malformed("a bad chunk size".into())),
        }
    }

    fn parse_chunk_data(&mut self, left: u64) -> Result<bool, ResponseError> {
        if left > (self.body_limit - self.response.body.len()) as u64 {
            return Err(ResponseError::TooLarge);
        }
        let n = (left as usize).min(self.buffer.len());
        if n == 0 {
            return Ok(false);
        }
        self.take_body(n)?;
        let left = left - n as u64;
        self.state = if left == 0 {
            State::ChunkEnd
        } else {
            State::ChunkData(left)
        };
        Ok(true)
    }

    fn expect_crlf(&mut self, next: State) -> Result<bool, ResponseError> {
        if self.buffer.len() < 2 {
            return Ok(false);
        }
        if &self.buffer[..2] != b"\r\n" {
            return Err(ResponseError::Malformed("a chunk not ended by CRLF".into()));
        }
        self.buffer.drain(..2);
        self.state = next;
        Ok(true)
    }

    /// The trailer section of a chunked body, up to its empty line.
    fn parse_trailers(&mut self) -> Result<bool, ResponseError> {
        let from = self.scanned.saturating_sub(1);
        let Some(end) = self.buffer[from..].windows(2).position(|w| w == b"\r\n") else {
            self.scanned = self.buffer.len();
            if self.buffer.len() > HEAD_LIMIT {
                return Err(ResponseError::TooLarge);
            }
            return Ok(false);
        };
        let end = from + end;
        self.scanned = 0;
        let line: Vec<u8> = self.buffer.drain(..end + 2).take(end).collect();
        if line.is_empty() {
            self.state = State::Done;
            return Ok(true);
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| ResponseError::Malformed("a bad trailer line".into()))?;
        let name = line[..colon].to_ascii_lowercase();
        let value = line[colon + 1..].trim_ascii().to_vec();
        if self.response.trailers.len() >= MAX_HEADERS || !valid_name(&name) {
            return Err(ResponseError::Malformed("bad trailers".into()));
        }
        self.response.trailers.push((name, value));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[Pair<'_>], body: &[u8], trailers: &[Pair<'_>]) -> String {
        String::from_utf8(encode_request(headers, body, trailers, b"target").unwrap().bytes).unwrap()
    }

    const GET: &[Pair<'static>] = &[
        (b":method", b"GET"),
        (b":path", b"/a?b=1"),
        (b":authority", b"svc"),
    ];

    #[test]
    fn requests() {
        assert_eq!(request(GET, b"", &[]), "GET /a?b=1 HTTP/1.1\r\nHost: svc\r\n\r\n");
        let post: &[Pair<'_>] = &[
            (b":method", b"POST"),
            (b":path", b"/"),
            (b":authority", b"svc:81"),
            (b"x-a", b"1"),
            (b"Connection", b"close"),
            (b"content-length", b"99"),
        ];
        assert_eq!(
            request(post, b"hi", &[]),
            "POST / HTTP/1.1\r\nHost: svc:81\r\nx-a: 1\r\nContent-Length: 2\r\n\r\nhi"
        );
        assert_eq!(
            request(post, b"", &[]),
            "POST / HTTP/1.1\r\nHost: svc:81\r\nx-a: 1\r\nContent-Length: 0\r\n\r\n"
        );
        assert_eq!(
            request(post, b"hello", &[(b"x-t", b"v")]),
            "POST / HTTP/1.1\r\nHost: svc:81\r\nx-a: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nx-t: v\r\n\r\n"
        );
    }

    #[test]
    fn tls_server_names() {
        let name = |scheme: &'static [u8], authority: &'static [u8]| {
            let headers: &[Pair<'_>] = &[
                (b":method", b"GET"),
                (b":path", b"/"),
                (b":authority", authority),
                (b":scheme", scheme),
            ];
            encode_request(headers, b"", &[], b"target")
                .unwrap()
                .tls_server_name()
                .map(<[u8]>::to_vec)
        };
        assert_eq!(name(b"http", b"a.test"), None);
        assert_eq!(name(b"https", b"a.test"), Some(b"a.test".to_vec()));
        assert_eq!(name(b"https", b"a.test:8443"), Some(b"a.test".to_vec()));
        assert_eq!(name(b"https", b"[::1]:8443"), Some(b"::1".to_vec()));
    }

    /// Envoy accepts an empty `:authority` (the Go SDK's
    /// `multiple_dispatches` sends one): Host then names the target.
    #[test]
    fn an_empty_authority_names_the_target() {
        let headers: &[Pair<'_>] = &[(b":method", b"GET"), (b":path", b"/"), (b":authority", b"")];
        let encoded = encode_request(headers, b"", &[], b"127.0.0.1:8080").unwrap();
        assert_eq!(
            encoded.bytes,
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n".to_vec()
        );
        assert_eq!(encoded.authority, b"127.0.0.1:8080".to_vec());
    }

    #[test]
    fn required_and_invalid_request_fields() {
        let missing: &[Pair<'_>] = &[(b":method", b"GET"), (b":path", b"/")];
        assert_eq!(
            encode_request(missing, b"", &[], b"target").unwrap_err(),
            RequestError::Missing(":authority")
        );
        let empty: &[Pair<'_>] = &[(b":method", b""), (b":path", b"/"), (b":authority", b"a")];
        assert_eq!(
            encode_request(empty, b"", &[], b"target").unwrap_err(),
            RequestError::Missing(":method")
        );
        let bad: &[Pair<'_>] = &[
            (b":method", b"GET"),
            (b":path", b"/"),
            (b":authority", b"a"),
            (b"x", b"a\r\nb"),
        ];
        assert!(matches!(
            encode_request(bad, b"", &[], b"target"),
            Err(RequestError::Invalid(_))
        ));
        let spaced: &[Pair<'_>] = &[(b":method", b"GET"), (b":path", b"/a b"), (b":authority", b"a")];
        assert!(matches!(
            encode_request(spaced, b"", &[], b"target"),
            Err(RequestError::Invalid(_))
        ));
    }

    fn parse_in_pieces(raw: &[u8], piece: usize) -> Response {
        let mut parser = ResponseParser::new(false, 1024);
        for chunk in raw.chunks(piece) {
            if let Some(response) = parser.feed(chunk).unwrap() {
                return response;
            }
        }
        parser.finish().unwrap()
    }

    #[test]
    fn responses_in_any_pieces() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello";
        for piece in [1, 3, raw.len()] {
            let response = parse_in_pieces(raw, piece);
            assert_eq!(response.headers[0], (b":status".to_vec(), b"200".to_vec()));
            assert_eq!(response.headers[2], (b"x-a".to_vec(), b"b".to_vec()));
            assert_eq!(response.body, b"hello");
            assert!(response.keep_alive);
        }
        let chunked = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nGrpc-Status: 0\r\nx-t: v \r\n\r\n";
        for piece in [1, 7, chunked.len()] {
            let response = parse_in_pieces(chunked, piece);
            assert_eq!(response.headers[0].1, b"201");
            assert_eq!(response.body, b"abcde");
            assert_eq!(
                response.trailers,
                vec![
                    (b"grpc-status".to_vec(), b"0".to_vec()),
                    (b"x-t".to_vec(), b"v".to_vec())
                ]
            );
            assert!(response.keep_alive);
        }
        let close = b"HTTP/1.0 200 OK\r\n\r\nuntil the end";
        let response = parse_in_pieces(close, 4);
        assert_eq!(response.body, b"until the end");
        assert!(!response.keep_alive);
        let closing = b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n";
        let response = parse_in_pieces(closing, 100);
        assert!(response.body.is_empty());
        assert!(!response.keep_alive);
    }

    #[test]
    fn bytes_past_a_response_make_its_connection_unfit() {
        let mut parser = ResponseParser::new(false, 1024);
        let response = parser
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1")
            .unwrap()
            .unwrap();
        assert_eq!(response.body, b"ok");
        assert!(!response.keep_alive);
    }

    #[test]
    fn head_responses_have_no_body() {
        let mut parser = ResponseParser::new(true, 1024);
        let response = parser
            .feed(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(response.body.is_empty());
        assert!(response.keep_alive);
    }

    #[test]
    fn bad_and_oversized_responses() {
        let mut parser = ResponseParser::new(false, 4);
        assert_eq!(
            parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"),
            Err(ResponseError::TooLarge)
        );
        let mut parser = ResponseParser::new(false, 4);
        assert_eq!(
            parser.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n"),
            Err(ResponseError::TooLarge)
        );
        let mut parser = ResponseParser::new(false, 4);
        assert_eq!(
            parser.feed(b"HTTP/1.1 200 OK\r\n\r\nabcde"),
            Err(ResponseError::TooLarge)
        );
        // found by fuzzing: a head over the limit that came whole was taken
        let mut parser = ResponseParser::new(false, 1024);
        let mut big = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
        big.extend(std::iter::repeat_n(b'v', HEAD_LIMIT));
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(parser.feed(&big), Err(ResponseError::TooLarge));
        let mut parser = ResponseParser::new(false, 1024);
        assert!(matches!(
            parser.feed(b"SSH-2.0-OpenSSH\r\n\r\n"),
            Err(ResponseError::Malformed(_))
        ));
        let mut parser = ResponseParser::new(false, 1024);
        assert!(matches!(
            parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(ResponseError::Malformed(_))
        ));
        let mut parser = ResponseParser::new(false, 1024);
        assert_eq!(
            parser.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"),
            Ok(None)
        );
        assert_eq!(parser.finish(), Err(ResponseError::Truncated));
    }

    /// Found by fuzzing: a head or trailer line dripped byte by byte was
    /// parsed again from its start on every byte (quadratic time: seconds
    /// of a worker's time for one 64 KiB head).
    #[test]
    fn dripped_heads_and_trailers_cost_linear_time() {
        let started = std::time::Instant::now();
        let mut head = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
        head.extend(std::iter::repeat_n(b'v', 60_000));
        head.extend_from_slice(b"\r\ntransfer-encoding: chunked\r\n\r\n0\r\nx-t: ");
        head.extend(std::iter::repeat_n(b't', 60_000));
        head.extend_from_slice(b"\r\n\r\n");
        let mut parser = ResponseParser::new(false, 1024);
        let (last, rest) = head.split_last().unwrap();
        for byte in rest {
            assert_eq!(parser.feed(std::slice::from_ref(byte)), Ok(None));
        }
        let response = parser.feed(&[*last]).unwrap().expect("whole");
        assert_eq!(response.trailers[0].1.len(), 60_000);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn garbage_fails_before_a_whole_head() {
        for garbage in [&b"SSH-2.0"[..], b"X", b"HTTQ", b"\x00\x01"] {
            let mut parser = ResponseParser::new(false, 1024);
            assert!(
                matches!(parser.feed(garbage), Err(ResponseError::Malformed(_))),
                "{garbage:?}"
            );
        }
        let mut parser = ResponseParser::new(false, 1024);
        assert_eq!(parser.feed(b"HTT"), Ok(None), "a prefix of HTTP/ may go on");
    }
}
