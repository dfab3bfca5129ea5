//! Codec tests: data-driven NAR fixtures round-trip byte-identical with every method.
