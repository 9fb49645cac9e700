//! Bella Vista: a voice agent that takes restaurant orders, built on a small agents
//! framework in the spirit of LiveKit Agents.
//!
//! Layers, with data flowing one way: [`openai_http`] (endpoints, errors and retries for
//! OpenAI-compatible servers) <- [`llm`] (chat context, tools on the wire, model adapters)
//! and [`voice`] (VAD, STT, TTS, the call pipeline); [`llm`] <- [`agent`] (agents, tasks,
//! task groups, the session engine) <- [`bella_vista`] (the menu, the order flow, the
//! order store) and [`io`] (where text and audio come from and go to).

pub mod agent;
pub mod app;
pub mod bella_vista;
pub mod config;
pub mod eval;
pub mod io;
pub mod llm;
pub mod openai_http;
pub mod telemetry;
pub mod voice;
