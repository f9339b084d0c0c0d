//! The joblite container file format: segments, chunk tables, checksums, mmap reading.
