//! The Proxy-Wasm ABI: status codes, enums, wire formats, guest memory
//! access, header names and property paths. Pure data: the host functions
//! that apply it live in `runtime::hostcalls`.

pub mod grpc;
pub mod headers;
pub mod memory;
pub mod pairs;
pub mod properties;
pub mod proto;

/// `proxy_status_t`: what every host function returns.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    BadArgument = 2,
    SerializationFailure = 3,
    ParseFailure = 4,
    InvalidMemoryAccess = 6,
    Empty = 7,
    CasMismatch = 8,
    InternalFailure = 10,
    BrokenConnection = 11,
    Unimplemented = 12,
}

/// The result of a host function before it is turned into a raw status.
pub type HostResult = Result<(), Status>;

pub fn status_code(result: HostResult) -> i32 {
    match result {
        Ok(()) => Status::Ok as i32,
        Err(status) => status as i32,
    }
}

/// The ABI a module declares by exporting `proxy_abi_version_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AbiVersion {
    V0_1_0,
    V0_2_0,
    V0_2_1,
}

impl AbiVersion {
    pub const ALL: [AbiVersion; 3] = [AbiVersion::V0_2_1, AbiVersion::V0_2_0, AbiVersion::V0_1_0];

    pub fn marker_export(self) -> &'static str {
        match self {
            AbiVersion::V0_1_0 => "proxy_abi_version_0_1_0",
            AbiVersion::V0_2_0 => "proxy_abi_version_0_2_0",
            AbiVersion::V0_2_1 => "proxy_abi_version_0_2_1",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AbiVersion::V0_1_0 => "0.1.0",
            AbiVersion::V0_2_0 => "0.2.0",
            AbiVersion::V0_2_1 => "0.2.1",
        }
    }

    /// 0.1.0 header callbacks take no `end_of_stream` argument.
    pub fn headers_callbacks_have_eos(self) -> bool {
        self != AbiVersion::V0_1_0
    }

    /// 0.1.0 answers a missing header with an empty value instead of
    /// `NOT_FOUND`.
    pub fn missing_header_is_empty(self) -> bool {
        self == AbiVersion::V0_1_0
    }
}

/// `proxy_log_level_t`, which the boundary header declares with the ABI's
/// values.
pub use crate::sys::LogLevel;

/// A direction of an HTTP request: its request or its response.
pub use crate::sys::Direction;

/// A `proxy_stream_type_t`, as the direction it designates and whether it
/// is one of a TCP connection's (DOWNSTREAM 2, UPSTREAM 3: the request
/// direction is the downstream's) rather than of an HTTP request
/// (HTTP_REQUEST 0, HTTP_RESPONSE 1).
pub fn stream_type(raw: u32) -> Option<(Direction, bool)> {
    match raw {
        0 => Some((Direction::Request, false)),
        1 => Some((Direction::Response, false)),
        2 => Some((Direction::Request, true)),
        3 => Some((Direction::Response, true)),
        _ => None,
    }
}

/// `proxy_peer_type_t`: who closed a side of a connection; the boundary
/// header declares it with the ABI's values.
pub use crate::sys::Peer as PeerType;

/// `proxy_map_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapType {
    HttpRequestHeaders,
    HttpRequestTrailers,
    HttpResponseHeaders,
    HttpResponseTrailers,
    GrpcReceiveInitialMetadata,
    GrpcReceiveTrailingMetadata,
    HttpCallResponseHeaders,
    HttpCallResponseTrailers,
}

impl MapType {
    pub fn from_raw(raw: u32) -> Option<MapType> {
        Some(match raw {
            0 => MapType::HttpRequestHeaders,
            1 => MapType::HttpRequestTrailers,
            2 => MapType::HttpResponseHeaders,
            3 => MapType::HttpResponseTrailers,
            4 => MapType::GrpcReceiveInitialMetadata,
            5 => MapType::GrpcReceiveTrailingMetadata,
            6 => MapType::HttpCallResponseHeaders,
            7 => MapType::HttpCallResponseTrailers,
            _ => return None,
        })
    }
}

/// `proxy_buffer_type_t`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferType {
    HttpRequestBody,
    HttpResponseBody,
    DownstreamData,
    UpstreamData,
    HttpCallResponseBody,
    GrpcReceiveBuffer,
    VmConfiguration,
    PluginConfiguration,
    CallData,
}

impl BufferType {
    pub fn from_raw(raw: u32) -> Option<BufferType> {
        Some(match raw {
            0 => BufferType::HttpRequestBody,
            1 => BufferType::HttpResponseBody,
            2 => BufferType::DownstreamData,
            3 => BufferType::UpstreamData,
            4 => BufferType::HttpCallResponseBody,
            5 => BufferType::GrpcReceiveBuffer,
            6 => BufferType::VmConfiguration,
            7 => BufferType::PluginConfiguration,
            8 => BufferType::CallData,
            _ => return None,
        })
    }
}

/// What a filter asks for when a stream callback returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Continue,
    Pause,
}

impl Action {
    /// Reads a header callback's return value the way Envoy does: 0
    /// (Continue) and 2 (ContinueAndEndStream) go on; 1 (StopIteration) and
    /// every other value stop the whole stream (StopAllIteration).
    pub fn from_headers_status(raw: i32) -> Action {
        match raw {
            0 | 2 => Action::Continue,
            _ => Action::Pause,
        }
    }
}
