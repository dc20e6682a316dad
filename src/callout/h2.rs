//! An HTTP/2 client session that does no I/O of its own: the server's
//! bytes go in with `feed`, the bytes for the server come out of
//! `take_output`, and nginx's event loop carries both. The `h2` crate
//! speaks the protocol (HPACK, flow control, frame sizes, SETTINGS,
//! GOAWAY, RST_STREAM); this drives it without an async runtime: every
//! event that may let it progress (bytes in, a stream opened, data to
//! send) is followed by `drive`, which polls everything until nothing
//! moves.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use h2::client::{Connection, ResponseFuture, SendRequest};
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderMap, Request};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The bytes between the session and the connection nginx holds.
#[derive(Default)]
struct PipeState {
    inbound: VecDeque<Bytes>,
    /// The server closed its side: reads end.
    eof: bool,
    outbound: Vec<u8>,
}

#[derive(Clone, Default)]
struct Pipe(Rc<RefCell<PipeState>>);

impl AsyncRead for Pipe {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut state = self.0.borrow_mut();
        let Some(front) = state.inbound.front_mut() else {
            // nothing read and Ready is the end of the stream
            return if state.eof {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            };
        };
        let n = front.len().min(buf.remaining());
        buf.put_slice(&front.split_to(n));
        if front.is_empty() {
            state.inbound.pop_front();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Pipe {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.0.borrow_mut().outbound.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What happened on a stream.
#[derive(Debug)]
pub enum Event {
    /// The response's headers; `end` when no body or trailers follow.
    Headers {
        key: u32,
        status: u16,
        headers: HeaderMap,
        end: bool,
    },
    Data {
        key: u32,
        data: Bytes,
    },
    /// The response ended: with its trailers, if it had any.
    End {
        key: u32,
        trailers: Option<HeaderMap>,
    },
    /// The stream failed: reset by the server, or the connection broke.
    Failed {
        key: u32,
        why: StreamError,
    },
}

/// Why a stream failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// Reset by the server (RST_STREAM) or refused by its GOAWAY.
    Reset(Reason),
    /// The connection broke or closed.
    Connection(String),
    /// The request could not be sent (as the headers were invalid).
    Refused(String),
}

impl StreamError {
    fn of(error: h2::Error) -> StreamError {
        // a stream a GOAWAY left out was never processed: gRPC says
        // UNAVAILABLE, whatever the GOAWAY's code
        if error.is_go_away() {
            let reason = error.reason().unwrap_or(Reason::NO_ERROR);
            return StreamError::Connection(format!("the server sent GOAWAY ({reason:?})"));
        }
        match error.reason() {
            Some(reason) if error.is_reset() && error.is_remote() => StreamError::Reset(reason),
            _ => StreamError::Connection(error.to_string()),
        }
    }
}

/// A request waiting for the server to allow another stream.
struct Waiting {
    key: u32,
    request: Request<()>,
    data: VecDeque<(Bytes, bool)>,
}

/// A stream's receiving side: the response's headers, then its body.
enum Receiving {
    Headers(ResponseFuture),
    Body(RecvStream),
    Trailers(RecvStream),
    Done,
}

struct Stream {
    send: SendStream<Bytes>,
    receiving: Receiving,
}

/// One HTTP/2 connection's client side.
pub struct Session {
    pipe: Pipe,
    sender: SendRequest<Bytes>,
    connection: Connection<Pipe, Bytes>,
    streams: HashMap<u32, Stream>,
    waiting: VecDeque<Waiting>,
    /// Why the connection ended, once it has.
    ended: Option<String>,
}

impl Session {
    /// A session whose preface and SETTINGS wait in the output.
    pub fn new(max_frame_size: u32) -> Session {
        let pipe = Pipe::default();
        let mut handshake = Box::pin(
            h2::client::Builder::new()
                .enable_push(false)
                .max_frame_size(max_frame_size)
                .initial_window_size(1 << 20)
                .initial_connection_window_size(1 << 22)
                .handshake::<_, Bytes>(pipe.clone()),
        );
        let mut cx = Context::from_waker(Waker::noop());
        // the handshake only writes the preface: the pipe takes it at once
        let Poll::Ready(Ok((sender, connection))) = handshake.as_mut().poll(&mut cx) else {
            unreachable!("an HTTP/2 handshake waits for nothing but its writes");
        };
        Session {
            pipe,
            sender,
            connection,
            streams: HashMap::new(),
            waiting: VecDeque::new(),
            ended: None,
        }
    }

    /// Bytes the server sent.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.pipe
            .0
            .borrow_mut()
            .inbound
            .push_back(Bytes::copy_from_slice(bytes));
    }

    /// The server closed the connection.
    pub fn feed_eof(&mut self) {
        self.pipe.0.borrow_mut().eof = true;
    }

    /// The bytes to send to the server.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pipe.0.borrow_mut().outbound)
    }

    /// Why the connection ended, if it has: no new stream can start.
    pub fn ended(&self) -> Option<&str> {
        self.ended.as_deref()
    }

    /// No stream is open or waiting.
    pub fn idle(&self) -> bool {
        self.streams.is_empty() && self.waiting.is_empty()
    }

    /// Starts a request; `data` is its first body data, if any. It may
    /// wait for the server's concurrency limit; `drive` sends it.
    pub fn open(&mut self, key: u32, request: Request<()>, data: Option<(Bytes, bool)>) {
        self.waiting.push_back(Waiting {
            key,
            request,
            data: data.into_iter().collect(),
        });
    }

    /// Body data of a stream (`end`: the last).
    pub fn send(&mut self, key: u32, data: Bytes, end: bool) -> Result<(), StreamError> {
        if let Some(waiting) = self.waiting.iter_mut().find(|w| w.key == key) {
            waiting.data.push_back((data, end));
            return Ok(());
        }
        let stream = self
            .streams
            .get_mut(&key)
            .ok_or(StreamError::Reset(Reason::STREAM_CLOSED))?;
        stream.send.send_data(data, end).map_err(StreamError::of)
    }

    /// Ends a stream at once (RST_STREAM CANCEL if it had started): nothing
    /// more is reported of it.
    pub fn reset(&mut self, key: u32) {
        self.waiting.retain(|w| w.key != key);
        if let Some(mut stream) = self.streams.remove(&key) {
            stream.send.send_reset(Reason::CANCEL);
        }
    }

    /// Polls the connection and every stream until nothing moves; what
    /// happened to the streams, in order.
    pub fn drive(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            let before = events.len();
            self.poll_connection(&mut cx, &mut events);
            self.start_waiting(&mut cx, &mut events);
            let keys: Vec<u32> = self.streams.keys().copied().collect();
            for key in keys {
                self.poll_stream(key, &mut cx, &mut events);
            }
            // the streams' polls may have queued frames (WINDOW_UPDATE):
            // one more pass writes them, and reads what they unblocked
            self.poll_connection(&mut cx, &mut events);
            if events.len() == before {
                return events;
            }
        }
    }

    fn poll_connection(&mut self, cx: &mut Context<'_>, events: &mut Vec<Event>) {
        if self.ended.is_some() {
            return;
        }
        let why = match Pin::new(&mut self.connection).poll(cx) {
            Poll::Pending => return,
            Poll::Ready(Ok(())) => "the connection closed".to_string(),
            Poll::Ready(Err(error)) => error.to_string(),
        };
        self.ended = Some(why.clone());
        // streams the connection's end did not fail yet fail now
        let mut keys: Vec<u32> = self.streams.keys().copied().collect();
        keys.extend(self.waiting.iter().map(|w| w.key));
        keys.sort_unstable();
        for key in keys {
            let mut polled = Vec::new();
            if self.streams.contains_key(&key) {
                self.poll_stream(key, cx, &mut polled);
            }
            events.append(&mut polled);
            if self.streams.remove(&key).is_some() || self.waiting.iter().any(|w| w.key == key) {
                events.push(Event::Failed {
                    key,
                    why: StreamError::Connection(why.clone()),
                });
            }
        }
        self.waiting.clear();
    }

    fn start_waiting(&mut self, cx: &mut Context<'_>, events: &mut Vec<Event>) {
        while self.ended.is_none() && !self.waiting.is_empty() {
            match self.sender.poll_ready(cx) {
                Poll::Pending => return,
                Poll::Ready(Err(error)) => {
                    let why = StreamError::of(error);
                    for waiting in self.waiting.drain(..) {
                        events.push(Event::Failed {
                            key: waiting.key,
                            why: why.clone(),
                        });
                    }
                    return;
                }
                Poll::Ready(Ok(())) => {}
            }
            let Some(mut waiting) = self.waiting.pop_front() else {
                return;
            };
            let key = waiting.key;
            let request = std::mem::take(&mut waiting.request);
            // a request with no body data yet keeps its stream open
            match self.sender.send_request(request, false) {
                Err(error) => events.push(Event::Failed {
                    key,
                    why: StreamError::Refused(error.to_string()),
                }),
                Ok((response, mut send)) => {
                    let mut failed = None;
                    for (data, end) in waiting.data.drain(..) {
                        if let Err(error) = send.send_data(data, end) {
                            failed = Some(StreamError::of(error));
                            break;
                        }
                    }
                    match failed {
                        Some(why) => {
                            send.send_reset(Reason::CANCEL);
                            events.push(Event::Failed { key, why });
                        }
                        None => {
                            self.streams.insert(
                                key,
                                Stream {
                                    send,
                                    receiving: Receiving::Headers(response),
                                },
                            );
                        }
                    }
                }
            }
        }
    }

    fn poll_stream(&mut self, key: u32, cx: &mut Context<'_>, events: &mut Vec<Event>) {
        let Some(stream) = self.streams.get_mut(&key) else {
            return;
        };
        loop {
            let receiving = std::mem::replace(&mut stream.receiving, Receiving::Done);
            stream.receiving = match receiving {
                Receiving::Done => return,
                Receiving::Headers(mut response) => match Pin::new(&mut response).poll(cx) {
                    Poll::Pending => {
                        stream.receiving = Receiving::Headers(response);
                        return;
                    }
                    Poll::Ready(Err(error)) => return self.fail(key, StreamError::of(error), events),
                    Poll::Ready(Ok(response)) => {
                        let (head, body) = response.into_parts();
                        let end = body.is_end_stream();
                        events.push(Event::Headers {
                            key,
                            status: head.status.as_u16(),
                            headers: head.headers,
                            end,
                        });
                        if end {
                            self.streams.remove(&key);
                            return;
                        }
                        Receiving::Body(body)
                    }
                },
                Receiving::Body(mut body) => match body.poll_data(cx) {
                    Poll::Pending => {
                        stream.receiving = Receiving::Body(body);
                        return;
                    }
                    Poll::Ready(Some(Ok(data))) => {
                        // the guest takes messages as they come: the window
                        // reopens at once, the message size limit bounds memory
                        let _ = body.flow_control().release_capacity(data.len());
                        events.push(Event::Data { key, data });
                        Receiving::Body(body)
                    }
                    Poll::Ready(Some(Err(error))) => return self.fail(key, StreamError::of(error), events),
                    Poll::Ready(None) => Receiving::Trailers(body),
                },
                Receiving::Trailers(mut body) => match body.poll_trailers(cx) {
                    Poll::Pending => {
                        stream.receiving = Receiving::Trailers(body);
                        return;
                    }
                    Poll::Ready(Err(error)) => return self.fail(key, StreamError::of(error), events),
                    Poll::Ready(Ok(trailers)) => {
                        events.push(Event::End { key, trailers });
                        // a request side still open is reset as its handles go
                        self.streams.remove(&key);
                        return;
                    }
                },
            };
        }
    }

    fn fail(&mut self, key: u32, why: StreamError, events: &mut Vec<Event>) {
        self.streams.remove(&key);
        events.push(Event::Failed { key, why });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use h2::server::{self, SendResponse};
    use http::{HeaderValue, Response};

    /// Requests a server accepted, with their response handles.
    type Accepted = Vec<(Request<RecvStream>, SendResponse<Bytes>)>;

    /// An h2 server on the other end of the session's bytes.
    struct Server {
        pipe: Pipe,
        connection: server::Connection<Pipe, Bytes>,
    }

    impl Server {
        fn start(client: &mut Session) -> Server {
            let pipe = Pipe::default();
            let mut handshake = Box::pin(server::Builder::new().handshake::<_, Bytes>(pipe.clone()));
            let mut cx = Context::from_waker(Waker::noop());
            pipe.0.borrow_mut().inbound.push_back(client.take_output().into());
            let Poll::Ready(Ok(connection)) = handshake.as_mut().poll(&mut cx) else {
                panic!("the server's handshake did not complete");
            };
            Server { pipe, connection }
        }

        /// Moves bytes both ways until neither side has more, polling the
        /// server's connection; the requests it accepted, and what the
        /// client saw.
        fn pump(&mut self, client: &mut Session) -> (Accepted, Vec<Event>) {
            let mut cx = Context::from_waker(Waker::noop());
            let (mut accepted, mut events) = (Vec::new(), Vec::new());
            loop {
                let to_server = client.take_output();
                let moved = !to_server.is_empty();
                if moved {
                    self.pipe.0.borrow_mut().inbound.push_back(to_server.into());
                }
                while let Poll::Ready(Some(Ok(pair))) = self.connection.poll_accept(&mut cx) {
                    accepted.push(pair);
                }
                let _ = self.connection.poll_closed(&mut cx);
                let to_client = std::mem::take(&mut self.pipe.0.borrow_mut().outbound);
                if !to_client.is_empty() {
                    client.feed(&to_client);
                }
                events.extend(client.drive());
                if !moved && to_client.is_empty() {
                    return (accepted, events);
                }
            }
        }
    }

    fn request() -> Request<()> {
        Request::post("http://backend/pkg.Service/Method")
            .body(())
            .unwrap()
    }

    fn body_of(events: &[Event], key: u32) -> usize {
        events
            .iter()
            .map(|event| match event {
                Event::Data { key: k, data } if *k == key => data.len(),
                _ => 0,
            })
            .sum()
    }

    #[test]
    fn a_request_and_its_response_with_trailers() {
        let mut client = Session::new(16 * 1024);
        let mut server = Server::start(&mut client);
        client.open(1, request(), Some((Bytes::from_static(b"ping"), true)));
        client.drive();
        let (mut accepted, _) = server.pump(&mut client);
        assert_eq!(accepted.len(), 1);
        let (request, mut respond) = accepted.pop().unwrap();
        assert_eq!(request.uri().path(), "/pkg.Service/Method");
        let mut send = respond.send_response(Response::new(()), false).unwrap();
        send.send_data(Bytes::from_static(b"pong"), false).unwrap();
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        send.send_trailers(trailers).unwrap();
        let (_, events) = server.pump(&mut client);
        assert!(matches!(
            &events[0],
            Event::Headers {
                key: 1,
                status: 200,
                end: false,
                ..
            }
        ));
        assert_eq!(body_of(&events, 1), 4);
        match events.last() {
            Some(Event::End {
                key: 1,
                trailers: Some(t),
            }) => assert_eq!(t["grpc-status"], "0"),
            other => panic!("no end with trailers: {other:?}"),
        }
        assert!(client.idle());
    }

    #[test]
    fn large_bodies_flow_both_ways_within_the_windows() {
        let mut client = Session::new(16 * 1024);
        let mut server = Server::start(&mut client);
        let big = Bytes::from(vec![7u8; 3 << 20]);
        client.open(1, request(), Some((big.clone(), true)));
        client.drive();
        let (mut accepted, _) = server.pump(&mut client);
        let (request, mut respond) = accepted.pop().unwrap();
        let mut body = request.into_body();
        let mut received = 0;
        let mut cx = Context::from_waker(Waker::noop());
        // the server reads as the client's window allows
        while received < big.len() {
            match body.poll_data(&mut cx) {
                Poll::Ready(Some(Ok(data))) => {
                    received += data.len();
                    body.flow_control().release_capacity(data.len()).unwrap();
                }
                Poll::Ready(other) => panic!("the request body ended early: {other:?}"),
                Poll::Pending => {
                    server.pump(&mut client);
                }
            }
        }
        let mut send = respond.send_response(Response::new(()), false).unwrap();
        send.send_data(big.clone(), true).unwrap();
        let mut events = Vec::new();
        for _ in 0..1000 {
            let (_, more) = server.pump(&mut client);
            events.extend(more);
            if events.iter().any(|e| matches!(e, Event::End { .. })) {
                break;
            }
        }
        assert_eq!(body_of(&events, 1), big.len());
        assert!(matches!(
            events.last(),
            Some(Event::End {
                key: 1,
                trailers: None
            })
        ));
    }

    #[test]
    fn a_reset_stream_and_a_closed_connection_fail_their_streams() {
        let mut client = Session::new(16 * 1024);
        let mut server = Server::start(&mut client);
        client.open(1, request(), None);
        client.open(3, request(), None);
        client.drive();
        let (accepted, _) = server.pump(&mut client);
        assert_eq!(accepted.len(), 2);
        let mut respond = accepted
            .into_iter()
            .map(|(_, respond)| respond)
            .collect::<Vec<_>>();
        respond[0].send_reset(Reason::REFUSED_STREAM);
        let (_, events) = server.pump(&mut client);
        assert!(events.iter().any(|e| matches!(
            e,
            Event::Failed {
                key: 1,
                why: StreamError::Reset(Reason::REFUSED_STREAM)
            }
        )));
        // the other stream goes with the connection
        client.feed_eof();
        let events = client.drive();
        assert!(events.iter().any(|e| matches!(
            e,
            Event::Failed {
                key: 3,
                why: StreamError::Connection(_)
            }
        )));
        assert!(client.ended().is_some());
        assert!(client.idle());
    }

    #[test]
    fn a_reset_by_the_client_sends_rst_stream_and_forgets_the_stream() {
        let mut client = Session::new(16 * 1024);
        let mut server = Server::start(&mut client);
        client.open(1, request(), None);
        client.drive();
        let (mut accepted, _) = server.pump(&mut client);
        let (_, mut respond) = accepted.pop().unwrap();
        client.reset(1);
        client.drive();
        server.pump(&mut client);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(matches!(
            respond.poll_reset(&mut cx),
            Poll::Ready(Ok(Reason::CANCEL))
        ));
        assert!(client.idle());
    }
}
