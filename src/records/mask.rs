//! Masking of sensitive member fields for display (DESIGN §1 invariant 5).
//!
//! ID numbers keep their first 4 and last 4 characters (`2301**********123X`), phones their
//! first 3 and last 4 (`139****0001`), money becomes `***`. A value too short to keep those
//! parts is masked completely. Masking works on characters, never splits one, and keeps the
//! length of ID numbers and phones so a reader can still tell an 18-digit number from a
//! 15-digit one.
//!
//! This module decides only *how* a value is masked; *whether* a reader may see it unmasked
//! is the access policy's decision. It must never be the only copy of a value: masked
//! values are for display, never for storage.

use std::borrow::Cow;

use serde_json::Value as Json;

use super::model::{is_sensitive, Change, Changes, FieldValue, Fields};

/// What money fields show when masked.
pub const MONEY_MASK: &str = "***";

/// Keeps the first `head` and last `tail` characters and replaces the rest with `*`; masks
/// everything when the value has no more than `head + tail` characters.
fn keep_ends(s: &str, head: usize, tail: usize) -> String {
    let n = s.chars().count();
    if n <= head + tail {
        return "*".repeat(n.max(1));
    }
    s.chars()
        .enumerate()
        .map(|(i, c)| if i < head || i >= n - tail { c } else { '*' })
        .collect()
}

/// `230102199001011234` → `2301**********1234`.
pub fn mask_id_number(s: &str) -> String {
    keep_ends(s, 4, 4)
}

/// `13900000001` → `139****0001`.
pub fn mask_phone(s: &str) -> String {
    keep_ends(s, 3, 4)
}

/// A field's text as it may be displayed to a reader without `read_sensitive`: masked if
/// the field is sensitive, unchanged otherwise.
pub fn mask_text<'a>(field: &str, value: &'a str) -> Cow<'a, str> {
    match field {
        "id_number" => Cow::Owned(mask_id_number(value)),
        "phone" => Cow::Owned(mask_phone(value)),
        // Money and any sensitive field without a partial mask.
        f if is_sensitive(f) => Cow::Borrowed(MONEY_MASK),
        _ => Cow::Borrowed(value),
    }
}

/// A flat value as it may be displayed without `read_sensitive`. Masked money becomes the
/// text `***`.
pub fn mask_value(field: &str, value: &FieldValue) -> FieldValue {
    if !is_sensitive(field) {
        return value.clone();
    }
    match value {
        FieldValue::Text(s) => FieldValue::Text(mask_text(field, s).into_owned()),
        FieldValue::Int(_) | FieldValue::Bool(_) => FieldValue::Text(MONEY_MASK.to_owned()),
    }
}

/// A flat record with every sensitive value masked.
pub fn mask_fields(fields: &Fields) -> Fields {
    fields.iter().map(|(k, v)| (*k, mask_value(k, v))).collect()
}

/// Changes with every sensitive value masked (old and new).
pub fn mask_changes(changes: &Changes) -> Changes {
    changes
        .iter()
        .map(|(k, c)| {
            let m = |v: &Option<FieldValue>| v.as_ref().map(|v| mask_value(k, v));
            (
                *k,
                Change {
                    old: m(&c.old),
                    new: m(&c.new),
                },
            )
        })
        .collect()
}

/// Masks, anywhere in a JSON value, the values of members named like a sensitive field
/// (`phone`, `id_number`, `monthly_income`, `base_income`): a string is masked as
/// [`mask_text`] does, a number or boolean becomes `***`, and inside an array or object under
/// such a name every leaf is masked the same way (`"phone": ["13900000001", null]` →
/// `["139****0001", null]`). `null` stays `null`. Used for entries shown to people
/// (`log --json`, `record history`).
pub fn mask_json_in_place(value: &mut Json) {
    match value {
        Json::Object(map) => {
            for (key, v) in map.iter_mut() {
                if is_sensitive(key) {
                    mask_json_leaves(key, v);
                } else {
                    mask_json_in_place(v);
                }
            }
        }
        Json::Array(items) => items.iter_mut().for_each(mask_json_in_place),
        _ => {}
    }
}

/// Masks every leaf of `value` as a value of the sensitive field `field`.
fn mask_json_leaves(field: &str, value: &mut Json) {
    match value {
        Json::Null => {}
        Json::String(s) => *s = mask_text(field, s).into_owned(),
        Json::Number(_) | Json::Bool(_) => *value = Json::String(MONEY_MASK.to_owned()),
        Json::Array(items) => items.iter_mut().for_each(|v| mask_json_leaves(field, v)),
        Json::Object(map) => map.values_mut().for_each(|v| mask_json_leaves(field, v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_numbers_keep_four_and_four() {
        assert_eq!(mask_id_number("230102199001011234"), "2301**********1234");
        // The example of DESIGN §1 invariant 5.
        assert_eq!(mask_id_number("23010219900101123X"), "2301**********123X");
        // 15-digit numbers (GB 11643-1989) keep their length.
        assert_eq!(mask_id_number("230102900101123"), "2301*******1123");
        assert_eq!(mask_id_number("12345678"), "********");
        assert_eq!(mask_id_number(""), "*");
    }

    #[test]
    fn phones_keep_three_and_four() {
        assert_eq!(mask_phone("13900000001"), "139****0001");
        assert_eq!(mask_phone("010-12345678"), "010*****5678");
        assert_eq!(mask_phone("1234567"), "*******");
    }

    #[test]
    fn masking_counts_characters_not_bytes() {
        assert_eq!(
            mask_id_number("二三零一九九零零零一二三"),
            "二三零一****零一二三"
        );
    }

    #[test]
    fn mask_by_field_name() {
        assert_eq!(mask_text("phone", "13900000001"), "139****0001");
        assert_eq!(mask_text("monthly_income", "4500.00"), "***");
        assert_eq!(mask_text("base_income", "4500"), "***");
        assert_eq!(mask_text("name", "张三"), "张三");
        assert_eq!(
            mask_value("monthly_income", &FieldValue::Int(450_000)),
            FieldValue::Text("***".into())
        );
        assert_eq!(
            mask_value("amount", &FieldValue::Int(4_500)),
            FieldValue::Int(4_500)
        );
        let mut fields = Fields::new();
        fields.insert("id_number", FieldValue::Text("230102199001011234".into()));
        fields.insert("name", FieldValue::Text("张三".into()));
        let masked = mask_fields(&fields);
        assert_eq!(
            masked["id_number"],
            FieldValue::Text("2301**********1234".into())
        );
        assert_eq!(masked["name"], fields["name"]);
    }

    #[test]
    fn mask_changes_masks_both_sides() {
        let mut changes = Changes::new();
        changes.insert(
            "phone",
            Change {
                old: Some(FieldValue::Text("13900000001".into())),
                new: Some(FieldValue::Text("13900000002".into())),
            },
        );
        changes.insert(
            "monthly_income",
            Change {
                old: None,
                new: Some(FieldValue::Int(1)),
            },
        );
        let m = mask_changes(&changes);
        assert_eq!(m["phone"].old, Some(FieldValue::Text("139****0001".into())));
        assert_eq!(m["phone"].new, Some(FieldValue::Text("139****0002".into())));
        assert_eq!(m["monthly_income"].old, None);
        assert_eq!(
            m["monthly_income"].new,
            Some(FieldValue::Text("***".into()))
        );
    }

    #[test]
    fn mask_json_masks_sensitive_names_at_any_depth() {
        let mut v = serde_json::json!({
            "changes": {
                "phone": ["13900000001", "13900000002"],
                "monthly_income": [null, 450000],
                "name": ["张三", "李四"]
            },
            "record": {"id_number": "230102199001011234", "base_income": 1, "amount": 4500},
            "list": [{"phone": "13900000003"}],
            "phone_count": 3
        });
        mask_json_in_place(&mut v);
        assert_eq!(
            v,
            serde_json::json!({
                "changes": {
                    "phone": ["139****0001", "139****0002"],
                    "monthly_income": [null, "***"],
                    "name": ["张三", "李四"]
                },
                "record": {"id_number": "2301**********1234", "base_income": "***", "amount": 4500},
                "list": [{"phone": "139****0003"}],
                "phone_count": 3
            })
        );
        // Nothing of the original digits in the middle survives.
        assert!(!v.to_string().contains("00000001"));
    }

    #[test]
    fn mask_json_masks_objects_under_sensitive_names() {
        let mut v = serde_json::json!({"phone": {"home": "13900000001", "n": true}});
        mask_json_in_place(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"phone": {"home": "139****0001", "n": "***"}})
        );
    }
}
