//! Content hashing: blake3 (multi-threaded for large buffers), md5 and sha1 behind one
//! streaming interface, plus the type-tagged object-walk encoding used by `joblite.hash`.
