//! An allocator that asks the kernel to back large tables with huge pages.
//!
//! The flow table of an engine holding a million connections spans tens of MiB, and each new 4-tuple lands on a
//! random cache line of it. With 4 KiB pages each such access also misses the TLB, and the page walk itself
//! misses cache: at 1M held connections that was about half of the extra cost per life cycle. 2 MiB pages put
//! the whole table in a few dozen TLB entries.
//!
//! On Linux, allocations of at least [`HUGE_PAGE`] bytes are aligned to a huge page and marked with
//! `madvise(MADV_HUGEPAGE)`, which makes transparent huge pages back them when the system's THP setting is
//! `always` or `madvise` (the common default). It is a hint: if the kernel has no huge page to give, the memory
//! is ordinary pages and nothing else changes. Smaller allocations, and other systems, go to the global allocator
//! untouched.
//!
//! This is the one module of the crate with `unsafe` code: implementing [`Allocator`] is an unsafe contract, and
//! `madvise` is a system call.
#![allow(unsafe_code)]

use core::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator, Global, Layout};

/// The huge page size of x86-64 and of arm64 with 4 KiB base pages; allocations this large or larger get the hint.
pub const HUGE_PAGE: usize = 2 << 20;

/// An [`Allocator`] for large, long-lived tables: huge-page aligned and advised; see the module docs.
#[derive(Debug, Clone, Copy, Default)]
pub struct HugePageAlloc;

impl HugePageAlloc {
    /// The layout actually asked of the global allocator: large ones aligned to a huge page, so that the advice
    /// covers whole huge pages. Deterministic, so `deallocate` frees with the layout `allocate` used.
    fn backing_layout(layout: Layout) -> Result<Layout, AllocError> {
        if layout.size() < HUGE_PAGE {
            Ok(layout)
        } else {
            Layout::from_size_align(layout.size(), layout.align().max(HUGE_PAGE)).map_err(|_| AllocError)
        }
    }
}

// SAFETY: every block comes from `Global` and goes back to it with the layout it was allocated with
// (`backing_layout` is a pure function of the caller's layout, and at least as aligned as it asked); the default
// `grow`/`shrink` go through `allocate` and `deallocate`. `madvise` changes no contents and no mapping.
unsafe impl Allocator for HugePageAlloc {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let backing = Self::backing_layout(layout)?;
        let block = Global.allocate(backing)?;
        if backing.size() >= HUGE_PAGE {
            advise_huge_pages(block);
        }
        Ok(block)
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // `backing_layout` succeeded for this layout when it was allocated, so it does again.
        if let Ok(backing) = Self::backing_layout(layout) {
            // SAFETY: `ptr` was allocated by `Global` with `backing` (see `allocate`), per the caller's contract.
            unsafe { Global.deallocate(ptr, backing) }
        }
    }
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(block: NonNull<[u8]>) {
    let start = block.as_ptr() as *mut u8;
    // Only whole huge pages: the start is huge-page aligned (`backing_layout`); the tail is left as it is.
    let len = block.len() / HUGE_PAGE * HUGE_PAGE;
    // SAFETY: [start, start + len) lies inside the block just allocated, and MADV_HUGEPAGE neither changes its
    // contents nor unmaps it. A failure (THP disabled, old kernel) only means ordinary pages, so it is ignored.
    unsafe {
        libc::madvise(start.cast(), len, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_block: NonNull<[u8]>) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_allocation_is_huge_page_aligned_and_usable() {
        let layout = Layout::from_size_align(3 * HUGE_PAGE + 100, 16).unwrap();
        let block = HugePageAlloc.allocate(layout).unwrap();
        assert_eq!(block.as_ptr() as *mut u8 as usize % HUGE_PAGE, 0);
        assert!(block.len() >= layout.size());
        let bytes = block.as_ptr() as *mut u8;
        // SAFETY: the block is at least `layout.size()` bytes and ours until deallocated.
        unsafe {
            bytes.write_bytes(0xA5, layout.size());
            assert_eq!(*bytes.add(layout.size() - 1), 0xA5);
            HugePageAlloc.deallocate(NonNull::new(bytes).unwrap(), layout);
        }
    }

    #[test]
    fn small_allocation_keeps_its_layout() {
        let layout = Layout::from_size_align(4096, 64).unwrap();
        assert_eq!(HugePageAlloc::backing_layout(layout).unwrap(), layout);
        let block = HugePageAlloc.allocate(layout).unwrap();
        assert_eq!(block.as_ptr() as *mut u8 as usize % 64, 0);
        // SAFETY: allocated just above with this layout.
        unsafe { HugePageAlloc.deallocate(block.cast(), layout) }
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
    fn large_allocation_is_backed_by_huge_pages_when_thp_allows() {
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
        if !(thp.contains("[always]") || thp.contains("[madvise]")) {
            eprintln!("SKIPPED: transparent huge pages are off here ({thp:?}); nothing to check");
            return;
        }
        let before = anon_huge_bytes();
        let layout = Layout::from_size_align(16 * HUGE_PAGE, 64).unwrap();
        let block = HugePageAlloc.allocate(layout).unwrap();
        let bytes = block.as_ptr() as *mut u8;
        // SAFETY: the block is `layout.size()` bytes and ours until deallocated; touching faults the pages in.
        unsafe { bytes.write_bytes(1, layout.size()) };
        let after = anon_huge_bytes();
        // SAFETY: allocated just above with this layout.
        unsafe { HugePageAlloc.deallocate(NonNull::new(bytes).unwrap(), layout) };
        // The kernel may lack free huge pages (fragmentation), so ask for half of the 16 (the other tests of this process may add a few of their own).
        assert!(
            after >= before + 8 * HUGE_PAGE as u64,
            "huge pages before {before} B, after {after} B"
        );
    }
}
