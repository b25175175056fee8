pub mod chat;
pub mod health;
pub mod inspect;
pub mod models;
pub mod spend;
pub mod unimplemented;
