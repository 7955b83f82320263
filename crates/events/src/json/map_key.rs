//! Map keys: JSON object keys are strings, so `serde_json` writes string and char keys as
//! they are, quotes integers, bools and finite floats, and refuses every other key. This
//! serializer does the same, with the same errors.

use std::fmt;

use serde::ser::{self, Impossible, Serialize};

use super::escape::write_str;
use super::{JsonError, JsonWriter};

/// Serializes a map key: strings as they are; chars, integers, bools and finite floats
/// as quoted text, like `serde_json`.
pub(super) struct KeyWriter<'v> {
    pub(super) out: &'v mut Vec<u8>,
}

impl KeyWriter<'_> {
    /// Writes a quoted integer.
    fn integer<I: itoa::Integer>(self, v: I) -> Result<(), JsonError> {
        self.quoted(itoa::Buffer::new().format(v).as_bytes());
        Ok(())
    }

    fn quoted(self, text: &[u8]) {
        self.out.push(b'"');
        self.out.extend_from_slice(text);
        self.out.push(b'"');
    }

    fn float<F: Serialize>(self, v: F, finite: bool) -> Result<(), JsonError> {
        if !finite {
            return Err(JsonError::FloatKeyMustBeFinite);
        }
        self.out.push(b'"');
        JsonWriter {
            out: &mut *self.out,
        }
        .float(v)?;
        self.out.push(b'"');
        Ok(())
    }
}

type NoCompound = Impossible<(), JsonError>;

impl ser::Serializer for KeyWriter<'_> {
    type Ok = ();
    type Error = JsonError;
    type SerializeSeq = NoCompound;
    type SerializeTuple = NoCompound;
    type SerializeTupleStruct = NoCompound;
    type SerializeTupleVariant = NoCompound;
    type SerializeMap = NoCompound;
    type SerializeStruct = NoCompound;
    type SerializeStructVariant = NoCompound;

    fn serialize_str(self, v: &str) -> Result<(), JsonError> {
        write_str(self.out, v);
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), JsonError> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_bool(self, v: bool) -> Result<(), JsonError> {
        self.quoted(if v { b"true" } else { b"false" });
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), JsonError> {
        self.integer(v)
    }

    fn serialize_i16(self, v: i16) -> Result<(), JsonError> {
        self.integer(v)
    }

    fn serialize_i32(self, v: i32) -> Result<(), JsonError> {
        self.integer(v)
    }

    fn serialize_i64(self, v: i64) -> Result<(), JsonError> {
        self.integer(v)
    }

    fn serialize_i128(self, v: i128) -> Result<(), JsonError> {
        self.integer(v)
    }

    fn serialize_u8(self, v: u8) -> Result<(), JsonError> {
        self.integer(v)
    }

    fn serialize_u16(self, v: u16) -> Result<(), JsonError> {
        self.integer(v)
    }

    fn serialize_u32(self, v: u32) -> Result<(), JsonError> {
        self.integer(v)
    }

    fn serialize_u64(self, v: u64) -> Result<(), JsonError> {
        self.integer(v)
    }

    fn serialize_u128(self, v: u128) -> Result<(), JsonError> {
        self.integer(v)
    }

    fn serialize_f32(self, v: f32) -> Result<(), JsonError> {
        self.float(v, v.is_finite())
    }

    fn serialize_f64(self, v: f64) -> Result<(), JsonError> {
        self.float(v, v.is_finite())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), JsonError> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), JsonError> {
        value.serialize(self)
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), JsonError> {
        value.serialize(self)
    }

    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<(), JsonError> {
        JsonWriter { out: self.out }.collect_str(value)
    }

    fn serialize_bytes(self, _v: &[u8]) -> Result<(), JsonError> {
        Err(JsonError::KeyMustBeAString)
    }

    fn serialize_none(self) -> Result<(), JsonError> {
        Err(JsonError::KeyMustBeAString)
    }

    fn serialize_unit(self) -> Result<(), JsonError> {
        Err(JsonError::KeyMustBeAString)
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), JsonError> {
        Err(JsonError::KeyMustBeAString)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), JsonError> {
        Err(JsonError::KeyMustBeAString)
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<NoCompound, JsonError> {
        Err(JsonError::KeyMustBeAString)
    }

    fn serialize_tuple(self, _len: usize) -> Result<NoCompound, JsonError> {
        Err(JsonError::KeyMustBeAString)
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<NoCompound, JsonError> {
        Err(JsonError::KeyMustBeAString)
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<NoCompound, JsonError> {
        Err(JsonError::KeyMustBeAString)
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<NoCompound, JsonError> {
        Err(JsonError::KeyMustBeAString)
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<NoCompound, JsonError> {
        Err(JsonError::KeyMustBeAString)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<NoCompound, JsonError> {
        Err(JsonError::KeyMustBeAString)
    }
}
