#![allow(dead_code)]
//! Shared test harness: each test binary uses the parts it needs.

pub mod bella;
pub mod livekit;
pub mod openai_server;
pub mod orders;
pub mod sip;
pub mod speech;
pub mod voice;
pub mod worker;
