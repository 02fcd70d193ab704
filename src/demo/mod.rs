//! demo (being written)
