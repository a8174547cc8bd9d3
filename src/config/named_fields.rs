//! Structs read from maps only. serde's derived reader of a struct also takes a sequence of
//! its fields in order: `{"overrides": ["X-Canary", "c", ["a"], []]}` was read as overrides,
//! `{"store": {"sqlite": ["a.db"]}}` opened a store. No document of ours is written so, and
//! one that is hides every mistake a name would show (a field left out shifts the others), so
//! [`NamedFields`] wraps a reader and refuses a sequence wherever a struct is read, at any
//! depth: once at the top of a document covers every struct in it, a future one too.

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use std::fmt;

/// A [`Deserializer`] that reads every struct (and struct variant) only from a map with named
/// fields: a sequence given for one is refused with `must be <map> with named fields, not an
/// array`, where `map` names a map in the format read (`a JSON object`, `a TOML table`).
/// Everything else is read as the wrapped reader reads it; wrap it in
/// [`serde_path_to_error`] (outside) to have the refusal name the field
/// (`overrides: must be a JSON object...`; [`field_path`](crate::field_path) writes it as
/// this library's messages do).
///
/// The library reads every document through it (configs, SLO configs, the stores' stored
/// states); it is public for a program that reads this library's types from documents of its
/// own, or in another format (the CLI reads TOML with it).
///
/// # Example
/// ```
/// use promotion_gates::{NamedFields, PromotionConfig, field_path};
///
/// let json = r#"{"overrides": ["X-Canary", "canary", ["tester-1"], []]}"#;
/// let mut reader = serde_json::Deserializer::from_str(json);
/// let e = serde_path_to_error::deserialize::<_, PromotionConfig>(NamedFields::new(
///     &mut reader,
///     "a JSON object",
/// ))
/// .unwrap_err();
/// assert_eq!(field_path(e.path()), "overrides");
/// assert_eq!(
///     e.inner().to_string(),
///     "must be a JSON object with named fields, not an array at line 1 column 15"
/// );
///
/// // Serde alone takes the fields in order.
/// let config: PromotionConfig = serde_json::from_str(json).unwrap();
/// assert_eq!(config.overrides.unwrap().canary_ids, ["tester-1"]);
/// ```
#[derive(Debug, Clone, Copy)]
pub struct NamedFields<D> {
    inner: D,
    map: &'static str,
}

impl<D> NamedFields<D> {
    /// Wraps `inner`; `map` names a map in its format as the refusal says it (`a JSON object`).
    ///
    /// # Example
    /// ```
    /// use promotion_gates::{NamedFields, SqliteStoreConfig};
    /// use serde::Deserialize;
    ///
    /// let mut reader = serde_json::Deserializer::from_str(r#"["a.db"]"#);
    /// let e = SqliteStoreConfig::deserialize(NamedFields::new(&mut reader, "a JSON object"))
    ///     .unwrap_err();
    /// assert!(e.to_string().starts_with("must be a JSON object with named fields, not an array"));
    /// ```
    pub fn new(inner: D, map: &'static str) -> Self {
        Self { inner, map }
    }
}

/// A visitor passed on to the wrapped reader: `named` when a struct was asked for.
struct Visiting<V> {
    inner: V,
    map: &'static str,
    named: bool,
}

/// What the wrapped reader's sequences, maps, enums and their values are read through, so
/// that a struct nested in them is read by [`NamedFields`] too.
struct Within<A> {
    inner: A,
    map: &'static str,
}

impl<A> Within<A> {
    fn new(inner: A, map: &'static str) -> Self {
        Self { inner, map }
    }
}

/// Each of these reads no struct: the visitor is passed on as it is asked for.
macro_rules! forward_deserialize {
    ($($method:ident($($arg:ident: $type:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $type,)* visitor: V) -> Result<V::Value, D::Error> {
            let visitor = Visiting { inner: visitor, map: self.map, named: false };
            self.inner.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for NamedFields<D> {
    type Error = D::Error;

    forward_deserialize! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_i128();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_u128();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_option();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let visitor = Visiting {
            inner: visitor,
            map: self.map,
            named: true,
        };
        self.inner.deserialize_struct(name, fields, visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

/// Each of these holds no struct: the value is passed on.
macro_rules! forward_visit {
    ($($method:ident($type:ty);)*) => {$(
        fn $method<E: de::Error>(self, value: $type) -> Result<V::Value, E> {
            self.inner.$method(value)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Visiting<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    forward_visit! {
        visit_bool(bool);
        visit_i8(i8);
        visit_i16(i16);
        visit_i32(i32);
        visit_i64(i64);
        visit_i128(i128);
        visit_u8(u8);
        visit_u16(u16);
        visit_u32(u32);
        visit_u64(u64);
        visit_u128(u128);
        visit_f32(f32);
        visit_f64(f64);
        visit_char(char);
        visit_str(&str);
        visit_borrowed_str(&'de str);
        visit_string(String);
        visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]);
        visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, inner: D) -> Result<V::Value, D::Error> {
        self.inner.visit_some(NamedFields::new(inner, self.map))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, inner: D) -> Result<V::Value, D::Error> {
        self.inner
            .visit_newtype_struct(NamedFields::new(inner, self.map))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        if self.named {
            return Err(de::Error::custom(format_args!(
                "must be {} with named fields, not an array",
                self.map
            )));
        }
        self.inner.visit_seq(Within::new(seq, self.map))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.inner.visit_map(Within::new(map, self.map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(Within::new(data, self.map))
    }
}

/// A seed whose value is read through [`NamedFields`].
impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Within<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, inner: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(NamedFields::new(inner, self.map))
    }
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Within<A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        self.inner.next_element_seed(Within::new(seed, self.map))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Within<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.inner.next_key_seed(Within::new(seed, self.map))
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(Within::new(seed, self.map))
    }

    fn size_hint(&self) -> Option<usize> {
        self.inner.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Within<A> {
    type Error = A::Error;
    type Variant = Within<A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (name, variant) = self.inner.variant_seed(Within::new(seed, self.map))?;
        Ok((name, Within::new(variant, self.map)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Within<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.newtype_variant_seed(Within::new(seed, self.map))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        let visitor = Visiting {
            inner: visitor,
            map: self.map,
            named: false,
        };
        self.inner.tuple_variant(len, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        let visitor = Visiting {
            inner: visitor,
            map: self.map,
            named: true,
        };
        self.inner.struct_variant(fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Point {
        x: i32,
        y: i32,
    }

    #[derive(Debug, PartialEq, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Shape {
        Dot,
        Circle(Point, u32),
        Square { corner: Point, side: u32 },
        Named(Point),
    }

    #[derive(Debug, PartialEq, Deserialize)]
    struct Wrapper(Point);

    #[derive(Debug, PartialEq, Deserialize)]
    struct Drawing {
        shapes: Vec<Shape>,
        origin: Option<Point>,
        labels: BTreeMap<String, Point>,
        pair: (Point, Point),
        wrapped: Wrapper,
    }

    /// `json` read as a `T` through [`NamedFields`], or the error and the field it names.
    fn read<'de, T: Deserialize<'de>>(json: &'de str) -> Result<T, String> {
        let mut reader = serde_json::Deserializer::from_str(json);
        serde_path_to_error::deserialize(NamedFields::new(&mut reader, "a JSON object"))
            .map_err(|e| format!("{}: {}", crate::field_path(e.path()), e.inner()))
    }

    const DRAWING: &str = r#"{
        "shapes": ["dot", {"circle": [{"x": 1, "y": 2}, 3]},
                   {"square": {"corner": {"x": 0, "y": 0}, "side": 4}},
                   {"named": {"x": 5, "y": 6}}],
        "origin": {"x": 0, "y": 1},
        "labels": {"a": {"x": 7, "y": 8}},
        "pair": [{"x": 1, "y": 1}, {"x": 2, "y": 2}],
        "wrapped": {"x": 9, "y": 9}
    }"#;

    #[test]
    fn maps_sequences_tuples_enums_options_and_newtypes_are_read_as_before() {
        let expected: Drawing = serde_json::from_str(DRAWING).unwrap();
        assert_eq!(read::<Drawing>(DRAWING), Ok(expected));
        // Borrowed text stays borrowed.
        assert_eq!(read::<&str>(r#""a""#), Ok("a"));
        assert_eq!(
            read::<u128>("340282366920938463463374607431768211455"),
            Ok(u128::MAX)
        );
    }

    #[test]
    fn a_sequence_for_a_struct_at_any_depth_is_refused_naming_the_field() {
        let refusal = "must be a JSON object with named fields, not an array";
        for (from, to, field) in [
            (
                r#""origin": {"x": 0, "y": 1}"#,
                r#""origin": [0, 1]"#,
                "origin",
            ),
            (
                r#""wrapped": {"x": 9, "y": 9}"#,
                r#""wrapped": [9, 9]"#,
                "wrapped",
            ),
            (r#""a": {"x": 7, "y": 8}"#, r#""a": [7, 8]"#, "labels.a"),
            (
                r#""pair": [{"x": 1, "y": 1}"#,
                r#""pair": [[1, 1]"#,
                "pair[0]",
            ),
            (r#"{"x": 1, "y": 2}, 3"#, "[1, 2], 3", "shapes[1].circle[0]"),
            (r#"{"x": 5, "y": 6}"#, "[5, 6]", "shapes[3].named"),
            (
                r#""corner": {"x": 0, "y": 0}"#,
                r#""corner": [0, 0]"#,
                "shapes[2].square.corner",
            ),
            (
                r#"{"corner": {"x": 0, "y": 0}, "side": 4}"#,
                r#"[{"x": 0, "y": 0}, 4]"#,
                "shapes[2].square",
            ),
        ] {
            assert!(DRAWING.contains(from), "{from}");
            let json = DRAWING.replacen(from, to, 1);
            // serde alone takes it.
            serde_json::from_str::<Drawing>(&json).unwrap();
            let e = read::<Drawing>(&json).unwrap_err();
            assert!(
                e.starts_with(&format!("{field}: {refusal} at line ")),
                "{e}"
            );
        }
        assert_eq!(
            read::<Point>("[1, 2]").unwrap_err(),
            format!(": {refusal} at line 1 column 1")
        );
        // Other refusals are serde's as before.
        let e = read::<Point>(r#"{"x": 1, "z": 2}"#).unwrap_err();
        assert!(e.starts_with("z: unknown field `z`"), "{e}");
        let e = read::<Point>(r#""p""#).unwrap_err();
        assert!(
            e.starts_with(r#": invalid type: string "p", expected struct Point"#),
            "{e}"
        );
    }
}
