pub mod chat;
pub mod health;
pub mod models;
pub mod unimplemented;
pub mod spend;
