//! The functions a Proxy-Wasm module imports: every `env.proxy_*` of ABI
//! 0.1.0, 0.2.0 and 0.2.1 and the whole WASI preview1 surface (under
//! `wasi_snapshot_preview1` and the legacy `wasi_unstable`), each with its
//! exact signature, so that SDK-built modules link whatever they import.

mod foreign;
mod grpc;
pub mod properties;
mod proxy;
mod shared;
mod wasi;

use std::panic::{catch_unwind, AssertUnwindSafe};

use wasmtime::{Caller, Linker};

use crate::abi::memory::{self, OutOfBounds};
use crate::abi::{LogLevel, Status};
use crate::runtime::state::HostState;

pub use proxy::UNIMPLEMENTED;
pub use wasi::ProcExit;

/// Registers every host function in `linker`.
pub fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    proxy::define(linker)?;
    foreign::define(linker)?;
    grpc::define(linker)?;
    shared::define(linker)?;
    for module in ["wasi_snapshot_preview1", "wasi_unstable"] {
        wasi::define(linker, module)?;
    }
    Ok(())
}

/// An error code of one of the host interfaces (`proxy_status_t`, WASI
/// errno).
pub trait ErrorCode: Copy {
    fn code(self) -> i32;
    /// The code for a guest pointer or size out of bounds.
    fn fault() -> Self;
}

impl ErrorCode for Status {
    fn code(self) -> i32 {
        self as i32
    }
    fn fault() -> Self {
        Status::InvalidMemoryAccess
    }
}

/// Why a host function did not succeed: an error code for the guest, or a
/// trap that ends the guest's callback.
pub enum Fail<C> {
    Code(C),
    Trap(wasmtime::Error),
}

impl<C: ErrorCode> From<OutOfBounds> for Fail<C> {
    fn from(_: OutOfBounds) -> Self {
        Fail::Code(C::fault())
    }
}

impl<C> From<wasmtime::Error> for Fail<C> {
    fn from(error: wasmtime::Error) -> Self {
        Fail::Trap(error)
    }
}

impl From<Status> for Fail<Status> {
    fn from(status: Status) -> Self {
        Fail::Code(status)
    }
}

pub type Outcome<C> = Result<(), Fail<C>>;

/// Runs a host function body: refuses it inside the guest allocator unless
/// it is `allocator_safe`, turns a panic into a trap, and the outcome into
/// the raw code the guest receives.
pub fn run<C: ErrorCode>(
    caller: &mut Caller<'_, HostState>,
    name: &'static str,
    allocator_safe: bool,
    body: impl FnOnce(&mut Caller<'_, HostState>) -> Outcome<C>,
) -> wasmtime::Result<i32> {
    if caller.data().frame.in_allocator && !allocator_safe {
        return Err(wasmtime::format_err!(
            "host function {name} called from the guest allocator"
        ));
    }
    match catch_unwind(AssertUnwindSafe(|| body(caller))) {
        Ok(Ok(())) => Ok(0),
        Ok(Err(Fail::Code(code))) => Ok(code.code()),
        Ok(Err(Fail::Trap(error))) => Err(error),
        Err(_) => Err(wasmtime::format_err!("host function {name} panicked")),
    }
}

/// Registers a host function `$func(caller, args…) -> Outcome<_>`.
macro_rules! host_fn {
    ($linker:ident, $module:expr, $name:literal, $func:path, ($($arg:ident: $ty:ty),*)) => {
        host_fn!(@define $linker, $module, $name, false, $func, ($($arg: $ty),*))
    };
    ($linker:ident, $module:expr, $name:literal, allocator_safe, $func:path, ($($arg:ident: $ty:ty),*)) => {
        host_fn!(@define $linker, $module, $name, true, $func, ($($arg: $ty),*))
    };
    (@define $linker:ident, $module:expr, $name:literal, $safe:expr, $func:path, ($($arg:ident: $ty:ty),*)) => {
        $linker.func_wrap(
            $module,
            $name,
            |mut caller: wasmtime::Caller<'_, $crate::runtime::state::HostState>, $($arg: $ty),*|
                -> wasmtime::Result<i32> {
                $crate::runtime::hostcalls::run(&mut caller, $name, $safe, |caller| $func(caller, $($arg),*))
            },
        )?;
    };
}
pub(crate) use host_fn;

/// The guest's linear memory, or a fault if it exports none.
fn memory<C: ErrorCode>(caller: &Caller<'_, HostState>) -> Result<wasmtime::Memory, Fail<C>> {
    caller.data().memory.ok_or(Fail::Code(C::fault()))
}

/// Guest bytes copied out, for a host function that calls the guest
/// allocator (which may move memory) while it uses them: on the stack when
/// short, as header names are, to keep the hot paths free of allocations.
enum GuestBytes {
    Short([u8; GuestBytes::SHORT], usize),
    Long(Vec<u8>),
}

impl GuestBytes {
    const SHORT: usize = 128;
}

impl std::ops::Deref for GuestBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            GuestBytes::Short(bytes, len) => &bytes[..*len],
            GuestBytes::Long(bytes) => bytes,
        }
    }
}

/// Reads `len` bytes at `ptr` into a host buffer.
fn read_bytes<C: ErrorCode>(
    caller: &Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> Result<GuestBytes, Fail<C>> {
    let mem = memory(caller)?;
    let bytes = memory::slice(mem.data(caller), ptr as u32, len as u32)?;
    Ok(if bytes.len() <= GuestBytes::SHORT {
        let mut short = [0; GuestBytes::SHORT];
        short[..bytes.len()].copy_from_slice(bytes);
        GuestBytes::Short(short, bytes.len())
    } else {
        GuestBytes::Long(bytes.to_vec())
    })
}

/// Stores a little-endian `u32` at `ptr`.
fn store_u32<C: ErrorCode>(caller: &mut Caller<'_, HostState>, ptr: i32, value: u32) -> Outcome<C> {
    let mem = memory(caller)?;
    memory::write_u32(mem.data_mut(caller), ptr as u32, value)?;
    Ok(())
}

fn store_u64<C: ErrorCode>(caller: &mut Caller<'_, HostState>, ptr: i32, value: u64) -> Outcome<C> {
    let mem = memory(caller)?;
    memory::write_u64(mem.data_mut(caller), ptr as u32, value)?;
    Ok(())
}

/// Hands `len` host bytes to the guest, the Proxy-Wasm way: the guest
/// allocator provides the memory (the guest owns it afterwards), `fill`
/// writes the bytes, and the pointer and size go to the two out-pointers.
/// Nothing is allocated for an empty value: both out-values are 0.
fn copy_out<C: ErrorCode>(
    caller: &mut Caller<'_, HostState>,
    ret_ptr: i32,
    ret_size: i32,
    len: usize,
    fill: impl FnOnce(&mut [u8]),
) -> Outcome<C> {
    let mem = memory(caller)?;
    // Check the out-pointers before allocating, so a bad one cannot leak
    // the block in the guest. Memory only grows: they stay valid.
    check_out_pointers(caller, &[ret_ptr, ret_size])?;
    let len = u32::try_from(len).map_err(|_| Fail::Code(C::fault()))?;
    let ptr = if len == 0 {
        0
    } else {
        guest_alloc::<C>(caller, len)?
    };
    let data = mem.data_mut(&mut *caller);
    if len > 0 {
        fill(memory::slice_mut(data, ptr, len)?);
    }
    memory::write_u32(data, ret_ptr as u32, ptr)?;
    memory::write_u32(data, ret_size as u32, len)?;
    Ok(())
}

/// Scratch buffers larger than this are not kept for the next call.
const SCRATCH_KEPT: usize = 64 * 1024;

/// Runs `f` with the instance's scratch buffer, emptied: host values are
/// copied there before the guest allocator runs, without an allocation
/// per call.
fn with_scratch<R>(
    caller: &mut Caller<'_, HostState>,
    f: impl FnOnce(&mut Caller<'_, HostState>, &mut Vec<u8>) -> R,
) -> R {
    let mut scratch = std::mem::take(&mut caller.data_mut().scratch);
    scratch.clear();
    let result = f(caller, &mut scratch);
    if scratch.capacity() <= SCRATCH_KEPT {
        caller.data_mut().scratch = scratch;
    }
    result
}

/// Fails with the fault code unless each pointer has room for a `u32`:
/// before a host function takes something it could not give back.
fn check_out_pointers<C: ErrorCode>(caller: &Caller<'_, HostState>, pointers: &[i32]) -> Outcome<C> {
    let mem = memory(caller)?;
    for &ptr in pointers {
        memory::check(mem.data(caller), ptr as u32, 4)?;
    }
    Ok(())
}

/// Calls the guest allocator for `len` bytes. Only allocator-safe host
/// functions may run meanwhile, so host data lent to the caller (such as
/// nginx header pointers) cannot change under it.
fn guest_alloc<C: ErrorCode>(caller: &mut Caller<'_, HostState>, len: u32) -> Result<u32, Fail<C>> {
    let allocator = caller.data().allocator.clone().ok_or(Fail::Code(C::fault()))?;
    let outer = std::mem::replace(&mut caller.data_mut().frame.in_allocator, true);
    let result = allocator.call(&mut *caller, len as i32);
    caller.data_mut().frame.in_allocator = outer;
    let ptr = result? as u32;
    let mem = memory(caller)?;
    if ptr == 0 || memory::check(mem.data(&*caller), ptr, len).is_err() {
        caller
            .data()
            .log(LogLevel::Error, b"guest allocator returned an invalid block");
        return Err(Fail::Code(C::fault()));
    }
    Ok(ptr)
}
