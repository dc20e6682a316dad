//! A hostile guest, for fuzzing the host: in every callback it calls host
//! functions (every `proxy_*` one and a WASI subset) with arguments drawn
//! to hurt: null, dangling and straddling pointers, sizes near `u32::MAX`,
//! out-pointers that overlap their inputs, unknown enum values, serialized
//! pairs whose counts lie, and calls from contexts they do not belong to.
//!
//! The VM configuration is the seed (a decimal number); the plugin
//! configuration is the number of calls per callback (default 100). The
//! filter logs, per callback, how many calls it made and how many got
//! each status; a status the ABI does not define is logged as an error
//! ("unexpected status"), which the tests look for.
//!
//! It keeps its own state in static buffers and never allocates, so that
//! what the host writes through pointers it was given (always into the
//! scratch area, or out of bounds) cannot corrupt the guest itself.

#![allow(clippy::missing_safety_doc)]

const SCRATCH_SIZE: usize = 64 * 1024;
const ARENA_SIZE: usize = 1024 * 1024;
const STATUSES: usize = 16;
/// Statuses the ABI defines: OK (0) to UNIMPLEMENTED (12).
const LAST_STATUS: u32 = 12;

static mut SCRATCH: [u8; SCRATCH_SIZE] = [0; SCRATCH_SIZE];
static mut ARENA: [u8; ARENA_SIZE] = [0; ARENA_SIZE];
static mut ARENA_NEXT: usize = 0;
static mut RNG: u64 = 0x9e37_79b9_7f4a_7c15;
static mut CALLS_PER_CALLBACK: u32 = 100;
static mut TALLY: [u32; STATUSES] = [0; STATUSES];
static mut LINE: [u8; 256] = [0; 256];
/// A target that never leaves the machine: HTTP calls go nowhere else.
static SAFE_UPSTREAM: &[u8] = b"127.0.0.1:9";

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, ptr: u32, len: u32) -> u32;
    fn proxy_get_log_level(ret: u32) -> u32;
    fn proxy_get_current_time_nanoseconds(ret: u32) -> u32;
    fn proxy_set_effective_context(id: u32) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_get_buffer_bytes(buffer: u32, start: u32, max: u32, ret_ptr: u32, ret_size: u32) -> u32;
    fn proxy_get_buffer_status(buffer: u32, ret_len: u32, ret_flags: u32) -> u32;
    fn proxy_set_buffer_bytes(buffer: u32, start: u32, size: u32, ptr: u32, len: u32) -> u32;
    fn proxy_continue_stream(stream: u32) -> u32;
    fn proxy_close_stream(stream: u32) -> u32;
    fn proxy_get_header_map_size(map: u32, ret: u32) -> u32;
    fn proxy_get_header_map_pairs(map: u32, ret_ptr: u32, ret_size: u32) -> u32;
    fn proxy_set_header_map_pairs(map: u32, ptr: u32, size: u32) -> u32;
    fn proxy_get_header_map_value(map: u32, key: u32, key_len: u32, ret_ptr: u32, ret_size: u32) -> u32;
    fn proxy_add_header_map_value(map: u32, key: u32, key_len: u32, value: u32, value_len: u32) -> u32;
    fn proxy_replace_header_map_value(map: u32, key: u32, key_len: u32, value: u32, value_len: u32) -> u32;
    fn proxy_remove_header_map_value(map: u32, key: u32, key_len: u32) -> u32;
    fn proxy_http_call(
        upstream: u32, upstream_len: u32, headers: u32, headers_len: u32, body: u32, body_len: u32,
        trailers: u32, trailers_len: u32, timeout: u32, ret_token: u32,
    ) -> u32;
    fn proxy_get_status(ret_code: u32, ret_ptr: u32, ret_size: u32) -> u32;
    fn proxy_get_property(path: u32, path_len: u32, ret_ptr: u32, ret_size: u32) -> u32;
    fn proxy_set_property(path: u32, path_len: u32, value: u32, value_len: u32) -> u32;
    fn proxy_send_local_response(
        status: u32, details: u32, details_len: u32, body: u32, body_len: u32, headers: u32,
        headers_len: u32, grpc_status: i32,
    ) -> u32;
    fn proxy_get_shared_data(key: u32, key_len: u32, ret_ptr: u32, ret_size: u32, ret_cas: u32) -> u32;
    fn proxy_set_shared_data(key: u32, key_len: u32, value: u32, value_len: u32, cas: u32) -> u32;
    fn proxy_register_shared_queue(name: u32, name_len: u32, ret_id: u32) -> u32;
    fn proxy_resolve_shared_queue(vm_id: u32, vm_id_len: u32, name: u32, name_len: u32, ret_id: u32) -> u32;
    fn proxy_enqueue_shared_queue(id: u32, value: u32, value_len: u32) -> u32;
    fn proxy_dequeue_shared_queue(id: u32, ret_ptr: u32, ret_size: u32) -> u32;
    fn proxy_define_metric(kind: u32, name: u32, name_len: u32, ret_id: u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: i64) -> u32;
    fn proxy_get_metric(id: u32, ret: u32) -> u32;
    fn proxy_done() -> u32;
    fn proxy_call_foreign_function(name: u32, name_len: u32, args: u32, args_len: u32, ret_ptr: u32, ret_size: u32) -> u32;
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn fd_write(fd: u32, iovs: u32, iovs_len: u32, ret: u32) -> u32;
    fn random_get(buf: u32, len: u32) -> u32;
    fn clock_time_get(id: u32, precision: u64, ret: u32) -> u32;
    fn environ_sizes_get(count: u32, size: u32) -> u32;
    fn environ_get(environ: u32, buf: u32) -> u32;
    fn args_sizes_get(count: u32, size: u32) -> u32;
    fn args_get(argv: u32, buf: u32) -> u32;
    fn fd_close(fd: u32) -> u32;
}

fn next() -> u64 {
    // SAFETY: the guest is single-threaded.
    unsafe {
        RNG ^= RNG << 13;
        RNG ^= RNG >> 7;
        RNG ^= RNG << 17;
        RNG
    }
}

fn below(n: u64) -> u32 {
    (next() % n) as u32
}

fn scratch() -> u32 {
    // SAFETY: only its address is taken.
    unsafe { core::ptr::addr_of!(SCRATCH) as u32 }
}

fn memory_end() -> u32 {
    (core::arch::wasm32::memory_size(0) * 65536) as u32
}

/// A pointer to read from: into the scratch area (random bytes), at the
/// edges of memory, past it, or null.
fn ptr() -> u32 {
    match below(10) {
        0 => 0,
        1 => memory_end() - below(8),
        2 => memory_end().wrapping_add(below(1 << 20)),
        3 => u32::MAX - below(16),
        4 => scratch() + SCRATCH_SIZE as u32 - below(16),
        _ => scratch() + below(SCRATCH_SIZE as u64 - 256),
    }
}

/// A pointer the host writes 4 bytes to: into the scratch area (maybe
/// over an input), or one the write cannot fit.
fn out_ptr() -> u32 {
    match below(8) {
        0 => 0,
        1 => memory_end() - 1 - below(3),
        2 => u32::MAX - below(8),
        3 => memory_end().wrapping_add(below(4096)),
        _ => scratch() + 4 * below(SCRATCH_SIZE as u64 / 4 - 64),
    }
}

/// A size: small ones mostly, the whole scratch area, or near `u32::MAX`.
fn len() -> u32 {
    match below(12) {
        0 => 0,
        1 => u32::MAX - below(16),
        2 => 0x8000_0000 + below(16),
        3 => below(SCRATCH_SIZE as u64),
        4 => next() as u32,
        _ => below(64),
    }
}

/// An enum value: a valid one mostly, else anything.
fn choice(valid: u32) -> u32 {
    if below(4) == 0 {
        next() as u32
    } else {
        below(valid as u64 + 2)
    }
}

/// Writes serialized pairs into the scratch area whose header lies about
/// the count or the sizes; its address.
fn lying_pairs() -> u32 {
    // SAFETY: the scratch area is the guest's own; nothing holds it.
    let area = unsafe { &mut *core::ptr::addr_of_mut!(SCRATCH) };
    let count = match below(4) {
        0 => u32::MAX,
        1 => 0x1000_0000,
        2 => below(4),
        _ => below(64),
    };
    area[..4].copy_from_slice(&count.to_le_bytes());
    for i in 0..8usize {
        let size = if below(3) == 0 { next() as u32 } else { below(16) };
        area[4 + 4 * i..8 + 4 * i].copy_from_slice(&size.to_le_bytes());
    }
    scratch()
}

/// An argument for a pairs parameter.
fn pairs_ptr() -> u32 {
    if below(2) == 0 {
        lying_pairs()
    } else {
        ptr()
    }
}

fn upstream() -> (u32, u32) {
    match below(4) {
        0 => (0, 0),
        1 => (memory_end().wrapping_add(below(64)), below(32)),
        _ => (SAFE_UPSTREAM.as_ptr() as u32, SAFE_UPSTREAM.len() as u32),
    }
}

/// The WASI functions among the calls of `one_call`.
const WASI_CALLS: core::ops::RangeInclusive<u32> = 34..=41;

/// Host function `which` with hostile arguments; its status.
fn one_call(which: u32) -> u32 {
    // SAFETY: every pointer argument is a number the host must check; the
    // host writes only where the guest allows it (scratch) or nowhere.
    unsafe {
        match which {
            // any level but critical: the tests read [crit] as a host fault
            0 => proxy_log(match choice(6) { 5 => 4, level => level }, ptr(), len() % 300),
            1 => proxy_get_log_level(out_ptr()),
            2 => proxy_get_current_time_nanoseconds(out_ptr()),
            3 => proxy_set_effective_context(if below(2) == 0 { below(8) } else { next() as u32 }),
            4 => proxy_set_tick_period_milliseconds(match below(4) {
                0 => 0,
                1 => u32::MAX,
                _ => 50 + below(1000),
            }),
            5 => proxy_get_buffer_bytes(choice(8), len(), len(), out_ptr(), out_ptr()),
            6 => proxy_get_buffer_status(choice(8), out_ptr(), out_ptr()),
            7 => proxy_set_buffer_bytes(choice(8), len(), len(), ptr(), len()),
            8 => proxy_continue_stream(choice(2)),
            9 => proxy_close_stream(choice(2)),
            10 => proxy_get_header_map_size(choice(7), out_ptr()),
            11 => proxy_get_header_map_pairs(choice(7), out_ptr(), out_ptr()),
            12 => proxy_set_header_map_pairs(choice(7), pairs_ptr(), len()),
            13 => proxy_get_header_map_value(choice(7), ptr(), len(), out_ptr(), out_ptr()),
            14 => proxy_add_header_map_value(choice(7), ptr(), len() % 300, ptr(), len() % 300),
            15 => proxy_replace_header_map_value(choice(7), ptr(), len() % 300, ptr(), len() % 300),
            16 => proxy_remove_header_map_value(choice(7), ptr(), len()),
            17 => {
                let (target, target_len) = upstream();
                proxy_http_call(
                    target, target_len, pairs_ptr(), len(), ptr(), len(), pairs_ptr(), len(),
                    below(2000), out_ptr(),
                )
            }
            18 => proxy_get_status(out_ptr(), out_ptr(), out_ptr()),
            19 => proxy_get_property(ptr(), len(), out_ptr(), out_ptr()),
            20 => proxy_set_property(ptr(), len(), ptr(), len()),
            21 => proxy_send_local_response(
                if below(2) == 0 { 100 + below(500) } else { next() as u32 },
                ptr(), len() % 300, ptr(), len(), pairs_ptr(), len(), next() as i32,
            ),
            22 => proxy_get_shared_data(ptr(), len() % 300, out_ptr(), out_ptr(), out_ptr()),
            23 => proxy_set_shared_data(ptr(), len() % 300, ptr(), len() % 4096, below(4)),
            24 => proxy_register_shared_queue(ptr(), len() % 300, out_ptr()),
            25 => proxy_resolve_shared_queue(ptr(), len() % 64, ptr(), len() % 300, out_ptr()),
            26 => proxy_enqueue_shared_queue(choice(8), ptr(), len() % 4096),
            27 => proxy_dequeue_shared_queue(choice(8), out_ptr(), out_ptr()),
            28 => proxy_define_metric(choice(3), ptr(), len() % 300, out_ptr()),
            29 => proxy_increment_metric(choice(64), next() as i64),
            30 => proxy_record_metric(choice(64), next() as i64),
            31 => proxy_get_metric(choice(64), out_ptr()),
            32 => proxy_done(),
            33 => proxy_call_foreign_function(ptr(), len(), ptr(), len(), out_ptr(), out_ptr()),
            // WASI: fds other than stdout and stderr mostly
            34 => fd_write(if below(8) == 0 { 1 + below(2) } else { next() as u32 }, ptr(), len() % 8, out_ptr()),
            35 => random_get(out_ptr(), len() % 8192),
            36 => clock_time_get(choice(4), next(), out_ptr()),
            37 => environ_sizes_get(out_ptr(), out_ptr()),
            38 => environ_get(out_ptr(), out_ptr()),
            39 => args_sizes_get(out_ptr(), out_ptr()),
            40 => args_get(out_ptr(), out_ptr()),
            41 => fd_close(next() as u32),
            // the same pointer as input and output
            42 => {
                let p = out_ptr();
                proxy_get_header_map_value(choice(7), p, len() % 64, p, p)
            }
            _ => {
                let p = out_ptr();
                proxy_get_property(p, len() % 64, p, p)
            }
        }
    }
}

/// Formats `name: calls N, ok N, status counts` into LINE; its length.
fn summary(callback: &[u8], calls: u32) -> usize {
    // SAFETY: single-threaded; LINE and TALLY are the guest's own.
    let (line, tally) = unsafe { (&mut *core::ptr::addr_of_mut!(LINE), &*core::ptr::addr_of!(TALLY)) };
    let mut n = 0;
    let mut put = |bytes: &[u8]| {
        let take = bytes.len().min(line.len() - n);
        line[n..n + take].copy_from_slice(&bytes[..take]);
        n += take;
    };
    put(b"hostile calls in ");
    put(callback);
    put(b": ");
    put(number(calls).as_slice());
    put(b" calls, statuses");
    for (status, count) in tally.iter().enumerate() {
        if *count > 0 {
            put(b" ");
            put(number(status as u32).as_slice());
            put(b"=");
            put(number(*count).as_slice());
        }
    }
    n
}

/// A number in decimal, without allocating.
fn number(mut value: u32) -> Digits {
    let mut digits = Digits { bytes: [0; 10], len: 0 };
    loop {
        digits.bytes[9 - digits.len] = b'0' + (value % 10) as u8;
        digits.len += 1;
        value /= 10;
        if value == 0 {
            return digits;
        }
    }
}

struct Digits {
    bytes: [u8; 10],
    len: usize,
}

impl Digits {
    fn as_slice(&self) -> &[u8] {
        &self.bytes[10 - self.len..]
    }
}

fn log(level: u32, text: &[u8]) {
    // SAFETY: a valid slice of the guest's memory.
    unsafe {
        proxy_log(level, text.as_ptr() as u32, text.len() as u32);
    }
}

/// The storm of one callback.
fn storm(callback: &[u8]) {
    // SAFETY: single-threaded; the statics are the guest's own.
    let calls = unsafe { CALLS_PER_CALLBACK };
    unsafe { TALLY = [0; STATUSES] };
    for _ in 0..calls {
        let which = below(44);
        let status = one_call(which);
        // WASI errnos go up to 76
        let last = if WASI_CALLS.contains(&which) { 76 } else { LAST_STATUS };
        if status > last {
            let mut text = *b"unexpected status          ";
            let digits = number(status);
            text[18..18 + digits.len].copy_from_slice(digits.as_slice());
            log(4, &text);
        }
        // SAFETY: as above.
        unsafe { TALLY[(status as usize).min(STATUSES - 1)] += 1 };
    }
    // SAFETY: LINE is the guest's own.
    let n = summary(callback, calls);
    unsafe { log(2, &(*core::ptr::addr_of!(LINE))[..n]) };
}

/// A decimal number from a buffer the host lends (the configurations).
fn read_number(buffer: u32, size: u32) -> Option<u64> {
    let mut data: u32 = 0;
    let mut len: u32 = 0;
    // SAFETY: out-pointers to the guest's own locals.
    let status = unsafe {
        proxy_get_buffer_bytes(buffer, 0, size, core::ptr::addr_of_mut!(data) as u32, core::ptr::addr_of_mut!(len) as u32)
    };
    if status != 0 || len == 0 {
        return None;
    }
    // SAFETY: the host wrote `len` bytes at `data`, from the allocator.
    let bytes = unsafe { core::slice::from_raw_parts(data as *const u8, len as usize) };
    let mut value: u64 = 0;
    for &b in bytes {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value.wrapping_mul(10).wrapping_add((b - b'0') as u64);
    }
    Some(value)
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: u32) -> u32 {
    // SAFETY: single-threaded bump allocation in the guest's own arena;
    // what the host hands over is read before the next callback.
    unsafe {
        let size = size as usize;
        if size > ARENA_SIZE {
            return 0;
        }
        if ARENA_NEXT + size > ARENA_SIZE {
            ARENA_NEXT = 0;
        }
        let p = core::ptr::addr_of_mut!(ARENA) as usize + ARENA_NEXT;
        ARENA_NEXT += (size + 7) & !7;
        p as u32
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(_context_id: u32, _root_id: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_id: u32, vm_config_size: u32) -> u32 {
    if let Some(seed) = read_number(6 /* VM configuration */, vm_config_size) {
        // SAFETY: single-threaded.
        unsafe { RNG = seed | 1 };
    }
    // SAFETY: the guest's own scratch area gets random bytes.
    unsafe {
        for b in (*core::ptr::addr_of_mut!(SCRATCH)).iter_mut() {
            *b = next() as u8;
        }
    }
    storm(b"on_vm_start");
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(_root_id: u32, config_size: u32) -> u32 {
    if let Some(calls) = read_number(7 /* plugin configuration */, config_size) {
        // SAFETY: single-threaded.
        unsafe { CALLS_PER_CALLBACK = calls.min(100_000) as u32 };
    }
    storm(b"on_configure");
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_id: u32, _headers: u32, _eos: u32) -> u32 {
    storm(b"on_request_headers");
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(_id: u32, _size: u32, _eos: u32) -> u32 {
    storm(b"on_request_body");
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(_id: u32, _headers: u32, _eos: u32) -> u32 {
    storm(b"on_response_headers");
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(_id: u32, _size: u32, _eos: u32) -> u32 {
    storm(b"on_response_body");
    0
}

#[no_mangle]
pub extern "C" fn proxy_on_log(_id: u32) {
    storm(b"on_log");
}

#[no_mangle]
pub extern "C" fn proxy_on_done(_id: u32) -> u32 {
    storm(b"on_done");
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(_id: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_tick(_root_id: u32) {
    storm(b"on_tick");
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(_root: u32, _token: u32, _headers: u32, _body: u32, _trailers: u32) {
    storm(b"on_http_call_response");
}

#[no_mangle]
pub extern "C" fn proxy_on_queue_ready(_root: u32, _queue: u32) {
    storm(b"on_queue_ready");
}
