//! A thread pool whose workers run jobs handed over from Python.
