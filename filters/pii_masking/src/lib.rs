//! pii_masking (under construction).
