//! The end-to-end tests, one binary (one link, one executable) for all of them.

mod chaos;
mod enrich;
mod hostile;
mod operable;
mod print_config;
