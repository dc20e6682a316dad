//! Instances made for one request, put back to the state their start left
//! instead of being dropped: the next request gets an instance as fresh as
//! a new one (its memory and globals as `_initialize`, `on_vm_start` and
//! `on_configure` left them) without wasmtime's instantiation and without
//! running the guest's start again.
//!
//! Three pieces: the module is prepared when it is compiled (see
//! `prepare`: its mutable globals exported under reserved names, so that
//! the host can read and restore them, and a marker export; modules whose
//! code changes tables or drops segments are never reused); an image of a
//! started instance's memory; and the kernel's record of which pages the
//! guest wrote since (`PAGEMAP_SCAN`, Linux 6.7 and later), so that a
//! reset copies back only those pages.

use std::fs::File;
use std::mem::MaybeUninit;
use std::os::fd::AsRawFd;

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
