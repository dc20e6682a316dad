// nothing to build: see Cargo.toml
