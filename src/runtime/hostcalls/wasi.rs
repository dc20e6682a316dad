//! WASI preview1 as a Proxy-Wasm host offers it: no files, directories or
//! sockets; stdout and stderr go to the error log; args and environment
//! are empty; clocks and randomness work; nothing ever blocks the worker.

use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use super::{host_fn, memory, store_u32, store_u64, ErrorCode, Fail, Outcome};
use crate::abi::memory::{read_u32, slice, slice_mut, write_u32};
use crate::abi::LogLevel;
use crate::runtime::state::HostState;

/// The WASI errno values this host returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Errno {
    Badf = 8,
    Fault = 21,
    Inval = 28,
    Notdir = 54,
    Notsup = 58,
    Spipe = 70,
}

impl ErrorCode for Errno {
    fn code(self) -> i32 {
        self as i32
    }
    fn fault() -> Self {
        Errno::Fault
    }
}

impl From<Errno> for Fail<Errno> {
    fn from(errno: Errno) -> Self {
        Fail::Code(errno)
    }
}

/// The guest called `proc_exit`: it ends the callback like a trap.
#[derive(Debug)]
pub struct ProcExit(pub i32);

impl std::fmt::Display for ProcExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "proc_exit({}) called", self.0)
    }
}

impl std::error::Error for ProcExit {}

type Result = Outcome<Errno>;
type Call<'a, 'b> = &'a mut Caller<'b, HostState>;

const STDIN: i32 = 0;
const STDOUT: i32 = 1;
const STDERR: i32 = 2;
const FILETYPE_CHARACTER_DEVICE: u8 = 2;
const RIGHT_FD_READ: u64 = 1 << 1;
const RIGHT_FD_WRITE: u64 = 1 << 6;
/// As proxy-wasm-cpp-host: larger requests are refused with EINVAL.
const RANDOM_GET_MAX: u32 = 64 * 1024;

/// The error for an operation on a descriptor: stdio exists, nothing else.
fn on_fd(fd: i32, stdio: std::result::Result<(), Errno>) -> Result {
    if (STDIN..=STDERR).contains(&fd) {
        stdio.map_err(Fail::Code)
    } else {
        Err(Errno::Badf.into())
    }
}

/// Registers a function that needs neither memory nor state: it answers
/// `$stdio` for stdin, stdout and stderr and `EBADF` for any other
/// descriptor (or always `$stdio` with `any`). Other arguments are ignored.
macro_rules! fd_fn {
    ($linker:ident, $module:expr, $name:literal, $stdio:expr, (fd $(, $ty:ty)*)) => {
        $linker.func_wrap($module, $name, |fd: i32, $(_: $ty),*| -> i32 { fd_errno(fd, $stdio) })?;
    };
    ($linker:ident, $module:expr, $name:literal, $result:expr, (any $(, $ty:ty)*)) => {
        $linker.func_wrap($module, $name, |$(_: $ty),*| -> i32 { $result })?;
    };
}

fn fd_errno(fd: i32, stdio: i32) -> i32 {
    if (STDIN..=STDERR).contains(&fd) {
        stdio
    } else {
        Errno::Badf as i32
    }
}

const SUCCESS: i32 = 0;
const NOTSUP: i32 = Errno::Notsup as i32;
const SPIPE: i32 = Errno::Spipe as i32;
const NOTDIR: i32 = Errno::Notdir as i32;
const BADF: i32 = Errno::Badf as i32;

pub fn define(linker: &mut Linker<HostState>, module: &'static str) -> wasmtime::Result<()> {
    fd_fn!(linker, module, "args_get", SUCCESS, (any, i32, i32));
    host_fn!(linker, module, "args_sizes_get", allocator_safe, two_zeros, (count: i32, size: i32));
    fd_fn!(linker, module, "environ_get", SUCCESS, (any, i32, i32));
    host_fn!(linker, module, "environ_sizes_get", allocator_safe, two_zeros, (count: i32, size: i32));
    host_fn!(linker, module, "clock_res_get", allocator_safe, clock_res_get, (id: i32, ret: i32));
    host_fn!(linker, module, "clock_time_get", allocator_safe, clock_time_get, (id: i32, precision: i64, ret: i32));
    fd_fn!(linker, module, "fd_advise", SUCCESS, (fd, i64, i64, i32));
    fd_fn!(linker, module, "fd_allocate", SUCCESS, (fd, i64, i64));
    fd_fn!(linker, module, "fd_close", SUCCESS, (fd));
    fd_fn!(linker, module, "fd_datasync", SUCCESS, (fd));
    host_fn!(linker, module, "fd_fdstat_get", allocator_safe, fd_fdstat_get, (fd: i32, ret: i32));
    fd_fn!(linker, module, "fd_fdstat_set_flags", NOTSUP, (fd, i32));
    fd_fn!(linker, module, "fd_fdstat_set_rights", SUCCESS, (fd, i64, i64));
    host_fn!(linker, module, "fd_filestat_get", fd_filestat_get, (fd: i32, ret: i32));
    fd_fn!(linker, module, "fd_filestat_set_size", SUCCESS, (fd, i64));
    fd_fn!(
        linker,
        module,
        "fd_filestat_set_times",
        SUCCESS,
        (fd, i64, i64, i32)
    );
    fd_fn!(linker, module, "fd_pread", SPIPE, (fd, i32, i32, i64, i32));
    // No pre-opened directories: EBADF ends libc's scan for them.
    fd_fn!(linker, module, "fd_prestat_get", BADF, (any, i32, i32));
    fd_fn!(linker, module, "fd_prestat_dir_name", BADF, (any, i32, i32, i32));
    host_fn!(linker, module, "fd_pwrite", allocator_safe, fd_pwrite, (fd: i32, iovs: i32, n: i32, offset: i64, ret: i32));
    host_fn!(linker, module, "fd_read", fd_read, (fd: i32, iovs: i32, n: i32, ret: i32));
    fd_fn!(linker, module, "fd_readdir", NOTDIR, (fd, i32, i32, i64, i32));
    fd_fn!(linker, module, "fd_renumber", NOTSUP, (fd, i32));
    fd_fn!(linker, module, "fd_seek", SPIPE, (fd, i64, i32, i32));
    fd_fn!(linker, module, "fd_sync", SUCCESS, (fd));
    fd_fn!(linker, module, "fd_tell", SPIPE, (fd, i32));
    host_fn!(linker, module, "fd_write", allocator_safe, fd_write, (fd: i32, iovs: i32, n: i32, ret: i32));
    fd_fn!(linker, module, "path_create_directory", NOTDIR, (fd, i32, i32));
    fd_fn!(
        linker,
        module,
        "path_filestat_get",
        NOTDIR,
        (fd, i32, i32, i32, i32)
    );
    fd_fn!(
        linker,
        module,
        "path_filestat_set_times",
        NOTDIR,
        (fd, i32, i32, i32, i64, i64, i32)
    );
    fd_fn!(
        linker,
        module,
        "path_link",
        NOTDIR,
        (fd, i32, i32, i32, i32, i32, i32)
    );
    fd_fn!(
        linker,
        module,
        "path_open",
        NOTDIR,
        (fd, i32, i32, i32, i32, i64, i64, i32, i32)
    );
    fd_fn!(
        linker,
        module,
        "path_readlink",
        NOTDIR,
        (fd, i32, i32, i32, i32, i32)
    );
    fd_fn!(linker, module, "path_remove_directory", NOTDIR, (fd, i32, i32));
    fd_fn!(
        linker,
        module,
        "path_rename",
        NOTDIR,
        (fd, i32, i32, i32, i32, i32)
    );
    linker.func_wrap(
        module,
        "path_symlink",
        |_: i32, _: i32, fd: i32, _: i32, _: i32| -> i32 { fd_errno(fd, NOTDIR) },
    )?;
    fd_fn!(linker, module, "path_unlink_file", NOTDIR, (fd, i32, i32));
    host_fn!(linker, module, "poll_oneoff", allocator_safe, poll_oneoff, (subs: i32, events: i32, n: i32, ret: i32));
    fd_fn!(linker, module, "proc_raise", NOTSUP, (any, i32));
    fd_fn!(linker, module, "sched_yield", SUCCESS, (any));
    host_fn!(linker, module, "random_get", allocator_safe, random_get, (buf: i32, len: i32));
    fd_fn!(linker, module, "sock_accept", NOTSUP, (fd, i32, i32));
    fd_fn!(linker, module, "sock_recv", NOTSUP, (fd, i32, i32, i32, i32, i32));
    fd_fn!(linker, module, "sock_send", NOTSUP, (fd, i32, i32, i32, i32));
    fd_fn!(linker, module, "sock_shutdown", NOTSUP, (fd, i32));
    linker.func_wrap(module, "proc_exit", |code: i32| -> wasmtime::Result<()> {
        Err(wasmtime::Error::new(ProcExit(code)))
    })?;
    Ok(())
}

fn two_zeros(caller: Call, first: i32, second: i32) -> Result {
    store_u32(caller, first, 0)?;
    store_u32(caller, second, 0)
}

fn clock_res_get(caller: Call, id: i32, ret: i32) -> Result {
    match id {
        0 | 1 => store_u64(caller, ret, 1),
        _ => Err(Errno::Notsup.into()),
    }
}

fn clock_time_get(caller: Call, id: i32, _precision: i64, ret: i32) -> Result {
    let now = match id {
        0 => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos() as u64),
        1 => caller.data().services.clock_origin.elapsed().as_nanos() as u64,
        _ => return Err(Errno::Notsup.into()),
    };
    store_u64(caller, ret, now)
}

fn fd_fdstat_get(caller: Call, fd: i32, ret: i32) -> Result {
    on_fd(fd, Ok(()))?;
    let rights = if fd == STDIN {
        RIGHT_FD_READ
    } else {
        RIGHT_FD_WRITE
    };
    let mem = memory(caller)?;
    let stat = slice_mut(mem.data_mut(caller), ret as u32, 24)?;
    stat.fill(0);
    stat[0] = FILETYPE_CHARACTER_DEVICE;
    stat[8..16].copy_from_slice(&rights.to_le_bytes());
    Ok(())
}

fn fd_filestat_get(caller: Call, fd: i32, ret: i32) -> Result {
    on_fd(fd, Ok(()))?;
    let mem = memory(caller)?;
    let stat = slice_mut(mem.data_mut(caller), ret as u32, 64)?;
    stat.fill(0);
    stat[16] = FILETYPE_CHARACTER_DEVICE;
    Ok(())
}

/// stdin is always at its end.
fn fd_read(caller: Call, fd: i32, _iovs: i32, _count: i32, ret: i32) -> Result {
    on_fd(fd, if fd == STDIN { Ok(()) } else { Err(Errno::Badf) })?;
    store_u32(caller, ret, 0)
}

/// stdout goes to the error log at `info`, stderr at `error`, one entry
/// per write without its trailing newline.
fn fd_write(caller: Call, fd: i32, iovs: i32, count: i32, ret: i32) -> Result {
    let level = match fd {
        STDOUT => LogLevel::Info,
        STDERR => LogLevel::Error,
        _ => return Err(Errno::Badf.into()),
    };
    let mem = memory(caller)?;
    let data = mem.data(&*caller);
    let mut text = Vec::new();
    for i in 0..count as u32 {
        let iov = (iovs as u32).checked_add(i * 8).ok_or(Errno::Fault)?;
        let ptr = read_u32(data, iov)?;
        let len = read_u32(data, iov + 4)?;
        text.extend_from_slice(slice(data, ptr, len)?);
    }
    let written = text.len() as u32;
    caller.data_mut().write_output(level, &text);
    store_u32(caller, ret, written)
}

fn fd_pwrite(caller: Call, fd: i32, iovs: i32, count: i32, _offset: i64, ret: i32) -> Result {
    fd_write(caller, fd, iovs, count, ret)
}

/// Never sleeps: clock subscriptions fire at once, descriptor ones fail.
fn poll_oneoff(caller: Call, subscriptions: i32, events: i32, count: i32, ret: i32) -> Result {
    if count <= 0 {
        return Err(Errno::Inval.into());
    }
    let mem = memory(caller)?;
    let data = mem.data_mut(&mut *caller);
    for i in 0..count as u32 {
        let sub = (subscriptions as u32).checked_add(i * 48).ok_or(Errno::Fault)?;
        let event = (events as u32).checked_add(i * 32).ok_or(Errno::Fault)?;
        let userdata = slice(data, sub, 8)?.to_vec();
        let tag = slice(data, sub + 8, 1)?[0];
        let out = slice_mut(data, event, 32)?;
        out.fill(0);
        out[..8].copy_from_slice(&userdata);
        let errno = if tag == 0 { 0 } else { Errno::Notsup as u16 };
        out[8..10].copy_from_slice(&errno.to_le_bytes());
        out[10] = tag;
    }
    write_u32(data, ret as u32, count as u32)?;
    Ok(())
}

fn random_get(caller: Call, buf: i32, len: i32) -> Result {
    if len as u32 > RANDOM_GET_MAX {
        return Err(Errno::Inval.into());
    }
    let mem = memory(caller)?;
    let out = slice_mut(mem.data_mut(caller), buf as u32, len as u32)?;
    getrandom::fill(out).map_err(|_| wasmtime::format_err!("no system randomness"))?;
    Ok(())
}
