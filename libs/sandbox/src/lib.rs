//! A faithful, stateful simulator of the MP, FMS and SFT upstream platforms.
