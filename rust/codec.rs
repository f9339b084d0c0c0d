//! Chunked, multi-threaded lz4 compression of large buffers (lz4_flex).
