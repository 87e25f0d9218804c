//! The use cases, called alike by the pages, the JSON API and the signaling hub.
//!
//! **Invariant:** no HTTP, no templates; each use case checks the rules through `hnth_rules`
//! and writes through the store in one transaction.

pub mod accounts;
pub mod bookings;
pub mod costs;
pub mod invitation;
pub mod mail;
pub mod meetings;
pub mod registry;
