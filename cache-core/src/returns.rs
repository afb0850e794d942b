//! How `#[cached_action]` maps a function's return type onto the engine's `Result<T, E>`: what
//! is stored, and what is handed back without being stored. Support for generated code, not a
//! public API.
//!
//! The decision is made by the type, after type aliases are resolved, not by how the return
//! type is spelled: `type ApiResult<T> = Result<T, ApiError>`, `anyhow::Result<T>` and
//! `io::Result<T>` are all `Result`s, whose `Err` is never stored. Generated code asks a
//! [`Probe`] of the return type for its [`Shape`] with a method call:
//!
//! ```
//! use action_cache_core::returns::{Probe, Shape, ViaOption as _, ViaResult as _, ViaValue as _};
//!
//! type ApiResult<T> = Result<T, String>;
//! let shape = (&Probe::<ApiResult<u32>>::new()).__ac_shape();
//! assert_eq!(shape.split(Err("down".to_string())).map_err(|e| e.len()), Err(4));
//! ```
//!
//! Method resolution tries the receiver `&Probe<R>` itself first, where [`ViaResult`] (for
//! `Probe<Result<T, E>>`) and [`ViaOption`] (for `Probe<Option<T>>`) apply, and only then its
//! autoref `&&Probe<R>`, where [`ViaValue`] applies to every `R`. So the most specific shape
//! wins without specialization, and a generic `R` is a plain value.

use std::convert::Infallible;
use std::fmt;
use std::marker::PhantomData;

use serde::Serialize;

use crate::LoadError;

/// What the engine stores for a return type `Ret` ([`Shape::Value`]) and what it hands back
/// without storing ([`Shape::Error`]).
pub trait Shape: Copy + Send + Sync {
    /// The function's return type.
    type Ret;
    /// What is stored.
    type Value;
    /// What is returned but never stored.
    type Error;
    /// Splits what the function returned into a value to store or an error not to.
    fn split(self, ret: Self::Ret) -> Result<Self::Value, Self::Error>;
    /// Turns the engine's answer back into the function's return type.
    ///
    /// # Panics
    ///
    /// Re-raises the panic of a shared load that panicked ([`LoadError::Panicked`]).
    fn join(self, result: Result<Self::Value, LoadError<Self::Error>>) -> Self::Ret;
}

macro_rules! marker_type {
    ($(#[$doc:meta])* $name:ident<$($p:ident),*>) => {
        $(#[$doc])*
        pub struct $name<$($p),*>(PhantomData<fn() -> ($($p,)*)>);

        impl<$($p),*> $name<$($p),*> {
            /// The marker.
            pub const fn new() -> Self {
                $name(PhantomData)
            }
        }

        impl<$($p),*> Default for $name<$($p),*> {
            fn default() -> Self {
                Self::new()
            }
        }

        impl<$($p),*> Clone for $name<$($p),*> {
            fn clone(&self) -> Self {
                *self
            }
        }

        impl<$($p),*> Copy for $name<$($p),*> {}

        impl<$($p),*> fmt::Debug for $name<$($p),*> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(stringify!($name))
            }
        }
    };
}

marker_type! {
    /// `Result<T, E>`: `Ok` values are stored, an `Err` is returned and never stored.
    ResultShape<T, E>
}

marker_type! {
    /// `Option<T>`: `Some` values are stored, `None` is returned and not stored.
    OptionShape<T>
}

marker_type! {
    /// Any other type (and `Option<T>` with `cache_none`): the whole value is stored.
    ValueShape<R>
}

marker_type! {
    /// The return type `R`, to ask for its [`Shape`] (see the module docs).
    Probe<R>
}

/// The error of an [`OptionShape`] load that returned `None`, which is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotCached;

impl<T, E> Shape for ResultShape<T, E> {
    type Ret = Result<T, E>;
    type Value = T;
    type Error = E;

    fn split(self, ret: Result<T, E>) -> Result<T, E> {
        ret
    }

    fn join(self, result: Result<T, LoadError<E>>) -> Result<T, E> {
        result.map_err(LoadError::into_loader_error)
    }
}

impl<T> Shape for OptionShape<T> {
    type Ret = Option<T>;
    type Value = T;
    type Error = NotCached;

    fn split(self, ret: Option<T>) -> Result<T, NotCached> {
        ret.ok_or(NotCached)
    }

    fn join(self, result: Result<T, LoadError<NotCached>>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                let NotCached = e.into_loader_error();
                None
            }
        }
    }
}

impl<R> Shape for ValueShape<R> {
    type Ret = R;
    type Value = R;
    type Error = Infallible;

    fn split(self, ret: R) -> Result<R, Infallible> {
        Ok(ret)
    }

    fn join(self, result: Result<R, LoadError<Infallible>>) -> R {
        result.unwrap_or_else(|e| match e.into_loader_error() {})
    }
}

/// The check of `returns = "value"` on a return type that is a `Result`.
#[derive(Debug, Clone, Copy)]
pub struct ResultIsNotAValue;

/// The check of `returns = "value"` on any other return type.
#[derive(Debug, Clone, Copy)]
pub struct WholeValue;

/// The shape of a `Result` return type (found first, see the module docs).
pub trait ViaResult {
    /// The shape.
    type Shape: Shape;
    /// The shape.
    fn __ac_shape(&self) -> Self::Shape;
    /// The shape when `cache_none` is set: the same, `cache_none` is about `Option`s.
    fn __ac_shape_keep_none(&self) -> Self::Shape;
    /// What `returns = "value"` would mean: storing `Err`s.
    fn __ac_value_check(&self) -> ResultIsNotAValue {
        ResultIsNotAValue
    }
}

impl<T, E> ViaResult for Probe<Result<T, E>> {
    type Shape = ResultShape<T, E>;
    fn __ac_shape(&self) -> ResultShape<T, E> {
        ResultShape::new()
    }
    fn __ac_shape_keep_none(&self) -> ResultShape<T, E> {
        ResultShape::new()
    }
}

/// The shape of an `Option` return type (found first, see the module docs).
pub trait ViaOption {
    /// The shape: `None` is not stored.
    type Shape: Shape;
    /// The shape with `cache_none`: `None` is stored too.
    type KeepNone: Shape;
    /// The shape.
    fn __ac_shape(&self) -> Self::Shape;
    /// The shape with `cache_none`.
    fn __ac_shape_keep_none(&self) -> Self::KeepNone;
    /// `returns = "value"` stores the whole `Option`.
    fn __ac_value_check(&self) -> WholeValue {
        WholeValue
    }
}

impl<T> ViaOption for Probe<Option<T>> {
    type Shape = OptionShape<T>;
    type KeepNone = ValueShape<Option<T>>;
    fn __ac_shape(&self) -> OptionShape<T> {
        OptionShape::new()
    }
    fn __ac_shape_keep_none(&self) -> ValueShape<Option<T>> {
        ValueShape::new()
    }
}

/// The shape of every other return type (found only through autoref, see the module docs).
pub trait ViaValue {
    /// The shape.
    type Shape: Shape;
    /// The shape.
    fn __ac_shape(&self) -> Self::Shape;
    /// The shape with `cache_none` (which is about `Option`s): the same.
    fn __ac_shape_keep_none(&self) -> Self::Shape;
    /// `returns = "value"` stores the whole value.
    fn __ac_value_check(&self) -> WholeValue {
        WholeValue
    }
}

impl<R> ViaValue for &Probe<R> {
    type Shape = ValueShape<R>;
    fn __ac_shape(&self) -> ValueShape<R> {
        ValueShape::new()
    }
    fn __ac_shape_keep_none(&self) -> ValueShape<R> {
        ValueShape::new()
    }
}

/// A `Result` type, for `returns = "result"`.
#[diagnostic::on_unimplemented(
    message = "`returns = \"result\"` needs a `Result` return type, and `{Self}` is not one",
    label = "not a `Result`",
    note = "leave `returns` out: the macro tells `Result`, `Option` and plain values apart by the type"
)]
pub trait IsResult {
    /// `T`.
    type Ok;
    /// `E`.
    type Err;
    /// `ResultShape<T, E>`.
    type Shape: Shape<Ret = Self>;
}

impl<T, E> IsResult for Result<T, E> {
    type Ok = T;
    type Err = E;
    type Shape = ResultShape<T, E>;
}

/// An `Option` type, for `returns = "option"`.
#[diagnostic::on_unimplemented(
    message = "`returns = \"option\"` needs an `Option` return type, and `{Self}` is not one",
    label = "not an `Option`",
    note = "leave `returns` out: the macro tells `Result`, `Option` and plain values apart by the type"
)]
pub trait IsOption {
    /// `T`.
    type Some;
    /// `OptionShape<T>`.
    type Shape: Shape<Ret = Self>;
}

impl<T> IsOption for Option<T> {
    type Some = T;
    type Shape = OptionShape<T>;
}

/// A return type `returns = "value"` may store whole: anything but a `Result`.
#[diagnostic::on_unimplemented(
    message = "`returns = \"value\"` would store this function's `Err`s: a `Result` is never stored whole",
    label = "the return type is a `Result`",
    note = "leave `returns` out (or write `returns = \"result\"`): only `Ok` values are stored"
)]
pub trait StoresWholeValue {}

impl StoresWholeValue for WholeValue {}

/// The shape of `returns = "result"`.
pub fn result_shape<R: IsResult>() -> R::Shape
where
    R::Shape: Default,
{
    R::Shape::default()
}

/// The shape of `returns = "option"`.
pub fn option_shape<R: IsOption>() -> R::Shape
where
    R::Shape: Default,
{
    R::Shape::default()
}

/// The shape of `returns = "option"` with `cache_none = true`.
pub fn option_keep_none_shape<R: IsOption>() -> ValueShape<R> {
    ValueShape::new()
}

/// The shape of `returns = "value"`, given the [`ViaResult`]/[`ViaValue`] check of the type.
pub fn value_shape<R, C: StoresWholeValue>(_check: C) -> ValueShape<R> {
    ValueShape::new()
}

/// The values a function returning `R` stores, for its `_put` companion when the macro cannot
/// tell from the spelling: the `T` of a `Result<T, E>` or an `Option<T>`, or the whole `R`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not what a `#[cached_action]` function returning `{R}` stores",
    label = "not the stored value",
    note = "`_put` takes the `Ok` value of a `Result`, the `Some` value of an `Option`, or the whole value of any other type"
)]
pub trait StoredValue<R>: Serialize {}

impl<T: Serialize, E> StoredValue<Result<T, E>> for T {}
impl<T: Serialize> StoredValue<Option<T>> for T {}
impl<R: Serialize> StoredValue<R> for R {}

#[cfg(test)]
mod tests {
    use super::*;

    type ApiResult<T> = Result<T, String>;
    type Maybe<T> = Option<T>;

    fn shape_name<S: Shape>(_: S) -> &'static str {
        let name = std::any::type_name::<S>();
        let name = &name[..name.find('<').unwrap_or(name.len())];
        name.rsplit("::").next().unwrap()
    }

    fn of_generic<T>() -> &'static str {
        shape_name((&Probe::<T>::new()).__ac_shape())
    }

    // The borrow is what makes the dispatch: clippy sees only the `Result`/`Option` cases.
    #[allow(clippy::needless_borrow)]
    #[test]
    fn the_type_decides_not_the_spelling() {
        assert!(
            shape_name((&Probe::<ApiResult<u8>>::new()).__ac_shape()).starts_with("ResultShape")
        );
        assert!(
            shape_name((&Probe::<std::io::Result<u8>>::new()).__ac_shape())
                .starts_with("ResultShape")
        );
        assert!(shape_name((&Probe::<Maybe<u8>>::new()).__ac_shape()).starts_with("OptionShape"));
        assert!(
            shape_name((&Probe::<Maybe<u8>>::new()).__ac_shape_keep_none())
                .starts_with("ValueShape")
        );
        assert!(shape_name((&Probe::<Vec<u8>>::new()).__ac_shape()).starts_with("ValueShape"));
        assert!(shape_name((&Probe::<()>::new()).__ac_shape()).starts_with("ValueShape"));
        // A generic return type is a plain value, whatever it is instantiated with.
        assert!(of_generic::<Result<u8, u8>>().starts_with("ValueShape"));
    }

    #[test]
    fn split_and_join() {
        let r = ResultShape::<u8, String>::new();
        assert_eq!(r.split(Err("e".into())), Err("e".to_string()));
        assert_eq!(
            r.join(Err(LoadError::Loader("e".into()))),
            Err("e".to_string())
        );
        let o = OptionShape::<u8>::new();
        assert_eq!(o.split(None), Err(NotCached));
        assert_eq!(o.split(Some(1)), Ok(1));
        assert_eq!(o.join(Err(LoadError::Loader(NotCached))), None);
        let v = ValueShape::<Option<u8>>::new();
        assert_eq!(v.split(None), Ok(None));
        assert_eq!(v.join(Ok(Some(2))), Some(2));
    }
}
