//! Typed HTTP clients for the MP, FMS and SFT upstream eSIM platforms.
