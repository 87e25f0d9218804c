//! The live meeting: the signaling hub (presence, meetings, dialing) and the media driver
//! around the sans-IO `hnth_media::Conference`.
//!
//! **Invariant:** no SQL here; what is kept goes through the store (`crate::store`).

pub mod delay;
pub mod driver;
pub mod meeting;
pub mod signaling;
pub mod sim;
pub mod udp_batch;
