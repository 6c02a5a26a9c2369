//! Tests of endorsement signing, verification and lines.
