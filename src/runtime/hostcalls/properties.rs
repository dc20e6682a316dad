//! Properties (`proxy_get_property`, `proxy_set_property`) resolved for a
//! context: Envoy's attributes with Envoy's encodings, nginx variables
//! under `ngx.`, values filters store, static properties from the
//! configuration, and a namespace the proxy's own code (Lua) serves. The
//! same tree is read by the proxy's own code for a request (`ProxyScope`).

use std::cell::RefCell;
use std::rc::Rc;

use crate::abi::pairs::{self, Pair};
use crate::abi::properties::{PropertyPath, PropertyStore};
use crate::abi::{HostResult, Status};
use crate::host::prelude::*;
use crate::host::{Attribute, Fact, HeaderMap, RequestRef, VariableError};
use crate::runtime::state::{HostState, RequestState, Trailers};

/// Where a property is resolved: a guest's context, or a request seen by
/// the proxy's own code.
pub trait Scope {
    fn host(&self) -> &'static dyn Host;
    fn request(&self) -> Option<RequestRef>;
    /// The request's chain state; `BAD_ARGUMENT` without one.
    fn request_state(&self) -> Result<&Rc<RefCell<RequestState>>, Status>;
    /// `plugin_name` and its aliases.
    fn plugin_name(&self) -> Option<&str>;
    /// The current root context's own store, outside requests.
    fn root_properties(&self) -> Option<&PropertyStore>;
    fn root_properties_mut(&mut self) -> Option<&mut PropertyStore>;
    /// A property declared read-only (set once).
    fn is_read_only(&self, key: &[u8]) -> bool;
    /// The first segment the proxy's own code serves through the host (it
    /// is not asked for its own properties).
    fn host_namespace(&self) -> Option<std::cell::Ref<'_, Vec<u8>>>;
}

impl Scope for HostState {
    fn host(&self) -> &'static dyn Host {
        self.host
    }

    fn request(&self) -> Option<RequestRef> {
        HostState::request(self)
    }

    fn request_state(&self) -> Result<&Rc<RefCell<RequestState>>, Status> {
        HostState::request_state(self)
    }

    fn plugin_name(&self) -> Option<&str> {
        self.context().map(|context| &*context.filter().name)
    }

    fn root_properties(&self) -> Option<&PropertyStore> {
        HostState::root_properties(self)
    }

    fn root_properties_mut(&mut self) -> Option<&mut PropertyStore> {
        HostState::root_properties_mut(self)
    }

    fn is_read_only(&self, key: &[u8]) -> bool {
        self.declared.get(key).is_some_and(|declared| declared.readonly)
    }

    fn host_namespace(&self) -> Option<std::cell::Ref<'_, Vec<u8>>> {
        let namespace = self.services.host_namespace.borrow();
        (!namespace.is_empty()).then_some(namespace)
    }
}

/// A request as the proxy's own code sees it (the Lua API), with its
/// chain's state when it has one.
pub struct ProxyScope {
    pub host: &'static dyn Host,
    pub request: Option<RequestRef>,
    pub state: Option<Rc<RefCell<RequestState>>>,
}

impl Scope for ProxyScope {
    fn host(&self) -> &'static dyn Host {
        self.host
    }

    fn request(&self) -> Option<RequestRef> {
        self.request
    }

    fn request_state(&self) -> Result<&Rc<RefCell<RequestState>>, Status> {
        self.state.as_ref().ok_or(Status::BadArgument)
    }

    fn plugin_name(&self) -> Option<&str> {
        None
    }

    fn root_properties(&self) -> Option<&PropertyStore> {
        None
    }

    fn root_properties_mut(&mut self) -> Option<&mut PropertyStore> {
        None
    }

    fn is_read_only(&self, _: &[u8]) -> bool {
        false
    }

    fn host_namespace(&self) -> Option<std::cell::Ref<'_, Vec<u8>>> {
        None
    }
}

/// Writes the value of a property into `out` (empty for an empty value);
/// `NOT_FOUND` if it has none here.
pub fn get(state: &dyn Scope, raw_path: &[u8], out: &mut Vec<u8>) -> Result<(), Status> {
    let path = PropertyPath::parse(raw_path).ok_or(Status::NotFound)?;
    let host = state.host();
    let request = state.request();
    let in_request = |f: &mut dyn FnMut(RequestRef) -> Result<(), Status>| match request {
        Some(request) => f(request),
        None => Err(Status::NotFound),
    };
    let connection = state
        .request_state()
        .is_ok_and(|stream| stream.borrow().connection);
    match (path.first(), path.rest()) {
        // a TCP connection has no HTTP request or response
        (b"request" | b"response", _) if connection => Err(Status::NotFound),
        (b"ngx", [name]) => in_request(&mut |r| variable(host, r, name, out)),
        (b"request", rest) => in_request(&mut |r| request_attribute(state, r, rest, out)),
        (b"response", rest) => in_request(&mut |r| response_attribute(state, r, rest, out)),
        (b"source" | b"destination" | b"connection" | b"upstream", [name]) => {
            let attribute = connection_attribute(path.first(), name).ok_or(Status::NotFound)?;
            in_request(&mut |r| fact(host, r, attribute, out))
        }
        (b"plugin_name" | b"plugin_root_id" | b"plugin_vm_id", []) => {
            out.extend_from_slice(state.plugin_name().ok_or(Status::NotFound)?.as_bytes());
            Ok(())
        }
        (first, _) if in_host_namespace(state, first) => copy_lent(out, whole, |visit| {
            host.with_host_property(request, path.display().as_bytes(), visit)
        }),
        // other paths under nginx's names are no properties
        _ if path.is_reserved() => Err(Status::NotFound),
        _ => stored_or_static(state, request, &path, out),
    }
}

/// Whether a path's first segment is the one the proxy's own code serves.
fn in_host_namespace(state: &dyn Scope, first: &[u8]) -> bool {
    state
        .host_namespace()
        .is_some_and(|namespace| *namespace == first)
}

/// What filters stored, else what the configuration sets.
fn stored_or_static(
    state: &dyn Scope,
    request: Option<RequestRef>,
    path: &PropertyPath<'_>,
    out: &mut Vec<u8>,
) -> Result<(), Status> {
    let key = path.key();
    let copy = |store: &PropertyStore, out: &mut Vec<u8>| {
        store
            .get(&key)
            .map(|value| out.extend_from_slice(value))
            .is_some()
    };
    let stored = match state.request_state() {
        Ok(stream) => copy(&stream.borrow().properties, out),
        Err(_) => state.root_properties().is_some_and(|store| copy(store, out)),
    };
    if stored {
        return Ok(());
    }
    if key == b"xds.node" {
        return node(state.host(), request, out);
    }
    static_property(state.host(), request, &key, out)
}

fn static_property(
    host: &dyn Host,
    request: Option<RequestRef>,
    key: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Status> {
    copy_lent(out, whole, |visit| host.with_static_property(request, key, visit))
}

/// Copies what a host function lends (once, to `visit`) into `out`,
/// through `part`; `NOT_FOUND` if it lent nothing.
fn copy_lent(
    out: &mut Vec<u8>,
    part: fn(&[u8]) -> &[u8],
    lend: impl FnOnce(&mut dyn FnMut(Option<&[u8]>) -> HostResult) -> HostResult,
) -> Result<(), Status> {
    let mut found = false;
    lend(&mut |value| {
        if let Some(value) = value {
            out.extend_from_slice(part(value));
            found = true;
        }
        Ok(())
    })?;
    found.then_some(()).ok_or(Status::NotFound)
}

fn whole(bytes: &[u8]) -> &[u8] {
    bytes
}

/// `xds.node` as a whole: Envoy's `Node` message, as protobuf bytes, with
/// the fields the configuration sets (id = 1, cluster = 2).
fn node(host: &dyn Host, request: Option<RequestRef>, out: &mut Vec<u8>) -> Result<(), Status> {
    let mut found = false;
    for (field, key) in [(1u8, &b"xds.node.id"[..]), (2, b"xds.node.cluster")] {
        let mut value = Vec::new();
        if static_property(host, request, key, &mut value).is_ok() {
            out.push(field << 3 | 2); // length-delimited
            let mut len = value.len();
            while len >= 0x80 {
                out.push(len as u8 | 0x80);
                len >>= 7;
            }
            out.push(len as u8);
            out.extend_from_slice(&value);
            found = true;
        }
    }
    found.then_some(()).ok_or(Status::NotFound)
}

fn variable(host: &dyn Host, request: RequestRef, name: &[u8], out: &mut Vec<u8>) -> Result<(), Status> {
    copy_lent(out, whole, |visit| {
        match host.with_variable(request, name, visit) {
            Ok(outcome) => outcome,
            Err(VariableError::Unknown) => Err(Status::NotFound),
            Err(_) => Err(Status::InternalFailure),
        }
    })
}

/// Writes an attribute the Envoy way: strings raw, integers as 8 bytes
/// little-endian, booleans as one byte.
fn fact(host: &dyn Host, request: RequestRef, attribute: Attribute, out: &mut Vec<u8>) -> Result<(), Status> {
    let mut found = false;
    host.with_attribute(request, attribute, &mut |fact| {
        match fact {
            Some(Fact::String(s)) => out.extend_from_slice(s),
            Some(Fact::Int(n)) => out.extend_from_slice(&n.to_le_bytes()),
            Some(Fact::Bool(b)) => out.push(b as u8),
            None => return Ok(()),
        }
        found = true;
        Ok(())
    })?;
    found.then_some(()).ok_or(Status::NotFound)
}

fn connection_attribute(namespace: &[u8], name: &[u8]) -> Option<Attribute> {
    Some(match (namespace, name) {
        (b"source", b"address") => Attribute::SourceAddress,
        (b"source", b"port") => Attribute::SourcePort,
        (b"destination", b"address") => Attribute::DestinationAddress,
        (b"destination", b"port") => Attribute::DestinationPort,
        (b"connection", b"id") => Attribute::ConnectionId,
        (b"connection", b"mtls") => Attribute::ConnectionMtls,
        (b"connection", b"requested_server_name") => Attribute::ConnectionRequestedServerName,
        (b"connection", b"tls_version") => Attribute::ConnectionTlsVersion,
        (b"connection", b"subject_local_certificate") => Attribute::ConnectionSubjectLocalCertificate,
        (b"connection", b"subject_peer_certificate") => Attribute::ConnectionSubjectPeerCertificate,
        (b"connection", b"sha256_peer_certificate_digest") => {
            Attribute::ConnectionSha256PeerCertificateDigest
        }
        (b"connection", b"dns_san_local_certificate") => Attribute::ConnectionDnsSanLocalCertificate,
        (b"connection", b"dns_san_peer_certificate") => Attribute::ConnectionDnsSanPeerCertificate,
        (b"connection", b"uri_san_local_certificate") => Attribute::ConnectionUriSanLocalCertificate,
        (b"connection", b"uri_san_peer_certificate") => Attribute::ConnectionUriSanPeerCertificate,
        (b"connection", b"peer_certificate") => Attribute::ConnectionPeerCertificate,
        (b"upstream", b"address") => Attribute::UpstreamAddress,
        (b"upstream", b"port") => Attribute::UpstreamPort,
        (b"upstream", b"tls_version") => Attribute::UpstreamTlsVersion,
        (b"upstream", b"request_attempt_count") => Attribute::UpstreamRequestAttemptCount,
        _ => return None,
    })
}

/// A request header's first value, raw.
fn header_value(host: &dyn Host, request: RequestRef, name: &[u8], out: &mut Vec<u8>) -> Result<(), Status> {
    copy_lent(out, whole, |visit| {
        host.with_header_value(request, HeaderMap::Request, name, visit)
    })
}

/// A part of `:path` (`request.url_path`, `request.query`).
fn path_part(
    host: &dyn Host,
    request: RequestRef,
    part: fn(&[u8]) -> &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Status> {
    copy_lent(out, part, |visit| {
        host.with_header_value(request, HeaderMap::Request, b":path", visit)
    })
}

fn url_path(path: &[u8]) -> &[u8] {
    path.iter().position(|&b| b == b'?').map_or(path, |q| &path[..q])
}

/// The query without `?`, up to a fragment (empty when there is none).
fn query(path: &[u8]) -> &[u8] {
    let Some(q) = path.iter().position(|&b| b == b'?') else {
        return &[];
    };
    let query = &path[q + 1..];
    query
        .iter()
        .position(|&b| b == b'#')
        .map_or(query, |f| &query[..f])
}

fn request_attribute(
    state: &dyn Scope,
    request: RequestRef,
    rest: &[&[u8]],
    out: &mut Vec<u8>,
) -> Result<(), Status> {
    let host = state.host();
    let attribute = match rest {
        [b"path"] => return header_value(host, request, b":path", out),
        [b"url_path"] => return path_part(host, request, url_path, out),
        [b"query"] => return path_part(host, request, query, out),
        [b"host"] => return header_value(host, request, b":authority", out),
        [b"scheme"] => return header_value(host, request, b":scheme", out),
        [b"method"] => return header_value(host, request, b":method", out),
        [b"referer"] => return header_value(host, request, b"referer", out),
        [b"useragent"] => return header_value(host, request, b"user-agent", out),
        [b"id"] => {
            // Envoy's is the x-request-id header; nginx makes one up
            return header_value(host, request, b"x-request-id", out)
                .or_else(|_| fact(host, request, Attribute::RequestId, out));
        }
        [b"headers"] => return header_map(host, request, HeaderMap::Request, out),
        [b"headers_bytes"] => return headers_bytes(host, request, HeaderMap::Request, out),
        [b"headers", name] => return joined_header(host, request, HeaderMap::Request, name, out),
        [b"time"] => Attribute::RequestTime,
        [b"duration"] => Attribute::RequestDuration,
        [b"protocol"] => Attribute::RequestProtocol,
        [b"size"] => Attribute::RequestSize,
        [b"total_size"] => Attribute::RequestTotalSize,
        _ => return Err(Status::NotFound),
    };
    fact(host, request, attribute, out)
}

fn response_attribute(
    state: &dyn Scope,
    request: RequestRef,
    rest: &[&[u8]],
    out: &mut Vec<u8>,
) -> Result<(), Status> {
    let host = state.host();
    let (headers, trailers, details) = {
        let stream = state.request_state()?.borrow();
        (
            stream.response_headers,
            stream.response_trailers,
            stream.response_code_details.clone(),
        )
    };
    let map = |map: HeaderMap| match map {
        HeaderMap::ResponseTrailers => trailers != Trailers::None,
        _ => headers,
    };
    let which = |kind: &[u8]| {
        if kind == b"headers" {
            HeaderMap::Response
        } else {
            HeaderMap::ResponseTrailers
        }
    };
    let attribute = match rest {
        [b"code"] => Attribute::ResponseCode,
        [b"code_details"] => match details {
            Some(details) => {
                out.extend_from_slice(&details);
                return Ok(());
            }
            None => Attribute::ResponseCodeDetails,
        },
        [b"size"] => Attribute::ResponseSize,
        [b"headers_bytes"] if !headers => {
            out.extend_from_slice(&0i64.to_le_bytes());
            return Ok(());
        }
        [b"headers_bytes"] => return headers_bytes(host, request, HeaderMap::Response, out),
        [b"total_size"] => Attribute::ResponseTotalSize,
        [b"backend_latency"] => Attribute::ResponseBackendLatency,
        // Envoy: a map that does not exist yet is empty
        [kind @ (b"headers" | b"trailers")] if !map(which(kind)) => {
            out.extend_from_slice(&pairs::serialize(&[]));
            return Ok(());
        }
        [kind @ (b"headers" | b"trailers")] => return header_map(host, request, which(kind), out),
        [kind @ (b"headers" | b"trailers"), _] if !map(which(kind)) => return Err(Status::NotFound),
        [kind @ (b"headers" | b"trailers"), name] => {
            return joined_header(host, request, which(kind), name, out)
        }
        [b"grpc_status"] => {
            let status = grpc_status(
                state,
                request,
                map(HeaderMap::Response),
                map(HeaderMap::ResponseTrailers),
            )?;
            out.extend_from_slice(&status.to_le_bytes());
            return Ok(());
        }
        _ => return Err(Status::NotFound),
    };
    fact(host, request, attribute, out)
}

/// Envoy's: `grpc-status` of the trailers, else of the headers, else what
/// the HTTP status means in gRPC terms; -1 for a value that is no status.
fn grpc_status(state: &dyn Scope, request: RequestRef, headers: bool, trailers: bool) -> Result<i64, Status> {
    let host = state.host();
    for (present, map) in [
        (trailers, HeaderMap::ResponseTrailers),
        (headers, HeaderMap::Response),
    ] {
        if !present {
            continue;
        }
        let mut value = Vec::new();
        if joined_header(host, request, map, b"grpc-status", &mut value).is_ok() {
            let parsed = std::str::from_utf8(&value)
                .ok()
                .and_then(|s| s.parse::<u64>().ok());
            return Ok(match parsed {
                Some(code) if code <= 16 => code as i64,
                _ => -1,
            });
        }
    }
    let mut code = Vec::new();
    fact(host, request, Attribute::ResponseCode, &mut code)?;
    let code = i64::from_le_bytes(code.try_into().map_err(|_| Status::InternalFailure)?);
    Ok(crate::abi::grpc::status_of_http(u32::try_from(code).unwrap_or(0)) as i64)
}

/// A header map as Envoy presents it as a property: each name once, lower
/// case, with its values joined by commas.
fn header_map(host: &dyn Host, request: RequestRef, map: HeaderMap, out: &mut Vec<u8>) -> Result<(), Status> {
    host.with_headers(request, map, &mut |entries| {
        let mut merged: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            match merged.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case(key)) {
                Some((_, values)) => {
                    values.push(b',');
                    values.extend_from_slice(value);
                }
                None => merged.push((key.to_ascii_lowercase(), value.to_vec())),
            }
        }
        let pairs: Vec<Pair<'_>> = merged.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        out.extend_from_slice(&pairs::serialize(&pairs));
        Ok(())
    })
}

/// Envoy's byte size of a header map: its names and values.
fn headers_bytes(
    host: &dyn Host,
    request: RequestRef,
    map: HeaderMap,
    out: &mut Vec<u8>,
) -> Result<(), Status> {
    host.with_headers(request, map, &mut |entries| {
        let size: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        out.extend_from_slice(&(size as i64).to_le_bytes());
        Ok(())
    })
}

/// Every value of a header, joined by commas; `NOT_FOUND` if it has none.
fn joined_header(
    host: &dyn Host,
    request: RequestRef,
    map: HeaderMap,
    name: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), Status> {
    if !crate::abi::headers::valid_name(name) {
        return Err(Status::NotFound);
    }
    let name = crate::abi::headers::HeaderName::lookup(map, name);
    let mut found = false;
    host.with_headers(request, map, &mut |entries| {
        for (_, value) in entries.iter().filter(|(key, _)| name.matches(key)) {
            if found {
                out.push(b',');
            }
            out.extend_from_slice(value);
            found = true;
        }
        Ok(())
    })?;
    found.then_some(()).ok_or(Status::NotFound)
}

/// Why a property cannot be set.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// The path is no property (empty, or an empty segment).
    #[error("invalid property path")]
    BadPath,
    /// An attribute of nginx's, or an immutable variable.
    #[error("cannot set {name}: {why}", name = .0, why = read_only_why(.0))]
    ReadOnly(String),
    /// `ngx.<name>` names no variable.
    #[error("cannot set {0}: no such variable")]
    UnknownVariable(String),
    /// No request to set it on (a variable, outside HTTP contexts).
    #[error("no request to set it on")]
    NoRequest,
    /// The store is full.
    #[error("cannot set {name}: properties would exceed {limit} bytes", name = .0, limit = crate::abi::properties::STORE_LIMIT)]
    Full(String),
    #[error("the host failed")]
    Failed,
}

fn read_only_why(name: &str) -> &'static str {
    match name.starts_with("ngx.") {
        true => "the variable is not changeable",
        false => "the property is read-only",
    }
}

/// Sets a property: an nginx variable, a property the proxy's own code
/// serves, or a value in the request's store (a root context's own store
/// outside requests).
pub fn set(state: &mut dyn Scope, raw_path: &[u8], value: &[u8]) -> Result<(), SetError> {
    let path = PropertyPath::parse(raw_path).ok_or(SetError::BadPath)?;
    let host = state.host();
    if let (b"ngx", [name]) = (path.first(), path.rest()) {
        let request = state.request().ok_or(SetError::NoRequest)?;
        return host.set_variable(request, name, value).map_err(|e| match e {
            VariableError::Unknown => SetError::UnknownVariable(path.display()),
            VariableError::ReadOnly => SetError::ReadOnly(path.display()),
            VariableError::Failed => SetError::Failed,
        });
    }
    if path.is_reserved() {
        return Err(SetError::ReadOnly(path.display()));
    }
    if in_host_namespace(state, path.first()) {
        let request = state.request();
        return host
            .set_host_property(request, path.display().as_bytes(), value)
            .map_err(|e| match e {
                VariableError::ReadOnly | VariableError::Unknown => SetError::ReadOnly(path.display()),
                VariableError::Failed => SetError::Failed,
            });
    }
    let key = path.key();
    let readonly = state.is_read_only(&key);
    // a read-only declared property is set once
    let set = |store: &mut PropertyStore| match readonly && store.get(&key).is_some() {
        true => Err(SetError::ReadOnly(path.display())),
        false => Ok(store.set(key.clone(), value)),
    };
    let stored = match state.request_state() {
        Ok(stream) => set(&mut stream.borrow_mut().properties)?,
        Err(_) => match state.root_properties_mut() {
            Some(store) => set(store)?,
            None => return Err(SetError::NoRequest),
        },
    };
    stored.then_some(()).ok_or_else(|| SetError::Full(path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parts() {
        assert_eq!(url_path(b"/a/b?x=1"), b"/a/b");
        assert_eq!(url_path(b"/a"), b"/a");
        assert_eq!(query(b"/a?x=1&y#frag"), b"x=1&y");
        assert_eq!(query(b"/a"), b"");
    }
}
