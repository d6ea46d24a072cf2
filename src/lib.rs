//! The library half of the `gatehouse` package: the configuration loader (`config`), so that code outside the
//! binary — the fuzz targets in `fuzz/` — parses configuration text with the very loader `gatehouse serve`
//! uses. The binary (`main.rs`) imports it from here; everything else of the binary stays in the binary.

pub mod config;
