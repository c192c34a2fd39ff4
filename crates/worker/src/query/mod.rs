//! The public query API: hybrid retrieval (`/api/search`), grounded chat with
//! sources (`/api/chat`, JSON or Server-Sent Events) and the public catalog
//! (`/api/companies`, `/api/documents`). Reads only active generations.

pub mod catalog;
pub mod chat;
pub mod cors;
pub mod rollout;
pub mod search;
