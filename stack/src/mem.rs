//! Memory for large tables: huge pages, zero pages left untouched, and a cache prefetch hint.
//!
//! The flow table of an engine holding a million connections spans tens of MiB, and each new 4-tuple lands on a
//! random cache line of it. With 4 KiB pages each such access also misses the TLB, and the page walk itself
//! misses cache (how much of the 1M-held cost that was is not measured apart: this VM has no hardware counters).
//! 2 MiB pages put the whole table in a few dozen TLB entries.
//!
//! [`HugePageAlloc`] maps allocations of at least [`HUGE_PAGE`] bytes directly (`mmap`), aligned to a huge page and
//! marked `madvise(MADV_HUGEPAGE)`: transparent huge pages back them when the system's THP setting is `always` or
//! `madvise` (the usual default). It is a hint; without huge pages the memory is ordinary pages and nothing else
//! changes. The mapping is zero-filled by the kernel page by page on first touch, so a zeroed table costs no
//! memory until used ([`zeroed_table`]). Smaller allocations, and other systems, go to the global allocator.
//!
//! This is the one module of the crate with `unsafe` code: implementing [`Allocator`] is an unsafe contract,
//! `mmap`/`madvise` are system calls, and `_mm_prefetch` is a CPU intrinsic.
#![allow(unsafe_code)]

use core::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator, Global, Layout};
use allocator_api2::boxed::Box;

/// The huge page size of x86-64 (and of arm64 with 4 KiB base pages); allocations this large or larger are mapped
/// on their own and advised.
pub const HUGE_PAGE: usize = 2 << 20;

/// An [`Allocator`] for large, long-lived tables; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct HugePageAlloc;

/// Types for which all-zero bytes are a valid value, so a table of them can come from fresh zero pages.
///
/// # Safety
/// An all-zero bit pattern must be a valid value of the type (plain integers, arrays and `repr(C)` structs of
/// them; no references, no `NonZero`, no enums without a zero discriminant).
pub unsafe trait Zeroable: Copy {}

// SAFETY: integers are valid for every bit pattern.
unsafe impl Zeroable for u64 {}

/// A table of `len` zero values, on huge pages when it is large enough. Large tables are fresh anonymous
/// mappings: no page is touched (nor counted as resident) until the table is used there.
pub fn zeroed_table<T: Zeroable>(len: usize) -> Box<[T], HugePageAlloc> {
    let table = Box::<[T], HugePageAlloc>::new_zeroed_slice_in(len, HugePageAlloc);
    // SAFETY: the memory is zeroed (`allocate_zeroed`), and all-zero is a valid `T` (`Zeroable`'s contract).
    unsafe { table.assume_init() }
}

/// Backs the memory of `len` elements of `T` from `ptr` with writable pages now, contents unchanged
/// (`MADV_POPULATE_WRITE`, Linux 5.14): a table's first use then takes no page faults. With huge pages a first
/// touch zeroes 2 MiB, so the first moments of a new engine under load otherwise stall for milliseconds, enough
/// to overflow a receive ring. Best effort: `false` where the kernel cannot (nothing changes then). The memory
/// must stay allocated for the call; only whole pages inside the range are populated.
fn populate_raw<T>(ptr: *const T, len: usize) -> bool {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        const MADV_POPULATE_WRITE: libc::c_int = 23;
        let Some(bytes) = len.checked_mul(core::mem::size_of::<T>()) else {
            return false;
        };
        let start = (ptr as usize).next_multiple_of(PAGE);
        let end = (ptr as usize).saturating_add(bytes) / PAGE * PAGE;
        if end <= start {
            return true;
        }
        // SAFETY: [start, end) lies inside an allocation the caller holds; MADV_POPULATE_WRITE faults pages in as
        // if written, without changing any byte.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, MADV_POPULATE_WRITE) == 0 }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (ptr, len);
        false
    }
}

/// [`populate_raw`] for a slice.
pub fn populate<T>(slice: &[T]) -> bool {
    populate_raw(slice.as_ptr(), slice.len())
}

/// [`populate_raw`] for a vector's whole capacity, used and spare.
pub fn populate_capacity<T>(vec: &Vec<T>) -> bool {
    populate_raw(vec.as_ptr(), vec.capacity())
}

/// Asks the CPU to bring the cache line holding `value` into cache, without waiting for it: a lookup that will
/// follow soon then finds it there. Only a hint; it never faults and changes nothing.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of the x86-64 baseline, and a prefetch of any address is architecturally a no-op
    // apart from the cache (here the address is even a valid reference).
    unsafe {
        use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>((value as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

// SAFETY: blocks below HUGE_PAGE come from `Global` and go back to it with the same layout. Larger blocks are
// private anonymous mappings of `mapped_len(layout)` bytes at a huge-page boundary (so aligned for any layout
// whose alignment is at most a huge page; larger alignments are refused), unmapped with the same length;
// `grow`/`shrink` use the default implementations, which go through `allocate` and `deallocate`.
unsafe impl Allocator for HugePageAlloc {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() < HUGE_PAGE {
            return Global.allocate(layout);
        }
        map_huge(layout)
    }

    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() < HUGE_PAGE {
            return Global.allocate_zeroed(layout);
        }
        // Anonymous mappings are zero-filled by the kernel: nothing to write (and no page to touch).
        map_huge(layout)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() < HUGE_PAGE {
            // SAFETY: allocated by `Global` with this layout (see `allocate`), per the caller's contract.
            unsafe { Global.deallocate(ptr, layout) }
        } else {
            unmap_huge(ptr, layout);
        }
    }
}

/// The length mapped for a large layout: whole huge pages.
fn mapped_len(layout: Layout) -> Option<usize> {
    layout.size().checked_next_multiple_of(HUGE_PAGE)
}

#[cfg(target_os = "linux")]
fn map_huge(layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
    if layout.align() > HUGE_PAGE {
        return Err(AllocError);
    }
    let len = mapped_len(layout).ok_or(AllocError)?;
    // Over-map by one huge page so that a huge-page boundary lies inside, then return the slack on both sides.
    let span = len.checked_add(HUGE_PAGE).ok_or(AllocError)?;
    let prot = libc::PROT_READ | libc::PROT_WRITE;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
    let raw = unsafe { libc::mmap(core::ptr::null_mut(), span, prot, flags, -1, 0) };
    if raw == libc::MAP_FAILED {
        return Err(AllocError);
    }
    let raw = raw as usize;
    let start = raw.next_multiple_of(HUGE_PAGE);
    let head = start - raw;
    let tail = span - head - len;
    // SAFETY: both ranges lie inside the mapping just made and outside [start, start + len), which is what we
    // keep; MADV_HUGEPAGE changes no contents. Failures leave slack mapped or pages small: harmless, ignored.
    unsafe {
        if head > 0 {
            libc::munmap(raw as *mut libc::c_void, head);
        }
        if tail > 0 {
            libc::munmap((start + len) as *mut libc::c_void, tail);
        }
        libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
    }
    let block = core::ptr::slice_from_raw_parts_mut(start as *mut u8, len);
    NonNull::new(block).ok_or(AllocError)
}

#[cfg(target_os = "linux")]
fn unmap_huge(ptr: NonNull<u8>, layout: Layout) {
    if let Some(len) = mapped_len(layout) {
        // SAFETY: `ptr` is the start of a mapping of `len` bytes made by `map_huge` for this layout.
        unsafe {
            libc::munmap(ptr.as_ptr().cast(), len);
        }
    }
}

/// Elsewhere: the global allocator, huge-page aligned, and zeroed by writing.
#[cfg(not(target_os = "linux"))]
fn map_huge(layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
    let layout = Layout::from_size_align(layout.size(), layout.align().max(HUGE_PAGE)).map_err(|_| AllocError)?;
    Global.allocate_zeroed(layout)
}

#[cfg(not(target_os = "linux"))]
fn unmap_huge(ptr: NonNull<u8>, layout: Layout) {
    if let Ok(layout) = Layout::from_size_align(layout.size(), layout.align().max(HUGE_PAGE)) {
        // SAFETY: allocated by `Global` with this layout in `map_huge`.
        unsafe { Global.deallocate(ptr, layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_allocation_is_huge_page_aligned_zeroed_and_usable() {
        let layout = Layout::from_size_align(3 * HUGE_PAGE + 100, 16).unwrap();
        let block = HugePageAlloc.allocate_zeroed(layout).unwrap();
        assert_eq!(block.as_ptr() as *mut u8 as usize % HUGE_PAGE, 0);
        assert!(block.len() >= layout.size());
        let bytes = block.as_ptr() as *mut u8;
        // SAFETY: the block is at least `layout.size()` bytes and ours until deallocated.
        unsafe {
            assert_eq!(*bytes.add(layout.size() - 1), 0);
            bytes.write_bytes(0xA5, layout.size());
            assert_eq!(*bytes.add(layout.size() - 1), 0xA5);
            HugePageAlloc.deallocate(NonNull::new(bytes).unwrap(), layout);
        }
    }

    #[test]
    fn small_allocation_comes_from_the_global_allocator() {
        let layout = Layout::from_size_align(4096, 64).unwrap();
        let block = HugePageAlloc.allocate(layout).unwrap();
        assert_eq!(block.as_ptr() as *mut u8 as usize % 64, 0);
        // SAFETY: allocated just above with this layout.
        unsafe { HugePageAlloc.deallocate(block.cast(), layout) }
    }

    /// Resident memory of this process, in bytes (Linux's /proc/self/statm).
    #[cfg(target_os = "linux")]
    fn resident() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn populate_faults_a_fresh_table_in_and_keeps_its_contents() {
        let len = (64 << 20) / 8;
        let mut table = zeroed_table::<u64>(len);
        table[len / 2] = 9;
        let before = resident();
        assert!(populate(&table), "MADV_POPULATE_WRITE is in Linux since 5.14");
        let grown = resident().saturating_sub(before);
        // Other threads of the test binary allocate too, so only a lower bound is asserted.
        assert!(grown >= 48 << 20, "populating 64 MiB made only {grown} bytes resident");
        assert_eq!(table[len / 2], 9);
        assert!(
            table
                .iter()
                .enumerate()
                .all(|(i, &v)| v == if i == len / 2 { 9 } else { 0 })
        );
        let mut spare: Vec<u64> = Vec::with_capacity(1 << 20);
        spare.push(1);
        assert!(populate_capacity(&spare));
        assert_eq!(spare, [1]);
    }

    #[test]
    fn zeroed_table_reads_zero_and_keeps_writes() {
        for len in [0usize, 10, (HUGE_PAGE / 8) * 3 + 5] {
            let mut table = zeroed_table::<u64>(len);
            assert_eq!(table.len(), len);
            assert!(table.iter().all(|&v| v == 0));
            if let Some(last) = table.last_mut() {
                *last = 7;
                prefetch(&*last);
                assert_eq!(table[len - 1], 7);
            }
        }
    }

    #[test]
    fn hash_table_in_huge_pages_works() {
        let mut table = hashbrown::HashTable::with_capacity_in(1 << 20, HugePageAlloc);
        for i in 0u64..1000 {
            table.insert_unique(i, i, |&v| v);
        }
        assert_eq!(table.find(999, |&v| v == 999), Some(&999));
        assert!(table.allocation_size() >= HUGE_PAGE);
    }
}

#[cfg(all(test, target_os = "linux"))]
mod linux_tests {
    use super::*;

    /// Bytes of anonymous huge pages mapped by this process (`/proc/self/smaps_rollup`).
    fn anon_huge_bytes() -> u64 {
        let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
        rollup
            .lines()
            .find_map(|line| line.strip_prefix("AnonHugePages:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }

    #[test]
    fn large_table_is_backed_by_huge_pages_when_thp_allows() {
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
        if !(thp.contains("[always]") || thp.contains("[madvise]")) {
            eprintln!("SKIPPED: transparent huge pages are off here ({thp:?}); nothing to check");
            return;
        }
        let before = anon_huge_bytes();
        let mut table = zeroed_table::<u64>(32 * HUGE_PAGE / 8);
        table.fill(1);
        let after = anon_huge_bytes();
        drop(table);
        // The kernel may lack free huge pages (fragmentation), and the other tests of this process may map a few
        // of their own meanwhile: ask for half of the 32.
        assert!(
            after >= before + 16 * HUGE_PAGE as u64,
            "huge pages before {before} B, after {after} B"
        );
    }
}
