//! admin (being written)
