//! Page-level hints for large buffers that joblite allocates and fills at once.
//!
//! With transparent huge pages in "madvise" mode (the common Linux default), a fresh 256 MiB
//! buffer is faulted in 4 KiB at a time: 65,536 page faults, which cost more than copying the
//! data on a virtual machine (measured here: 0.21 s to first-touch 256 MiB of `bytearray`,
//! 0.04 s for a numpy array, which numpy advises). [`advise_huge_pages`] gives the buffers we
//! allocate ourselves the same treatment.

/// Buffers smaller than this are left alone (a huge page is 2 MiB).
pub const HUGE_PAGE_MIN: usize = 4 << 20;

/// Asks the kernel to back the whole pages of `[ptr, ptr + len)` with transparent huge pages.
/// Only a hint: errors (THP disabled, other systems) are ignored and contents never change.
pub fn advise_huge_pages(ptr: *mut u8, len: usize) {
    if len < HUGE_PAGE_MIN {
        return;
    }
    advise(ptr, len);
}

#[cfg(target_os = "linux")]
fn advise(ptr: *mut u8, len: usize) {
    const PAGE: usize = 4096;
    let begin = ptr as usize;
    let start = begin.next_multiple_of(PAGE);
    let end = (begin + len) / PAGE * PAGE;
    if end <= start {
        return;
    }
    // SAFETY: madvise(MADV_HUGEPAGE) only changes how the kernel backs the pages of
    // [start, end): it never changes their contents, unmaps them or makes any address invalid,
    // so it cannot break what Rust (or the allocator) assumes about that memory. The range is
    // page-aligned as madvise requires and lies within the caller's buffer. A failure (THP
    // unavailable) is returned as -1 and ignored: the hint is optional.
    unsafe {
        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise(_ptr: *mut u8, _len: usize) {}

/// A vector with room for `capacity` bytes whose pages are advised as huge.
pub fn huge_vec(capacity: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(capacity);
    advise_huge_pages(v.as_mut_ptr(), v.capacity());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advised_buffers_keep_their_contents() {
        let mut v = huge_vec(16 << 20);
        v.extend((0..(16u32 << 20)).map(|i| (i % 251) as u8));
        advise_huge_pages(v.as_mut_ptr(), v.len());
        assert!(v.iter().enumerate().all(|(i, &b)| b == (i % 251) as u8));
        // tiny and unaligned ranges are accepted (and ignored)
        advise_huge_pages(v[3..].as_mut_ptr(), 5);
        advise_huge_pages(std::ptr::null_mut(), 0);
    }
}
