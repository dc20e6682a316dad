//! Instances made for one request, put back to the state their start left
//! instead of being dropped: the next request gets an instance as fresh as
//! a new one (its memory and globals as `_initialize`, `on_vm_start` and
//! `on_configure` left them) without wasmtime's instantiation and without
//! running the guest's start again.
//!
//! Three pieces: the module is prepared when it is compiled (its mutable
//! globals exported under reserved names, so that the host can read and
//! restore them, and a marker export; modules whose code changes tables or
//! drops segments are left as they are and never reused); an image of a
//! started instance's memory; and the kernel's record of which pages the
//! guest wrote since (`PAGEMAP_SCAN`, Linux 6.7 and later), so that a
//! reset copies back only those pages.

use std::fs::File;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;

use wasmparser::{ExternalKind, Operator, Parser, Payload, TypeRef};

/// Export names that start with this are the host's: a module that uses
/// one is refused.
pub const RESERVED_PREFIX: &str = "ngx_proxy_wasm:";

/// The export that marks a module prepared for reset: its memory, once
/// more. The compiled code carries it, so a module read from the code
/// cache needs no preparation.
pub const RESET_MARKER: &str = "ngx_proxy_wasm:reset";

/// The export name of a mutable global the host restores; the index
/// follows.
pub const GLOBAL_EXPORT_PREFIX: &str = "ngx_proxy_wasm:global:";

/// What `prepare` does, for the code cache's key: code prepared another
/// way is not found.
pub const PREPARATION: &str = "reset exports 1";

/// The module to compile: when its instances can be reset, with its
/// mutable globals exported and the RESET_MARKER export (None: compile it
/// as it is). Text is turned into binary first. An error: the module uses
/// a reserved export name. A module it cannot read is left to the
/// compiler to reject.
pub fn prepare(bytes: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let Ok(binary) = wat::parse_bytes(bytes) else {
        return Ok(None);
    };
    let Some(plan) = read_plan(&binary) else {
        return Ok(None);
    };
    if let Some(name) = plan
        .export_names
        .iter()
        .find(|name| name.starts_with(RESERVED_PREFIX))
    {
        return Err(format!("export \"{name}\" has a name reserved for the host"));
    }
    Ok((plan.resettable && plan.memories == 1).then(|| plan.rewrite(&binary)))
}

/// Where a resettable module's export section is, and what to add to it.
struct Plan {
    /// The export section: where its header starts, and its content.
    exports: Option<(usize, std::ops::Range<usize>)>,
    /// Where a new export section goes when the module has none: after the
    /// sections that precede it.
    exports_at: usize,
    mutable_globals: Vec<u32>,
    export_names: Vec<String>,
    memories: usize,
    /// Nothing outside memory and globals changes: see `read_plan`.
    resettable: bool,
}

/// None if the module cannot be read. Its instances cannot be put back to
/// a snapshot (`resettable` false) if it imports a mutable global, a
/// memory or a table, has a shared memory, or its code changes tables or
/// drops segments (state outside memory and globals).
fn read_plan(bytes: &[u8]) -> Option<Plan> {
    let mut plan = Plan {
        exports: None,
        exports_at: 0,
        mutable_globals: Vec::new(),
        export_names: Vec::new(),
        memories: 0,
        resettable: true,
    };
    let mut imported_globals = 0u32;
    let mut section_start = 0;
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.ok()?;
        match &payload {
            Payload::Version { range, .. } => section_start = range.end as usize,
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports() {
                    match import.ok()?.ty {
                        TypeRef::Global(global) => {
                            plan.resettable &= !global.mutable;
                            imported_globals += 1;
                        }
                        TypeRef::Memory(_) | TypeRef::Table(_) => plan.resettable = false,
                        _ => {}
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader.clone() {
                    plan.resettable &= !memory.ok()?.shared;
                    plan.memories += 1;
                }
            }
            Payload::GlobalSection(reader) => {
                for (i, global) in reader.clone().into_iter().enumerate() {
                    if global.ok()?.ty.mutable {
                        plan.mutable_globals.push(imported_globals + i as u32);
                    }
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader.clone() {
                    plan.export_names.push(export.ok()?.name.to_string());
                }
                let content = reader.range();
                plan.exports = Some((section_start, content.start as usize..content.end as usize));
            }
            Payload::CodeSectionEntry(body) => {
                let mut operators = body.get_operators_reader().ok()?;
                while plan.resettable && !operators.eof() {
                    plan.resettable = !changes_tables_or_segments(&operators.read().ok()?);
                }
            }
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            // sections before the export section: types, imports,
            // functions, tables, memories, tags (13) and globals
            if plan.exports.is_none() && matches!(id, 1..=6 | 13) {
                plan.exports_at = range.end as usize;
            }
            section_start = range.end as usize;
        }
    }
    Some(plan)
}

fn changes_tables_or_segments(operator: &Operator) -> bool {
    matches!(
        operator,
        Operator::TableSet { .. }
            | Operator::TableGrow { .. }
            | Operator::TableFill { .. }
            | Operator::TableCopy { .. }
            | Operator::TableInit { .. }
            | Operator::ElemDrop { .. }
            | Operator::DataDrop { .. }
    )
}

impl Plan {
    /// The module with an export section that also names its mutable
    /// globals and RESET_MARKER.
    fn rewrite(&self, bytes: &[u8]) -> Vec<u8> {
        let (start, end, count, entries) = match &self.exports {
            Some((start, content)) => {
                let section = &bytes[content.clone()];
                let (count, skip) = read_leb(section);
                (*start, content.end, count, &section[skip..])
            }
            None => (self.exports_at, self.exports_at, 0, &[][..]),
        };
        let added = self.mutable_globals.len() as u32 + 1;
        let mut content = Vec::with_capacity(entries.len() + added as usize * 32);
        write_leb(&mut content, count + added);
        content.extend_from_slice(entries);
        let mut export = |name: &str, kind: ExternalKind, index: u32| {
            write_leb(&mut content, name.len() as u32);
            content.extend_from_slice(name.as_bytes());
            content.push(kind as u8);
            write_leb(&mut content, index);
        };
        for &index in &self.mutable_globals {
            export(
                &format!("{GLOBAL_EXPORT_PREFIX}{index}"),
                ExternalKind::Global,
                index,
            );
        }
        export(RESET_MARKER, ExternalKind::Memory, 0);
        let mut out = Vec::with_capacity(bytes.len() + content.len() + 8);
        out.extend_from_slice(&bytes[..start]);
        out.push(7); // the export section's id
        write_leb(&mut out, content.len() as u32);
        out.extend_from_slice(&content);
        out.extend_from_slice(&bytes[end..]);
        out
    }
}

/// An unsigned LEB128 number at the start of `bytes`, and its length
/// (the parser already checked it).
fn read_leb(bytes: &[u8]) -> (u32, usize) {
    let mut value = 0u32;
    for (i, byte) in bytes.iter().enumerate().take(5) {
        value |= u32::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return (value, i + 1);
        }
    }
    (value, bytes.len().min(5))
}

fn write_leb(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// The contents of a started instance's memory, page by page (pages of
/// zeros are not kept).
pub struct MemoryImage {
    size: usize,
    page: usize,
    /// Each page's offset in `data`, or ZERO_PAGE.
    pages: Vec<u32>,
    data: Vec<u8>,
}

const ZERO_PAGE: u32 = u32::MAX;

impl MemoryImage {
    /// Copies the pages that are not zeros. Reading maps every page; the
    /// pages the guest never wrote are unmapped again (their contents stay
    /// the module's data or zeros), so that each reset's scan walks only
    /// the pages a request touched.
    pub fn take(memory: &mut [u8], pagemap: &PageMap) -> MemoryImage {
        let page = pagemap.page;
        let image = MemoryImage::copy(memory, page);
        let base = memory.as_mut_ptr();
        let mut unmapped_from = 0;
        let release = |from: usize, to: usize| {
            if to > from {
                // SAFETY: a range of whole pages inside the memory, none of
                // them written: dropping them keeps their contents (a
                // copy-on-write mapping reads its file again, an anonymous
                // one reads zeros, which these pages hold).
                unsafe { libc::madvise(base.add(from).cast(), to - from, libc::MADV_DONTNEED) };
            }
        };
        let mut written = |offset: usize, len: usize| {
            release(unmapped_from, offset);
            unmapped_from = offset + len;
        };
        if pagemap.written(base, memory.len(), &mut written) {
            release(unmapped_from, memory.len());
        }
        image
    }

    fn copy(memory: &[u8], page: usize) -> MemoryImage {
        let mut data = Vec::new();
        let zeros = vec![0; page];
        let pages = memory
            .chunks(page)
            .map(|chunk| {
                // a slice comparison: memcmp, many bytes at a time
                if chunk == &zeros[..chunk.len()] {
                    return ZERO_PAGE;
                }
                let at = data.len() as u32;
                data.extend_from_slice(chunk);
                at
            })
            .collect();
        data.shrink_to_fit();
        MemoryImage {
            size: memory.len(),
            page,
            pages,
            data,
        }
    }

    /// Bytes it keeps.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.data.len() + self.pages.len() * 4
    }

    /// Puts back every page the guest wrote since the memory was mapped
    /// (and since the last reset): false if the memory grew or the kernel
    /// could not say which pages were written.
    pub fn restore(&self, memory: &mut [u8], pagemap: &PageMap) -> bool {
        if memory.len() != self.size {
            return false;
        }
        let page = self.page;
        let base = memory.as_ptr();
        let mut restore = |offset: usize, len: usize| {
            for index in offset / page..(offset + len).div_ceil(page) {
                let target = &mut memory[index * page..][..page];
                match self.pages[index] {
                    ZERO_PAGE => target.fill(0),
                    at => target.copy_from_slice(&self.data[at as usize..][..page]),
                }
            }
        };
        pagemap.written(base, self.size, &mut restore)
    }

    /// Whether `memory` holds this image (tests).
    pub fn matches(&self, memory: &[u8]) -> bool {
        memory.len() == self.size
            && memory
                .chunks(self.page)
                .zip(&self.pages)
                .all(|(chunk, &at)| match at {
                    ZERO_PAGE => chunk.iter().all(|&b| b == 0),
                    at => chunk == &self.data[at as usize..][..self.page],
                })
    }
}

/// The process's `/proc/self/pagemap`, where the kernel says which pages of
/// a range were written (`PAGEMAP_SCAN`). Opened in each worker.
pub struct PageMap {
    file: File,
    page: usize,
}

/// `struct pm_scan_arg` of `linux/fs.h`.
#[repr(C)]
struct ScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `struct page_region` of `linux/fs.h`.
#[repr(C)]
#[derive(Clone, Copy)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// `_IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: libc::c_ulong =
    (3 << 30) | ((std::mem::size_of::<ScanArg>() as libc::c_ulong) << 16) | (0x66 << 8) | 16;

const PAGE_IS_WRITTEN: u64 = 1 << 1;
const PAGE_IS_FILE: u64 = 1 << 2;
const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_SWAPPED: u64 = 1 << 4;
const PAGE_IS_PFNZERO: u64 = 1 << 5;

const REGIONS: usize = 32;

impl PageMap {
    /// None where the kernel has no `PAGEMAP_SCAN`.
    pub fn open() -> Option<PageMap> {
        let file = File::open("/proc/self/pagemap").ok()?;
        // SAFETY: sysconf has no memory-safety preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
        let pagemap = PageMap { file, page };
        let mut none = |_, _| {};
        pagemap.written(std::ptr::null(), 0, &mut none).then_some(pagemap)
    }

    /// Calls `each(offset, len)` for the runs of pages of `[base, base +
    /// len)` the process wrote to: private pages, present or swapped (not
    /// the shared zero page, not a file's page that a copy-on-write
    /// mapping still shares). False if the scan failed.
    fn written(&self, base: *const u8, len: usize, each: &mut dyn FnMut(usize, usize)) -> bool {
        let end = base as u64 + len as u64;
        let mut start = base as u64;
        let mut regions = [MaybeUninit::<PageRegion>::uninit(); REGIONS];
        loop {
            let mut arg = ScanArg {
                size: std::mem::size_of::<ScanArg>() as u64,
                flags: 0,
                start,
                end,
                walk_end: 0,
                vec: regions.as_mut_ptr() as u64,
                vec_len: REGIONS as u64,
                max_pages: 0,
                category_inverted: PAGE_IS_PFNZERO | PAGE_IS_FILE,
                category_mask: PAGE_IS_WRITTEN | PAGE_IS_PFNZERO | PAGE_IS_FILE,
                category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                return_mask: 0,
            };
            // SAFETY: PAGEMAP_SCAN reads `arg` and writes at most `vec_len`
            // regions to `vec`, which points to `regions`; it only reads the
            // page tables of the range, never the memory.
            let found = unsafe { libc::ioctl(self.file.as_raw_fd(), PAGEMAP_SCAN as _, &mut arg) };
            if found < 0 {
                return false;
            }
            for region in &regions[..found as usize] {
                // SAFETY: the kernel wrote the first `found` regions.
                let region = unsafe { region.assume_init() };
                each(
                    (region.start - base as u64) as usize,
                    (region.end - region.start) as usize,
                );
            }
            if arg.walk_end >= end || (found as usize) < REGIONS {
                return true;
            }
            start = arg.walk_end;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exports(bytes: &[u8]) -> Vec<String> {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, bytes).unwrap();
        module.exports().map(|e| e.name().to_string()).collect()
    }

    #[test]
    fn mutable_globals_are_exported_and_the_module_still_compiles() {
        let wat = r#"(module
            (import "env" "g" (global i32))
            (global $sp (mut i32) (i32.const 1024))
            (global i32 (i32.const 7))
            (global $other (mut i64) (i64.const 0))
            (memory (export "memory") 1)
            (func (export "f") (global.set $sp (i32.const 5))))"#;
        let rewritten = prepare(wat.as_bytes()).unwrap().expect("resettable");
        assert_eq!(
            exports(&rewritten),
            [
                "memory",
                "f",
                "ngx_proxy_wasm:global:1",
                "ngx_proxy_wasm:global:3",
                "ngx_proxy_wasm:reset"
            ]
        );
    }

    #[test]
    fn a_module_without_exports_gets_an_export_section_in_its_place() {
        let wat = r#"(module (global (mut i32) (i32.const 0)) (memory 1) (func) (start 0) (data (i32.const 0) "x"))"#;
        let rewritten = prepare(&wat::parse_str(wat).unwrap())
            .unwrap()
            .expect("rewritten");
        assert_eq!(
            exports(&rewritten),
            ["ngx_proxy_wasm:global:0", "ngx_proxy_wasm:reset"]
        );
    }

    #[test]
    fn modules_with_state_outside_memory_and_globals_are_not_reset() {
        for wat in [
            r#"(module (memory 1) (table 1 funcref) (func (table.set 0 (i32.const 0) (ref.null func))))"#,
            r#"(module (memory 1) (table 1 funcref) (func (drop (table.grow 0 (ref.null func) (i32.const 1)))))"#,
            r#"(module (memory 1) (data "x") (func (data.drop 0)))"#,
            r#"(module (import "env" "g" (global (mut i32))) (memory 1))"#,
            r#"(module (import "env" "m" (memory 1)))"#,
            r#"(module (memory 1) (memory 1))"#,
            r#"(module (global (mut i32) (i32.const 0)))"#,
        ] {
            assert_eq!(prepare(wat.as_bytes()), Ok(None), "{wat}");
        }
        // unreadable: left to the compiler
        assert_eq!(prepare(b"\0asm\x01\0\0\0\x07\xff"), Ok(None));
    }

    #[test]
    fn reserved_export_names_are_refused() {
        let wat = r#"(module (memory 1) (global (export "ngx_proxy_wasm:reset") (mut i32) (i32.const 0)))"#;
        assert_eq!(
            prepare(wat.as_bytes()),
            Err("export \"ngx_proxy_wasm:reset\" has a name reserved for the host".into())
        );
    }

    #[test]
    fn a_restored_memory_is_its_image_again() {
        let Some(pagemap) = PageMap::open() else {
            eprintln!("no PAGEMAP_SCAN here: skipped");
            return;
        };
        let page = pagemap.page;
        let len = 64 * page;
        // SAFETY: a fresh private anonymous mapping, unmapped below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        // SAFETY: the mapping is `len` bytes, readable and writable.
        let memory = unsafe { std::slice::from_raw_parts_mut(base as *mut u8, len) };
        memory[3 * page..5 * page].fill(7);
        memory[40 * page + 9] = 1;
        memory[20 * page + 1] = 0;
        let image = MemoryImage::take(memory, &pagemap);
        assert_eq!(image.kept(), 3 * page + 64 * 4);
        // the pages read, not written, are no longer mapped: restores skip them
        let mut seen = Vec::new();
        assert!(pagemap.written(memory.as_ptr(), len, &mut |offset, len| seen
            .push((offset / page, len / page))));
        assert_eq!(seen, [(3, 2), (20, 1), (40, 1)]);
        memory[3 * page] = 0;
        memory[10 * page..12 * page].fill(9);
        memory[40 * page + 9] = 2;
        memory[63 * page + 1] = 3;
        assert!(!image.matches(memory));
        assert!(image.restore(memory, &pagemap));
        assert!(image.matches(memory));
        assert!(!image.restore(&mut memory[..len - page], &pagemap));
        // SAFETY: mapped above, no reference to it is left.
        unsafe { libc::munmap(base, len) };
    }
}
