//! `application/x-www-form-urlencoded` bodies from any serde value that is a flat map
//! (a struct, a map, or a list of pairs), without another dependency: the value goes through
//! `serde_json::Value`, then each field is percent-encoded.

use serde::Serialize;
use serde_json::Value;

/// Encodes `value` as a form body; says what is wrong when it is not a flat map.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<String, String> {
    let pairs = match serde_json::to_value(value).map_err(|e| e.to_string())? {
        Value::Object(map) => map.into_iter().collect::<Vec<_>>(),
        Value::Array(items) => items.into_iter().map(pair).collect::<Result<Vec<_>, _>>()?,
        other => {
            return Err(format!(
                "expected a struct, a map or a list of pairs, got {other}"
            ))
        }
    };
    let mut out = String::new();
    for (key, v) in pairs {
        let Some(v) = scalar(&v) else {
            return Err(format!(
                "field {key:?}: expected a string, number or bool, got {v}"
            ));
        };
        if v.is_none() {
            continue; // None / null: the field is left out
        }
        if !out.is_empty() {
            out.push('&');
        }
        push_encoded(&mut out, &key);
        out.push('=');
        push_encoded(&mut out, v.as_deref().unwrap_or_default());
    }
    Ok(out)
}

fn pair(item: Value) -> Result<(String, Value), String> {
    match item {
        Value::Array(mut kv) if kv.len() == 2 => {
            let v = kv.pop().unwrap_or(Value::Null);
            match kv.pop() {
                Some(Value::String(k)) => Ok((k, v)),
                other => Err(format!("expected a string key, got {other:?}")),
            }
        }
        other => Err(format!("expected a (key, value) pair, got {other}")),
    }
}

/// `Some(None)` for null (left out), `Some(Some(text))` for a scalar, `None` for a nested value.
fn scalar(v: &Value) -> Option<Option<String>> {
    match v {
        Value::Null => Some(None),
        Value::String(s) => Some(Some(s.clone())),
        Value::Number(n) => Some(Some(n.to_string())),
        Value::Bool(b) => Some(Some(b.to_string())),
        Value::Array(_) | Value::Object(_) => None,
    }
}

/// The form encoding of the URL standard: alphanumerics and `*-._` as is, space as `+`,
/// every other byte of the UTF-8 as `%XX`.
fn push_encoded(out: &mut String, s: &str) {
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                out.push(char::from(b))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::encode;
    use serde::Serialize;

    #[derive(Serialize)]
    struct Payment<'a> {
        amount: u32,
        currency: &'a str,
        note: Option<&'a str>,
        test: bool,
    }

    #[test]
    fn encodes_flat_values_and_rejects_nested_ones() {
        let payment = Payment {
            amount: 42,
            currency: "EUR",
            note: None,
            test: true,
        };
        // (encoded, want: the body or words of the error)
        type Row = (Result<String, String>, Result<&'static str, &'static str>);
        let rows: Vec<Row> = vec![
            (encode(&payment), Ok("amount=42&currency=EUR&test=true")),
            (encode(&[("a b", "x&y=z/é")]), Ok("a+b=x%26y%3Dz%2F%C3%A9")),
            (encode(&[("k", "*-._~")]), Ok("k=*-._%7E")),
            (encode(&Vec::<(String, String)>::new()), Ok("")),
            (encode(&"text"), Err("expected a struct")),
            (
                encode(&[("k", vec![1, 2])]),
                Err("field \"k\": expected a string"),
            ),
            (
                encode(&serde_json::json!({"a": {"b": 1}})),
                Err("field \"a\""),
            ),
            (encode(&[1, 2]), Err("expected a (key, value) pair")),
        ];
        for (i, (got, want)) in rows.into_iter().enumerate() {
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, w, "row {i}"),
                (Err(g), Err(w)) => assert!(g.contains(w), "row {i}: {g}"),
                (g, w) => panic!("row {i}: got {g:?}, want {w:?}"),
            }
        }
    }
}
