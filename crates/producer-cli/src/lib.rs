//! The `chief-producer` binary as a library: read JSON lines (checked against chief's
//! record contract) or generate orders and job results, send them with the KPL-style
//! producer of `chief-producer` (the library, which depends on none of this crate's
//! pipeline model, generator or command line), and report every record's outcome.

pub mod app;
