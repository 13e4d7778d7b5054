//! tim-gateway: a drop-in sidecar for Tencent Cloud IM `v4/profile/portrait_get`.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod config;
pub mod error;
pub mod usersig;
pub mod wire;
