//! A compact JSON writer for events: a `serde::Serializer` that appends to a `Vec<u8>` and
//! produces output byte-identical to `serde_json::to_writer`.
//!
//! Every event a gateway emits is serialized, so this path is hot. It is cheaper than
//! `serde_json` because strings are written differently: struct field names and unit
//! variant names are rendered once per thread and then copied with one store ([`names`]);
//! other strings of up to 16 bytes are checked for escapes with one SWAR mask and written
//! with fixed-size stores; longer ones are scanned eight bytes at a time and their clean
//! runs copied with one `extend_from_slice` ([`escape`]). There is no `io::Write` layer
//! between the serializer and the buffer, and `collect_str` escapes straight into the
//! buffer, without a temporary `String`.
//!
//! Compatibility with `serde_json`'s compact output: `null` for unit, `None` and
//! non-finite floats; floats formatted by `serde_json` itself; unit variants as strings;
//! other enum variants as `{"variant":…}`; bytes as an array of numbers; map keys must be
//! strings, chars, integers, bools or finite floats (the latter three quoted), anything
//! else is an error, never a panic (as is a failing `Display` in `collect_str`, where
//! `serde_json` panics).

mod escape;
mod map_key;
mod names;
#[cfg(test)]
mod tests;

use std::fmt;

use serde::ser::{self, Serialize};

use escape::{write_str, write_str_contents};
use map_key::KeyWriter;
use names::{write_field_name, write_static_str};

/// Why a value could not be written as JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JsonError {
    /// A map key that is not a string, char, integer, bool or float.
    #[error("key must be a string")]
    KeyMustBeAString,
    /// A NaN or infinite float as a map key.
    #[error("float key must be finite (got NaN or +/-inf)")]
    FloatKeyMustBeFinite,
    /// A `Display` implementation (given to `collect_str`) failed.
    #[error("a Display implementation returned an error")]
    Format,
    /// An error raised by a `Serialize` implementation.
    #[error("{0}")]
    Custom(String),
}

impl ser::Error for JsonError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        JsonError::Custom(msg.to_string())
    }
}

/// Appends `value` as compact JSON to `out`. On error, `out` is left as it was.
pub(crate) fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), JsonError> {
    let start = out.len();
    let result = value.serialize(&mut JsonWriter { out: &mut *out });
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// The serializer: appends to a borrowed buffer.
pub(crate) struct JsonWriter<'v> {
    out: &'v mut Vec<u8>,
}

impl JsonWriter<'_> {
    #[inline]
    fn integer<I: itoa::Integer>(&mut self, v: I) {
        self.out
            .extend_from_slice(itoa::Buffer::new().format(v).as_bytes());
    }

    /// Floats are rare in events; `serde_json` formats them, so the digits are its own.
    fn float<F: Serialize>(&mut self, v: F) -> Result<(), JsonError> {
        serde_json::to_writer(&mut *self.out, &v).map_err(|e| JsonError::Custom(e.to_string()))
    }

    /// Writes `"variant":` after an opening `{`.
    fn variant_key(&mut self, variant: &str) {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
    }

    /// Opens an array or object: `open`, then `close` at once when it is known to be empty.
    fn open(&mut self, open: u8, close: u8, len: Option<usize>) -> State {
        self.out.push(open);
        if len == Some(0) {
            self.out.push(close);
            State::Empty
        } else {
            State::First
        }
    }
}

/// Where a compound value is: as `serde_json`'s state, so edge cases (a length hint of
/// zero followed by elements) come out the same.
#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    /// Opened and already closed (length hint 0).
    Empty,
    /// No element written yet.
    First,
    /// At least one element written.
    Rest,
}

/// An array or object being written.
pub(crate) struct Compound<'a, 'v> {
    ser: &'a mut JsonWriter<'v>,
    state: State,
}

impl Compound<'_, '_> {
    /// Writes the `,` before every element but the first.
    #[inline]
    fn separator(&mut self) {
        if self.state != State::First {
            self.ser.out.push(b',');
        }
        self.state = State::Rest;
    }

    /// Writes `close` unless the value was already closed.
    #[inline]
    fn close(&mut self, close: u8) {
        if self.state != State::Empty {
            self.ser.out.push(close);
        }
    }

    /// Writes `,"key":` (or `"key":` first) for a struct field.
    #[inline(always)]
    fn field_key(&mut self, key: &'static str) {
        write_field_name(self.ser.out, key, self.state != State::First);
        self.state = State::Rest;
    }
}

impl<'a, 'v> ser::Serializer for &'a mut JsonWriter<'v> {
    type Ok = ();
    type Error = JsonError;
    type SerializeSeq = Compound<'a, 'v>;
    type SerializeTuple = Compound<'a, 'v>;
    type SerializeTupleStruct = Compound<'a, 'v>;
    type SerializeTupleVariant = Compound<'a, 'v>;
    type SerializeMap = Compound<'a, 'v>;
    type SerializeStruct = Compound<'a, 'v>;
    type SerializeStructVariant = Compound<'a, 'v>;

    fn serialize_bool(self, v: bool) -> Result<(), JsonError> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), JsonError> {
        self.integer(v);
        Ok(())
    }

    fn serialize_i16(self, v: i16) -> Result<(), JsonError> {
        self.integer(v);
        Ok(())
    }

    fn serialize_i32(self, v: i32) -> Result<(), JsonError> {
        self.integer(v);
        Ok(())
    }

    fn serialize_i64(self, v: i64) -> Result<(), JsonError> {
        self.integer(v);
        Ok(())
    }

    fn serialize_i128(self, v: i128) -> Result<(), JsonError> {
        self.integer(v);
        Ok(())
    }

    fn serialize_u8(self, v: u8) -> Result<(), JsonError> {
        self.integer(v);
        Ok(())
    }

    fn serialize_u16(self, v: u16) -> Result<(), JsonError> {
        self.integer(v);
        Ok(())
    }

    fn serialize_u32(self, v: u32) -> Result<(), JsonError> {
        self.integer(v);
        Ok(())
    }

    fn serialize_u64(self, v: u64) -> Result<(), JsonError> {
        self.integer(v);
        Ok(())
    }

    fn serialize_u128(self, v: u128) -> Result<(), JsonError> {
        self.integer(v);
        Ok(())
    }

    fn serialize_f32(self, v: f32) -> Result<(), JsonError> {
        self.float(v)
    }

    fn serialize_f64(self, v: f64) -> Result<(), JsonError> {
        self.float(v)
    }

    fn serialize_char(self, v: char) -> Result<(), JsonError> {
        write_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    #[inline]
    fn serialize_str(self, v: &str) -> Result<(), JsonError> {
        write_str(self.out, v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), JsonError> {
        let mut seq = ser::Serializer::serialize_seq(self, Some(v.len()))?;
        for b in v {
            ser::SerializeSeq::serialize_element(&mut seq, b)?;
        }
        ser::SerializeSeq::end(seq)
    }

    fn serialize_none(self) -> Result<(), JsonError> {
        self.serialize_unit()
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), JsonError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), JsonError> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), JsonError> {
        self.serialize_unit()
    }

    #[inline]
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), JsonError> {
        write_static_str(self.out, variant);
        Ok(())
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        self.variant_key(variant);
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'a, 'v>, JsonError> {
        let state = self.open(b'[', b']', len);
        Ok(Compound { ser: self, state })
    }

    fn serialize_tuple(self, len: usize) -> Result<Compound<'a, 'v>, JsonError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'v>, JsonError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'v>, JsonError> {
        self.variant_key(variant);
        self.serialize_seq(Some(len))
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'a, 'v>, JsonError> {
        let state = self.open(b'{', b'}', len);
        Ok(Compound { ser: self, state })
    }

    #[inline]
    fn serialize_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'v>, JsonError> {
        self.serialize_map(Some(len))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'a, 'v>, JsonError> {
        self.variant_key(variant);
        self.serialize_map(Some(len))
    }

    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<(), JsonError> {
        self.out.push(b'"');
        fmt::write(
            &mut EscapingAdapter(&mut *self.out),
            format_args!("{value}"),
        )
        .map_err(|_| JsonError::Format)?;
        self.out.push(b'"');
        Ok(())
    }
}

/// `fmt::Write` into the buffer, escaping as inside a JSON string.
struct EscapingAdapter<'a>(&'a mut Vec<u8>);

impl fmt::Write for EscapingAdapter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_str_contents(self.0, s);
        Ok(())
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = JsonError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.separator();
        value.serialize(&mut *self.ser)
    }

    fn end(mut self) -> Result<(), JsonError> {
        self.close(b']');
        Ok(())
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = JsonError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        ser::SerializeSeq::serialize_element(self, value)
    }

    fn end(self) -> Result<(), JsonError> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = JsonError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        ser::SerializeSeq::serialize_element(self, value)
    }

    fn end(self) -> Result<(), JsonError> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = JsonError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        ser::SerializeSeq::serialize_element(self, value)
    }

    fn end(mut self) -> Result<(), JsonError> {
        self.close(b']');
        self.ser.out.push(b'}');
        Ok(())
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = JsonError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), JsonError> {
        self.separator();
        key.serialize(KeyWriter {
            out: &mut *self.ser.out,
        })
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JsonError> {
        self.ser.out.push(b':');
        value.serialize(&mut *self.ser)
    }

    fn end(mut self) -> Result<(), JsonError> {
        self.close(b'}');
        Ok(())
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = JsonError;

    #[inline(always)]
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        self.field_key(key);
        value.serialize(&mut *self.ser)
    }

    fn end(self) -> Result<(), JsonError> {
        ser::SerializeMap::end(self)
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = JsonError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }

    fn end(mut self) -> Result<(), JsonError> {
        self.close(b'}');
        self.ser.out.push(b'}');
        Ok(())
    }
}
