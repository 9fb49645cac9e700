//! LiveKit: the agent worker that takes jobs from livekit-server, and the room transport
//! that joins a room as the agent.

pub mod agent_call;
pub mod room;
pub mod worker;
