//! ferrocket's binaries: `mqnamesrv`, `mqbroker` and tools, thin wrappers over the engine.
