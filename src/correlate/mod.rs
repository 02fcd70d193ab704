//! correlate (being written)
