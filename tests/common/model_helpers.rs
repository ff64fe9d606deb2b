//! Helpers shared by the `model_*` tests: ids from literals, the
//! validation error inside a result, and a strategy for any valid uid.

// Each test file uses a part of this.
#![allow(dead_code)]

use std::fmt::Debug;

use imcore::{Error, Uid, ValidationError};
use proptest::prelude::*;

pub fn uid(s: &str) -> Uid {
    Uid::new(s).unwrap()
}

/// The validation error inside `r`, failing the test on anything else.
pub fn validation<T: Debug>(r: imcore::Result<T>) -> ValidationError {
    match r {
        Err(Error::Validation(v)) => v,
        other => panic!("expected a validation error, got {other:?}"),
    }
}

/// Any valid uid: 1 to 16 characters (so at most 64 bytes), no control
/// characters and none of `@`, `#`, `&`.
pub fn any_uid() -> impl Strategy<Value = Uid> {
    "[^@#&\\p{Cc}]{1,16}".prop_map(|s| Uid::new(s).expect("strategy makes valid uids"))
}
